"""This replica in the cluster: its id, its role, its heartbeats, and which of its channels
receive only while it leads.

On SQLite there is one process: its role is "single", every channel receives, nothing is
written. On PostgreSQL every replica serves HTTP (webhooks, the web UI, /health) and sends on
every channel; the channels whose way of receiving must exist once (`ExclusiveReceiver`)
receive on the elected leader only (bot/cluster/leader.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bot.cluster.leader import LeaderElection, Role
from bot.cluster.registry import ReplicaId, ReplicaRegistry, new_replica_id

if TYPE_CHECKING:
    from bot.config import Config
    from bot.store import Store

log = logging.getLogger("decapod.cluster")


@runtime_checkable
class ExclusiveReceiver(Protocol):
    """What the cluster uses of a channel whose way of receiving may exist only once per bot:
    Telegram's long polling, Slack's Socket Mode, Discord's gateway. channels.base.BaseChannel
    implements it for a channel that receives any number of times (webhooks), so an adapter
    overrides it only where its platform needs it."""

    #: False when set before `start`: connect for sending only, until `start_receiving`
    receive_on_start: bool

    def receives_exclusively(self) -> bool: ...

    async def start_receiving(self) -> None: ...

    async def stop_receiving(self) -> None:
        """Stop receiving at once; what was received is stored first. Sending goes on."""
        ...


#: the longest /health waits for the table of replicas (a database that hangs)
_HEALTH_READ_S = 2.0


class ClusterNode:
    def __init__(self, config: Config, store: Store, replica: ReplicaId | None = None) -> None:
        self.replica = replica or new_replica_id()
        self.elects = config.store.is_postgres
        if self.elects:
            check_shared_secrets(config)
        #: the channels that receive only while this replica leads
        self.receivers: list[ExclusiveReceiver] = []
        self._config = config
        self._store = store
        self.election: LeaderElection | None = None
        self.registry: ReplicaRegistry | None = None

    @property
    def role(self) -> Role:
        return self.election.role if self.election is not None else Role.SINGLE

    def hold(self, channel: Any) -> bool:
        """Whether `channel` must wait for leadership before it receives; if so, it is told
        (before its start) and remembered."""
        if not (
            self.elects
            and isinstance(channel, ExclusiveReceiver)
            and channel.receives_exclusively()
        ):
            return False
        channel.receive_on_start = False
        self.receivers.append(channel)
        return True

    async def start(self, stack: contextlib.AsyncExitStack) -> None:
        """Heartbeats and the election (PostgreSQL only). Call after the channels started:
        its stop, first on close, stops receiving before the channels stop."""
        if not self.elects:
            return
        store = self._config.store
        self.election = LeaderElection(
            store.url,
            store.password(),
            on_elected=self._receive,
            on_deposed=self._stop_receiving,
            name=f"decapod {self.replica}",
        )
        self.registry = ReplicaRegistry(self._store, self.replica, lambda: self.role.value)
        await self.registry.start()
        stack.push_async_callback(self.registry.stop)
        await self.election.start()
        stack.push_async_callback(self.election.stop)
        log.info("replica %s joined the cluster as a follower", self.replica)

    async def leave(self) -> None:
        """Stop receiving and give the leader lock up now (a stop: another replica takes
        over while this one still finishes its turns)."""
        if self.election is not None:
            await self.election.stop()

    async def _receive(self) -> None:
        # all of them, even when one fails (its failure is raised after, and the election
        # tries again: starting to receive is a no-op for a channel that already does)
        failed: Exception | None = None
        for channel in self.receivers:
            try:
                await channel.start_receiving()
            except Exception as exc:
                failed = failed or exc
        await self._tell_role()
        if failed is not None:
            raise failed

    async def _stop_receiving(self) -> None:
        # all of them, even when one fails: receiving twice is what fencing prevents
        for channel in self.receivers:
            try:
                await channel.stop_receiving()
            except Exception:
                log.exception("a channel did not stop receiving")
        await self._tell_role()

    async def _tell_role(self) -> None:
        if self.registry is not None:
            with contextlib.suppress(Exception):  # the next heartbeat says it
                await self.registry.beat()

    async def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {"replica": str(self.replica), "role": self.role.value}
        if self.election is not None and self.election.elected_at is not None:
            report["leader_for_s"] = round(time.monotonic() - self.election.elected_at, 1)
        if self.registry is None:
            report["replicas"] = [{"id": str(self.replica), "role": self.role.value}]
            return report
        try:
            async with asyncio.timeout(_HEALTH_READ_S):
                rows = await self.registry.live()
        except Exception as exc:
            report["replicas"] = None
            report["replicas_error"] = str(exc) or type(exc).__name__
            return report
        now = time.time()
        report["replicas"] = [
            {"id": r.id, "role": r.role, "seen_s": round(max(0.0, now - r.seen_at), 1)}
            for r in rows
        ]
        return report


def check_shared_secrets(config: Config) -> None:
    """Replicas behind one webhook URL must share its secret: a Telegram webhook without
    `webhook_secret_env` gets a secret made at each start, and the replica that started last
    would be the only one Telegram's posts are accepted by."""
    from bot.channel_configs.telegram import TelegramChannelConfig
    from bot.errors import ConfigError

    for name, channel in config.channels.items():
        if not isinstance(channel, TelegramChannelConfig) or channel.mode != "webhook":
            continue
        if not channel.webhook_secret_env:
            raise ConfigError(
                "with a PostgreSQL store (several replicas), a Telegram webhook needs a secret "
                "every replica shares: set webhook_secret_env to an environment variable "
                "holding it",
                f"channels.{name}.webhook_secret_env",
            )
