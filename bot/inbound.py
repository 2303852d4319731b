"""What the channels hand the gateway, on its way to a session: stored first (redacted), so
nothing is lost to a crash; a delivery seen before dropped, so nothing runs twice; the sender
admitted or refused (a refusal recorded and said once); then queued in its session, or run
at once (/approve). At start, the deliveries stored but unfinished run again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from typing import TYPE_CHECKING

from bot.messages import InboundMessage
from bot.security.access import pairing_request

if TYPE_CHECKING:
    from bot.gateway import Gateway

log = logging.getLogger("decapod.gateway")


class InboundRouter:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        #: whether stored deliveries go on to their sessions: from the start's resume (or a
        #: replica's) until the drain
        self.accepting = False
        #: what arrived while the start resumes the unfinished deliveries, in the order it
        #: came: accepted after them (a chat's new message is not answered before its older
        #: one), and not resumed as well
        self._arrived_in_resume: dict[tuple[str, str], InboundMessage] | None = None
        self._immediate: set[asyncio.Task[None]] = set()

    async def handle(self, message: InboundMessage) -> None:
        """The sink every channel hands messages to. Stores the delivery first, so nothing is
        lost to a crash, and drops a delivery seen before, so nothing runs twice."""
        gw = self.gw
        message = message.well_formed()
        if message.text:
            # redacted before it is stored: the inbox must not keep a pasted secret at rest
            text = gw.redactor.redact(message.text)
            message = dataclasses.replace(message, text=text)
        command = message.command
        if command is not None and command.args:
            # the arguments go on by themselves (/ask's to the model, /remind's into a job)
            args = gw.redactor.redact(command.args)
            message = dataclasses.replace(message, command=dataclasses.replace(command, args=args))
        if not await gw.store.inbound.insert(message):
            gw.metrics.duplicates.labels(message.conversation.channel).inc()
            return
        if gw.turn_processes is not None:
            await gw.turn_processes.accept(message)
            return
        if self.accepting:
            if self._arrived_in_resume is not None:
                self._arrived_in_resume[(message.conversation.channel, message.id)] = message
                return
            await self.accept(message)

    async def accept(self, message: InboundMessage) -> None:
        if not await self.admit(message):
            return
        self._dispatch(message)

    def _dispatch(self, message: InboundMessage) -> None:
        """An admitted message to its session's queue (or run at once: /approve)."""
        gw = self.gw
        spec = gw.commands.get(message.command.name) if message.command else None
        if spec is not None and spec.immediate:
            # answers a turn that may be waiting in this very session (/approve)
            session = gw.sessions.get(message.session_key)
            attempt = functools.partial(gw.turns.run, session, message)
            task = asyncio.create_task(gw.sessions.retried(attempt))
            self._immediate.add(task)
            task.add_done_callback(self._immediate.discard)
            return
        gw.sessions.submit(message)
        gw.metrics.queue_depth.set(gw.sessions.queue_depth)

    async def admit(self, message: InboundMessage) -> bool:
        """Whether the sender may be answered; a refusal is recorded and said here, once."""
        gw = self.gw
        decision = await gw.access.decide(message)
        if not decision.allowed:
            gw.metrics.denied.labels(message.conversation.channel).inc()
            await gw.store.inbound.set_status(
                message.conversation.channel, message.id, "denied", decision.reason
            )
            if decision.pairing is not None and gw.config.gateway.owners:
                text, choices = pairing_request(decision.pairing)
                await gw.notify_owner(text, choices, decision.pairing.expires_at)
            if decision.reply:
                await gw.say(message, decision.reply)
            else:
                # e.g. a deferred interaction that would otherwise show "thinking" for minutes
                await gw.channels[message.conversation.channel].on_denied(message)
            return False
        if gw.deps.hooks is not None:
            gw.deps.hooks.message_received(message)
        return True

    async def resume_unfinished(self) -> None:
        """Deliveries stored but unfinished (a crash, a stop, a send waiting for its next try,
        or arrivals while channels were starting) run now or when their try is due; what
        arrives meanwhile is stored and accepted after them, in the order it came."""
        gw = self.gw
        arrived: dict[tuple[str, str], InboundMessage] = {}
        self._arrived_in_resume = arrived
        self.accepting = True
        try:
            for delivery in await gw.store.deliveries.unfinished():
                message = delivery.message
                key = (message.conversation.channel, message.id)
                if (
                    message.conversation.channel in gw.channels
                    and key not in arrived
                    and self._owns(message)
                ):
                    gw.resumed_at_start.add(key)
                    await gw.deliveries.resume(delivery)
            # then what came meanwhile, in the order it came (more may come while these are
            # admitted: it is empty when it is let go)
            while arrived:
                message = arrived.pop(next(iter(arrived)))
                try:
                    await self.accept(message)
                except Exception:
                    # as a live arrival's error: this one is left, the start and the rest go on
                    log.exception("could not take in %s", message.id)
        finally:
            self._arrived_in_resume = None

    def _owns(self, message: InboundMessage) -> bool:
        if self.gw.share is None:
            return True
        from bot.scaleout.pool import owner_of

        index, count = self.gw.share
        return owner_of(message.session_key, count) == index
