"""One turn: a queued message becomes a command reply or a model answer streamed back
(bot/turn_stream.py), and what happened is stored (one transaction with the inbound delivery
marked done).

What the person was shown of an answer is recorded as it is sent (bot/delivery.py): a
send that keeps failing keeps the answer for a later try, a refusal ends the delivery, and
another try of a delivery that already showed something never asks the model again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from bot.agent import TurnResult
from bot.commands import CommandContext, Reply
from bot.delivery import Outbox, SessionNotHeld, delivery_key
from bot.errors import (
    ChannelError,
    ConversationGone,
    DecapodError,
    DeliveryRefused,
    IdentityRefused,
    StorageUnavailable,
)
from bot.media.errors import IntakeStopped
from bot.media.outside import holds_outside_content
from bot.messages import (
    Command,
    InboundMessage,
    cron_session_key,
    identity_from_key,
)
from bot.providers.base import ChatMessage
from bot.scheduler.natural import natural_command
from bot.sessions import Session
from bot.stop import RunningTurn
from bot.store.deliveries import DeliveryUpdate
from bot.tasks import cancelled_from_outside
from bot.tools import ToolContext
from bot.turn_media import user_message_with_media, with_unused_parts_named
from bot.turn_records import count_turn, record_broken_try, record_turn
from bot.turn_resume import reply_template, resume_shown
from bot.turn_stream import FAILED, reply_stream
from bot.warmup import StartUpStepFailed

if TYPE_CHECKING:
    from bot.gateway import Gateway
    from bot.messages import Identity
    from bot.store.jobs import Job

log = logging.getLogger("decapod.gateway")


#: identities remembered as refused (the owner told) per run
MAX_REFUSED_IDENTITIES_TOLD = 10_000


class TurnRunner:
    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        #: identities refused in this run whose owner's notice went out: one per identity,
        #: not one per message (bounded; past it the owner is told of each)
        self._refused_told: set[str] = set()

    def _first_refusal(self, message: InboundMessage) -> bool:
        key = message.identity.key
        if key in self._refused_told:
            return False
        if len(self._refused_told) < MAX_REFUSED_IDENTITIES_TOLD:
            self._refused_told.add(key)
        return True

    async def run(self, session: Session, message: InboundMessage) -> float | None:
        """One try of the message's turn; the seconds to wait before it is tried again (the
        store refused it: bot/sessions.py runs it again before the session's next message),
        or None."""
        self.gw.metrics.active_turns.inc()
        deliveries = self.gw.deliveries
        outbox = deliveries.outbox(message)
        again: float | None = None
        try:
            # the scheduler, memory and the skills, when a message comes before they started
            await self.gw.warmup.wait()
            rest = deliveries.unstored(message)
            if rest is not None:  # the answer went out; storing it was refused
                await deliveries.store_or_keep(message, rest)
            elif outbox.state.final or outbox.state.started:
                await resume_shown(self.gw, session, message, outbox)
            else:
                await self._turn(session, message, outbox)
        except DeliveryRefused as exc:
            await self.gw.deliveries.give_up(message, outbox.state, exc.reason)
        except ChannelError as exc:
            # a command's reply or a note, still failing after the channel's retries: it is
            # not tried later, as that would run the command again
            await self.gw.deliveries.give_up(message, outbox.state, str(exc))
        except StorageUnavailable as exc:
            # nothing of the turn was saved, so the delivery stays pending and is tried again
            # (bot/delivery.py): said once, not a crash
            log.error("turn in %s not saved: %s", session.key, exc)
            again, first = deliveries.storage_refused(message, outbox)
            if first:
                shown = deliveries.answered(message, outbox)
                await self.gw.say(message, exc.unstored_message if shown else exc.retried_message)
        except IntakeStopped as exc:
            # the gateway stops while attachments are read: nothing was said or stored, and
            # the next start reads them again
            log.info("turn in %s left for the next start: %s", session.key, exc)
        except IdentityRefused as exc:
            # the same on every try: said once, and the delivery is not replayed at each start;
            # the owner's notice from give_up is its one line in the log, sent for the
            # identity's first refused message in this run only
            await deliveries.give_up(
                message, outbox.state, str(exc), tell_owner=self._first_refusal(message)
            )
            with contextlib.suppress(ChannelError):  # the notice already says what happened
                await self.gw.say(message, exc.user_message)
        except StartUpStepFailed as exc:
            # as when a start fails: nothing of the turn ran, its delivery stays pending
            log.error("turn in %s not run: %s", session.key, exc)
            await self.gw.say(message, exc.user_message)
        except SessionNotHeld:
            raise  # another replica runs this delivery; nothing is said from here
        except asyncio.CancelledError:
            if cancelled_from_outside():
                raise  # a drain: the delivery stays pending for the next start
            # a library ended its own wait this way: a failure like the ones below, and
            # not raised on, which would end the session's worker
            log.exception("turn in %s failed", session.key)
            await self._say_failed(message)
        except Exception:
            # what no layer below planned for (a plugin's bug, a lost database connection):
            # the person hears of it once instead of nothing; the details and the traceback
            # go to the log (raised on to the session's worker), the delivery stays pending
            await self._say_failed(message)
            raise
        finally:
            if again is None:
                deliveries.storage_took(message)
            self.gw.metrics.active_turns.dec()
            self.gw.metrics.queue_depth.set(self.gw.sessions.queue_depth)
        return again

    async def _say_failed(self, message: InboundMessage) -> None:
        with contextlib.suppress(Exception):
            await self.gw.say(message, DecapodError.user_message)

    async def _turn(self, session: Session, message: InboundMessage, outbox: Outbox) -> None:
        started = time.perf_counter()
        channel_name = message.conversation.channel
        delivery = delivery_key(message)
        session.conversation = message.conversation
        person = await self.gw.person_of(message)
        role = self.gw.access.role_of(message.identity)
        text = message.text
        command = message.command or natural_command(text, self.gw.commands)

        async def done() -> None:
            await self.gw.store.inbound.set_status(*delivery, "done")

        if command is not None:
            reply, text = await self._command(message, command, person, role)
            if reply is not None:
                # what came attached is not lost without a word: the answer says it was not used
                await self.gw.say(message, with_unused_parts_named(reply, message, command.name))
                await self.gw.deliveries.store_or_keep(message, done)  # said once, run once
                return
        problem = self._check_text(text, message)
        if problem:
            await self.gw.say(message, problem)
            await self.gw.deliveries.store_or_keep(message, done)
            return
        await self.gw.sessions.load(session)
        # one turn for /stop from its attachments to its answer: a stop between two steps
        # (the notes said before the answer, memory recall) is kept and ends the next one
        with self.gw.running.track(session.key, person) as running:
            user, untrusted = await user_message_with_media(self.gw, message, text, person, running)
            if user is None:  # only attachments, none usable (each named in a reply), or /stop
                await self.gw.deliveries.store_or_keep(message, done)
                return
            ctx = ToolContext(
                identity=message.identity,
                conversation=message.conversation,
                session_key=session.key,
                deps=self.gw.deps,
                person_id=person,
                role=role,
                timezone=await self._timezone(message),
                # another person's files (even their names) are outside content, and so is
                # any text read from a file, now or still in the history
                tainted=(bool(message.parts) and role != "owner")
                or untrusted
                or holds_outside_content(session.messages()),
            )
            result, failure = await self._run_and_reply(
                session, message, user, ctx, outbox, running
            )
        turn_id = f"{channel_name}:{message.id}"
        identity = message.identity.key
        if failure is None:
            if ctx.deps.hooks is not None:
                ctx.deps.hooks.reply_sent(ctx, result.text, result.outcome)
            done_with: tuple[str, str] | None = delivery
            plan: DeliveryUpdate | None = None
            update: DeliveryUpdate | None = DeliveryUpdate(delivery, outbox.state)
        else:
            # the answer is complete and stored with the turn; only its sending is retried
            done_with, plan = None, self.gw.deliveries.plan_retry(outbox, failure)
            update = plan
        stored: list[bool] = []
        latency_s = time.perf_counter() - started

        async def rest() -> None:
            # run again whole when the store refused it; the turn is stored (and counted)
            # only once
            if not stored:
                await record_turn(
                    self.gw, session, turn_id, identity, user, result, done_with, update
                )
                stored.append(True)
                count_turn(self.gw, session, channel_name, result, latency_s, ctx.tainted)
            if failure is not None:
                await self.gw.deliveries.retry_or_give_up(message, outbox, failure, plan)
            elif self.gw.voice is not None and result.outcome == "ok":
                channel = self.gw.channels[channel_name]
                await self.gw.voice.answer(channel, message, person, outbox.state.answer)

        await self.gw.deliveries.store_or_keep(message, rest)

    async def answer_task(
        self, job: Job, prompt: str | None = None, max_output_tokens: int | None = None
    ) -> tuple[str, TurnResult]:
        """A scheduled task: its prompt (or `prompt`: a check-in's) runs as a turn of the
        job's own `cron:` session, with the creator's identity and role (never the owner's),
        and the answer is returned for delivery to the conversation that scheduled it.
        TaskFailed when the model call failed, also part way through the answer (nobody has
        seen any of it yet): the apology a chat gets is no answer here, nor is half of one,
        and the scheduler tries the job again later. Not so once a tool ran: a try again
        would run the tool again, so an answer that broke off is returned as it is, marked
        interrupted, and one whose model call failed is what was written, with the note of
        the failure."""
        await self.gw.warmup.wait()
        identity = await self.job_may_deliver(job)
        session = self.gw.sessions.get(cron_session_key(job.id))
        await self.gw.sessions.load(session)
        ctx = ToolContext(
            identity=identity,
            conversation=job.conversation,
            session_key=session.key,
            deps=self.gw.deps,
            person_id=job.person_id,
            role=self.gw.access.role_of(identity),
            timezone=job.timezone,
        )
        user = ChatMessage("user", self.gw.redactor.redact(prompt or job.text))
        holder: list[TurnResult] = []
        # tracked as a chat's turn is (`_turn`), which the reply path needs; nothing stops it:
        # /stop (here or on another replica) stops only the session of the chat it is typed
        # in, and no chat's session key is a `cron:` one
        with self.gw.running.track(session.key, job.person_id) as running:
            stream = reply_stream(self.gw, session, user, ctx, holder, running, max_output_tokens)
            answer = "".join([part async for part in stream])
        turn_id = f"cron:{job.id}:{int(job.due_at)}"
        result = holder[-1]
        # a try again after a tool ran would run it again (its effects twice, and its run
        # missing from the history): then what there is is sent, marked interrupted or
        # followed by the note of the failure, and the job is done
        tools_ran = any(m.role == "tool" for m in result.messages)
        if not tools_ran and (result.outcome in FAILED or result.outcome == "interrupted"):
            from bot.scheduler.ports import TaskFailed

            await record_broken_try(self.gw, session, turn_id, identity.key, result)
            why = result.error or "the answer broke off part way"
            raise TaskFailed(f"the scheduled turn's model call failed: {why}")
        await record_turn(self.gw, session, turn_id, identity.key, user, result, None)
        return answer, result

    async def job_may_deliver(self, job: Job) -> Identity:
        """The identity a scheduled job runs and delivers as, if it may still do so where it
        delivers: ConversationGone when its channel was taken out of config.toml since it
        was set (nothing runs for it: delivery would fail after the model ran, as whoever
        the identity maps to now), NotAllowedNow when its person was revoked there since
        (nothing runs as them, nothing is sent; the schedule is kept)."""
        if job.conversation.channel not in self.gw.channels:
            raise ConversationGone(f"channel {job.conversation.channel!r} is not configured")
        identity = identity_from_key(job.identity_key)
        if not await self.gw.access.allows(identity, job.conversation):
            from bot.scheduler.ports import NotAllowedNow

            raise NotAllowedNow(f"{identity.key} may not be answered there now")
        return identity

    async def _command(
        self, message: InboundMessage, command: Command, person: str, role: str
    ) -> tuple[str | Reply | None, str]:
        """(reply, text): a reply ends the turn; otherwise `text` goes to the model."""
        spec = self.gw.commands.get(command.name)
        if spec is None:
            if command.chat_if_unknown:
                return None, message.text
            return f"Unknown command /{command.name}. /help lists the commands.", ""
        if spec.owner_only and role != "owner":
            return "Only the owner can use that command.", ""
        ctx = CommandContext(message, command.args, person, role, self.gw.deps)
        return await spec.handler(ctx), command.args

    def _check_text(self, text: str, message: InboundMessage) -> str | None:
        if not text.strip() and not message.parts:
            return "I got an empty message. Write me some text and I will answer."
        limit = self.gw.config.gateway.max_message_chars
        if len(text) > limit:
            return (
                f"That message is {len(text):,} characters long; I take at most {limit:,}. "
                "Please send it in parts or attach it as a file."
            )
        return None

    async def _timezone(self, message: InboundMessage) -> str:
        zone = await self.gw.store.identities.timezone(message.identity.key)
        return zone or self.gw.config.gateway.timezone

    async def _run_and_reply(
        self,
        session: Session,
        message: InboundMessage,
        user: ChatMessage,
        ctx: ToolContext,
        outbox: Outbox,
        running: RunningTurn,
    ) -> tuple[TurnResult, ChannelError | None]:
        """The turn's result, and the error that kept its answer from being sent in full
        (the channel reads the whole answer before it gives up, so the answer is kept)."""
        holder: list[TurnResult] = []
        channel = self.gw.channels[message.conversation.channel]
        answer = reply_stream(self.gw, session, user, ctx, holder, running)
        collected = outbox.collect(answer)
        try:
            await channel.reply(reply_template(message), collected, outbox)
        except DeliveryRefused:
            raise  # the model stops with the stream: nothing more is asked of it
        except ChannelError as exc:
            if not holder:
                raise
            outbox.state.final = True
            return holder[-1], exc
        finally:
            await collected.aclose()
            await answer.aclose()
        return holder[-1], None
