"""Who may talk to the bot, and with which role. Deny by default.

Decisions cost no LLM call and no tool call: an unknown person who writes a DM gets, at most
once per `notice_interval_s`, a pairing code the owner approves (`decapod pairing approve
CODE`, or `/pair CODE` from the owner's own chat). Group messages need an allowlisted group
and, unless that group says otherwise, a mention or a reply to the bot.

Approved people are cached in memory; the cache is dropped whenever the store's access
revision moves, which includes `decapod pairing revoke` run from another process.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bot.commands import CommandContext, CommandTable
from bot.config import ChannelAccessConfig, Config
from bot.messages import (
    Choice,
    Conversation,
    ConversationKind,
    Identity,
    InboundMessage,
    identity_from_key,
)
from bot.store.access import PairingCode

if TYPE_CHECKING:
    from bot.store import Store

log = logging.getLogger("decapod.access")

#: no 0/O, 1/I/L: codes are read aloud and typed on phones
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
CODE_TTL_S = 3600.0
#: bounds the table under a flood of new accounts; each sender has one live code at a time, so
#: reaching it takes this many distinct accounts within an hour (`decapod pairing list` shows it)
MAX_PENDING_PER_CHANNEL = 100
#: the web UI's chat: its owner signed in with the password; everyone else on it is a guest
#: the owner let in with a pairing link, who is paired like a person on any other channel
WEB_CHAT = "web"
WEB_OWNER_ID = "owner"
_WEB_GUESTS = ChannelAccessConfig(dm_policy="pairing")


@dataclass(frozen=True, slots=True)
class AccessDecision:
    allowed: bool
    role: str = "user"  # owner | operator | user
    reason: str = ""
    #: what to tell the sender (a pairing code); None = stay silent
    reply: str | None = None
    #: a pairing code just given to the sender: the owner is asked to approve it
    pairing: PairingCode | None = None


class RunningChannel(Protocol):
    """What access reads of a running channel (channels.Channel has it)."""

    @property
    def operator_console(self) -> str | None:
        """The identity channel whose people are the operator at this machine while this
        channel runs; None on a platform's channel."""
        ...


class AccessControl(Protocol):
    async def decide(self, message: InboundMessage) -> AccessDecision: ...

    async def allows(self, identity: Identity, conversation: Conversation) -> bool: ...

    def role_of(self, identity: Identity) -> str: ...

    def role_of_key(self, identity_key: str) -> str: ...


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


class ChannelAccess:
    """The policies of config.toml, the owners list, and approved pairings in the store."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        running: Mapping[str, RunningChannel] | None = None,
        notice_interval_s: float = 600.0,
    ) -> None:
        self.config = config
        self.store = store
        #: the gateway's channels by name, live: the only source of who is the operator's
        #: console (a channel's `operator_console`), so one not running is nobody's console
        self.running: Mapping[str, RunningChannel] = running if running is not None else {}
        self.owners = frozenset(config.gateway.owners)
        self.notice_interval_s = notice_interval_s
        self._paired: set[str] = set()
        self._paired_revision = -1
        self._last_notice: dict[str, float] = {}
        self._full: set[str] = set()  # channels whose full code table was logged

    def _web_chat(self, channel: str) -> bool:
        # built by the gateway, never configured: a channel of config.toml named `web` is
        # refused while the web UI runs, and is not this one when it does not. A turn process
        # serves no HTTP (its config says so) but runs the receiver's web chat as a channel
        # of that name: it is the guests' chat there too, never the operator's console
        return (
            channel == WEB_CHAT
            and channel not in self.config.channels
            and self.config.webui.enabled
            and (self.config.http.enabled or channel in self.running)
        )

    def _policy(self, channel: str) -> ChannelAccessConfig | None:
        if self._web_chat(channel):
            return _WEB_GUESTS
        ch = self.config.channels.get(channel)
        return getattr(ch, "access", None)

    def _is_operator_console(self, channel: str) -> bool:
        # a running channel says so: the console is the operator's own terminal, and `decapod
        # ask`'s one-shot channel speaks as the console's person under a name of its own; a
        # console configured but not running, or taken out of config.toml, is nobody's
        return any(ch.operator_console == channel for ch in self.running.values())

    def role_of(self, identity: Identity) -> str:
        if self._web_chat(identity.channel) and identity.key not in self.owners:
            return "owner" if identity.user_id == WEB_OWNER_ID else "user"
        if identity.key in self.owners or self._is_operator_console(identity.channel):
            return "owner"
        policy = self._policy(identity.channel)
        if policy is not None and identity.user_id in policy.operators:
            return "operator"
        return "user"

    def role_of_key(self, identity_key: str) -> str:
        return self.role_of(identity_from_key(identity_key))

    async def allows(self, identity: Identity, conversation: Conversation) -> bool:
        """Whether `identity` may still be answered in `conversation`, as a command of theirs
        there would be: what runs on their behalf later (a scheduled task, a check-in) asks
        this first, since their access may have been revoked since. Gives no pairing code."""
        addressed = InboundMessage("", identity, conversation, mentioned=True)
        return (await self.decide(addressed, notice=False)).allowed

    async def decide(self, message: InboundMessage, *, notice: bool = True) -> AccessDecision:
        identity, conversation = message.identity, message.conversation
        role = self.role_of(identity)
        policy = self._policy(conversation.channel)
        if policy is None:
            return AccessDecision(role == "owner", role, "" if role == "owner" else "no policy")
        if identity.is_bot and not policy.allow_bots:
            return AccessDecision(False, role, "bot sender")
        if conversation.kind is ConversationKind.DM:
            return await self._decide_dm(message, policy, role, notice)
        return self._decide_group(message, policy, role)

    def _decide_group(
        self, message: InboundMessage, policy: ChannelAccessConfig, role: str
    ) -> AccessDecision:
        chat_id = message.conversation.chat_id
        group = policy.groups.get(chat_id) or policy.groups.get("*")
        if group is None:
            return AccessDecision(False, role, "group not allowed")
        if (
            group.allow_users
            and message.identity.user_id not in group.allow_users
            and role != "owner"
        ):
            return AccessDecision(False, role, "user not allowed in group")
        addressed = message.mentioned or message.command is not None
        if group.require_mention and not addressed:
            return AccessDecision(False, role, "not mentioned")
        return AccessDecision(True, role)

    async def _decide_dm(
        self, message: InboundMessage, policy: ChannelAccessConfig, role: str, notice: bool
    ) -> AccessDecision:
        identity = message.identity
        if role in ("owner", "operator") or identity.user_id in policy.allow_users:
            return AccessDecision(True, role)
        if policy.dm_policy == "open":
            return AccessDecision(True, role)
        if policy.dm_policy in ("disabled", "allowlist"):
            return AccessDecision(False, role, f"dm_policy={policy.dm_policy}")
        revision = self.store.access.revision
        if revision != self._paired_revision:  # an approval may have been revoked
            self._paired.clear()
            self._paired_revision = revision
        if identity.key in self._paired:
            return AccessDecision(True, role)
        if await self.store.access.is_paired(identity.channel, identity.user_id):
            if self.store.access.revision == revision:  # not revoked while we asked
                self._paired.add(identity.key)
            return AccessDecision(True, role)
        if not notice:
            return AccessDecision(False, role, "unpaired")
        reply, code = await self._pairing_notice(identity)
        return AccessDecision(False, role, "unpaired", reply, code)

    async def _pairing_notice(self, identity: Identity) -> tuple[str | None, PairingCode | None]:
        now = time.monotonic()
        last = self._last_notice.get(identity.key)
        if last is not None and now - last < self.notice_interval_s:
            return None, None  # one notice per interval: a flood of messages costs one reply
        self._last_notice[identity.key] = now
        code = await self.store.access.issue_code(
            new_code(),
            identity.channel,
            identity.user_id,
            identity.display_name,
            CODE_TTL_S,
            MAX_PENDING_PER_CHANNEL,
        )
        if code is None:
            if identity.channel not in self._full:
                self._full.add(identity.channel)
                log.warning(
                    "%s: %d pairing codes are pending; new people get none until some are "
                    "approved or expire (decapod pairing list)",
                    identity.channel,
                    MAX_PENDING_PER_CHANNEL,
                )
            return "I can't take new people right now. Please try again later.", None
        self._full.discard(identity.channel)
        reply = (
            "Hi! I don't know you yet. Ask the owner of this bot to approve you with the code "
            f"{code.code} (valid for one hour)."
        )
        return reply, code


def pairing_request(code: PairingCode) -> tuple[str, tuple[Choice, ...]]:
    """What the owners are told of a new pairing code, with Approve / Deny buttons."""
    name = code.display_name or code.user_id
    text = f"{name} ({code.channel}:{code.user_id}) asks to talk to the bot (code {code.code})."
    choices = (Choice("Approve", f"/pair {code.code}"), Choice("Deny", f"/pair deny {code.code}"))
    return text, choices


def register_access_commands(table: CommandTable) -> None:
    @table.add(
        "pair",
        "Approve (or deny) a person's pairing code",
        usage="[deny] <CODE>",
        arg_name="code",
        owner_only=True,
    )
    async def pair(ctx: CommandContext) -> str:
        verb, _, rest = ctx.args.strip().partition(" ")
        deny = verb.lower() == "deny"
        code = (rest if deny else ctx.args).strip().upper()
        if not code:
            return "Usage: /pair CODE, or /pair deny CODE"
        access = ctx.deps.store.access
        if deny:
            refused = await access.deny(code)
            if refused is None:
                return f"No pending pairing code {code} (it may have expired)."
            return f"Denied {refused.display_name or refused.user_id} on {refused.channel}."
        found = await access.approve(code, ctx.message.identity.key)
        if found is None:
            return f"No pending pairing code {code} (it may have expired)."
        name = found.display_name or found.user_id
        return f"Approved {name} on {found.channel}."


def build_access(
    config: Config, store: Store, running: Mapping[str, RunningChannel]
) -> ChannelAccess:
    return ChannelAccess(config, store, running=running)
