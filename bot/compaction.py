"""Compaction of a session's history: older messages become a summary when the context
nears the model's window (durable facts go to memory first)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.agent.context import needs_compaction, split_for_compaction, summarize
from bot.errors import DecapodError

if TYPE_CHECKING:
    from bot.gateway import Gateway
    from bot.sessions import Session
    from bot.tools import ToolContext

log = logging.getLogger("decapod.gateway")


async def maybe_compact(gw: Gateway, session: Session, ctx: ToolContext, *, force: bool) -> bool:
    """Summarize the older part of the session's history when the context nears the
    model's window (`force`: it did not fit). Whether the history was made shorter."""
    assert gw.agent is not None and session.row is not None and session.history is not None
    window = _context_window(gw)
    system_tokens = (len(gw.agent.system_prompt(session.row.summary)) + 3) // 4
    messages = session.messages()
    if not force and not needs_compaction(
        system_tokens, messages, window, gw.config.agent.compaction_threshold
    ):
        return False
    older, _recent = split_for_compaction(messages, gw.config.agent.keep_recent_messages)
    if not older:
        return False
    provider = gw.providers.for_purpose("compaction") if gw.providers else gw.agent.provider
    memory = gw.deps.memory
    if memory is not None and not ctx.is_group:
        # durable facts survive the summary; in a group they could be anyone's, so skip
        await memory.extract_before_compaction(ctx.person_id, older, provider)
    try:
        summary = await summarize(provider, session.row.summary, older)
    except DecapodError as exc:
        # a side step: the turn goes on with the history as it is (a context that then does
        # not fit is the model's refusal, told as such), and the next turn tries again
        log.warning("compaction of %s failed, history kept: %s", session.key, exc)
        return False
    if not summary:
        # dropping the messages for an empty summary would forget them for good
        log.warning("compaction of %s got an empty summary, history kept", session.key)
        return False
    upto = session.history[len(older) - 1][0]
    await gw.store.sessions.set_summary(session.row.id, summary, upto)
    session.row.summary, session.row.summary_upto = summary, upto
    del session.history[: len(older)]
    log.info("compacted %d messages of %s", len(older), session.key)
    return True


def _context_window(gw: Gateway) -> int:
    provider_name = gw.config.models.chat[0].partition(":")[0]
    return gw.config.providers[provider_name].context_window
