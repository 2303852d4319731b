"""Turns in several processes (`gateway.turn_processes`): one receiver keeps the channels
and stores every inbound delivery before its ack; each session is handed to a fixed turn
process (a hash of its key), which runs its turns and sends its replies back through the
receiver's channels. See docs/performance.md, "Turns in several processes"."""
