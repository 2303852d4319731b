"""The jobs table: reminders and scheduled tasks, and the outbox their deliveries go through.

A delivery is claimed with one atomic UPDATE that takes a row which is pending and due, or
whose earlier claim's lease has run out (the process holding it died). The claim stamps a
fresh attempt_id; every later transition names that attempt_id, so a delivery that lost its
claim (cancelled meanwhile, or taken over) cannot overwrite the row.

Commits a person relies on (a new job, a cancel, a delivery marked sent) are made durable
before the call returns: the WAL is fsynced, which is what `PRAGMA synchronous=FULL` does for
every commit, without slowing down the other tables' writes on the shared connection
(bot/store/wal_sync.py).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bot.messages import Conversation, ConversationKind
from bot.store.job_model import (
    OPEN_SQL,
    OPEN_STATUSES,
    SKIPPED_NOT_ALLOWED,
    ActiveJobLimit,
    Job,
    JobKind,
    JobStatus,
    Miss,
    NewJob,
)
from bot.store.wal_sync import WalSync

if TYPE_CHECKING:
    from bot.store import Conn, Store

# the job model lives in bot/store/job_model.py; its names stay importable from here
__all__ = [
    "OPEN_STATUSES",
    "SKIPPED_NOT_ALLOWED",
    "ActiveJobLimit",
    "Job",
    "JobKind",
    "JobRepo",
    "JobStatus",
    "Miss",
    "NewJob",
]

T = TypeVar("T")


_ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: ids are typed by hand
_ID_LENGTH = 6


_NAMES = (
    "id", "person_id", "identity_key", "kind", "text", "repeat", "interval_s", "cron",
    "timezone", "channel", "chat_id", "conv_kind", "thread_id", "due_at", "run_at", "status",
    "attempt", "attempt_id", "lease_until", "sent_message_id", "late_by", "runs", "last_error",
    "created_at", "answer",
)  # fmt: skip
_COLUMNS = ", ".join(_NAMES)
_J_COLUMNS = ", ".join(f"j.{name}" for name in _NAMES)

# Due: pending and its time has come, or being sent under a lease that ran out. The status
# term repeats the partial index's condition so SQLite uses jobs_due.
_DUE = (
    "status IN ('pending', 'sending') AND run_at <= :now "
    "AND (status = 'pending' OR lease_until < :now) "
    "AND id NOT IN (SELECT value FROM json_each(:busy))"
)
_CLAIM = (
    "UPDATE jobs SET status = 'sending', attempt = attempt + 1, lease_until = :lease_until, "
    "attempt_id = lower(hex(randomblob(8))), updated_at = :now "
    "WHERE id IN (SELECT id FROM jobs WHERE {where} ORDER BY run_at LIMIT :limit) "
    f"RETURNING {_COLUMNS}"
)
_HELD = "id = :id AND attempt_id = :attempt_id AND status = 'sending'"


def _job(row: tuple[Any, ...]) -> Job:
    f = dict(zip(_NAMES, row, strict=True))
    f["conversation"] = Conversation(
        f.pop("channel"), f.pop("chat_id"), ConversationKind(f.pop("conv_kind")), f.pop("thread_id")
    )
    f["kind"], f["status"] = JobKind(f["kind"]), JobStatus(f["status"])
    return Job(**f)


def _held(job: Job) -> dict[str, Any]:
    return {"id": job.id, "attempt_id": job.attempt_id}


class JobRepo:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._wal = WalSync(Path(f"{store.path}-wal"))

    async def _durable_write(self, fn: Callable[[Conn], T]) -> T:
        result = await self.store.write(fn)
        await self._wal.sync()
        return result

    async def _give_back(
        self,
        job: Job,
        sets: str,
        values: dict[str, Any],
        *,
        now: float,
        durable: bool = False,
        then: Callable[[Conn], object] | None = None,
    ) -> bool:
        """End the claim of `job`, setting `sets` too (`values` their parameters); False when
        the claim was lost meanwhile (the job was cancelled or taken over). `durable`: the
        person relies on it (a delivery marked sent, a job cancelled or paused). `then`: run
        in the same transaction once the claim has ended."""

        def op(conn: Conn) -> bool:
            sql = f"UPDATE jobs SET {sets}, lease_until = NULL, updated_at = :now WHERE {_HELD}"
            if not conn.execute(sql, {**values, "now": now, **_held(job)}).rowcount:
                return False
            if then is not None:
                then(conn)
            return True

        return await (self._durable_write(op) if durable else self.store.write(op))

    # creating, reading, cancelling -----------------------------------------------------------
    async def insert(self, new: NewJob, *, max_active: int) -> Job:
        """Store a new pending job; raises ActiveJobLimit when its person has too many."""

        def op(conn: Conn) -> Job:
            active = conn.execute(
                "SELECT count(*) FROM jobs "
                "WHERE person_id = ? AND status IN ('pending', 'sending')",
                (new.person_id,),
            ).fetchone()[0]
            if active >= max_active:
                raise ActiveJobLimit(active)
            conv = new.conversation
            row = (
                _new_id(conn), new.person_id, new.identity_key, new.kind.value, new.text,
                new.repeat, new.interval_s, new.cron, new.timezone, conv.channel, conv.chat_id,
                conv.kind.value, conv.thread_id, new.due_at, new.due_at, "pending", 0, None, None,
                None, None, 0, None, new.created_at, None,
            )  # fmt: skip
            placeholders = ", ".join("?" * (len(row) + 1))
            conn.execute(
                f"INSERT INTO jobs ({_COLUMNS}, updated_at) VALUES ({placeholders})",
                (*row, new.created_at),
            )
            return _job(row)

        return await self._durable_write(op)

    async def get(self, job_id: str) -> Job | None:
        return await self.store.read(lambda c: _get(c, job_id))

    async def listing(self, *, include_closed: bool, person_id: str | None = None) -> list[Job]:
        """Jobs of one person, or of everybody (for the operator), soonest first."""
        # "1 = 1", not "1": PostgreSQL takes no integer as a condition
        where = "1 = 1" if include_closed else f"status IN {OPEN_SQL}"
        params: tuple[str, ...] = ()
        if person_id is not None:
            where += " AND person_id = ?"
            params = (person_id,)

        def op(conn: Conn) -> list[Job]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE {where} ORDER BY run_at", params
            ).fetchall()
            return [_job(r) for r in rows]

        return await self.store.read(op)

    async def cancel(self, job_id: str, person_id: str | None, now: float) -> bool:
        """Cancel an open job. With a person, only that person's job (None: the operator)."""
        owner = "" if person_id is None else " AND person_id = :person"

        def op(conn: Conn) -> bool:
            cur = conn.execute(
                "UPDATE jobs SET status = 'cancelled', lease_until = NULL, updated_at = :now "
                f"WHERE id = :id AND status IN {OPEN_SQL}{owner}",
                {"id": job_id, "person": person_id, "now": now},
            )
            return bool(cur.rowcount)

        return await self._durable_write(op)

    async def direct_conversations(
        self, person_id: str, exclude: Conversation
    ) -> list[tuple[Conversation, str]]:
        """The person's direct-message conversations that have jobs, most recent first, each
        with the identity that set them there: after a /link one person has DMs on other
        channels, and whether they may be told something there is that account's question."""

        def op(conn: Conn) -> list[tuple[Any, ...]]:
            return list(
                conn.execute(
                    "SELECT channel, chat_id, conv_kind, thread_id, identity_key, "
                    "max(created_at) AS latest "
                    "FROM jobs WHERE person_id = ? AND conv_kind = 'dm' AND status != 'paused' "
                    "GROUP BY channel, chat_id, conv_kind, thread_id, identity_key "
                    "ORDER BY latest DESC",
                    (person_id,),
                ).fetchall()
            )

        found = [
            (Conversation(ch, chat, ConversationKind(kind), thread), identity_key)
            for ch, chat, kind, thread, identity_key, _ in await self.store.read(op)
        ]
        return [(c, key) for c, key in found if c != exclude]

    # the delivery outbox ---------------------------------------------------------------------
    async def claim_due(
        self,
        now: float,
        lease_until: float,
        *,
        limit: int,
        overdue_before: float,
        busy: Collection[str],
    ) -> list[Job]:
        """Claim every due job older than `overdue_before` (they are only marked missed or
        caught up, never left for a later pass), then up to `limit` of the others."""
        params = {
            "now": now,
            "lease_until": lease_until,
            "busy": json.dumps(list(busy)),
            "before": overdue_before,
        }

        def op(conn: Conn) -> list[Job]:
            overdue = conn.execute(
                _CLAIM.format(where=_DUE + " AND due_at < :before"), {**params, "limit": -1}
            ).fetchall()
            rest = conn.execute(_CLAIM.format(where=_DUE), {**params, "limit": limit}).fetchall()
            return [_job(r) for r in overdue + rest]

        return await self.store.write(op)

    async def next_wake(self, busy: Collection[str]) -> float | None:
        """When the next claim can succeed: a due time, or a lease that runs out."""

        def op(conn: Conn) -> float | None:
            row = conn.execute(
                "SELECT min(CASE WHEN status = 'pending' THEN run_at ELSE lease_until END) "
                "FROM jobs WHERE status IN ('pending', 'sending') "
                "AND id NOT IN (SELECT value FROM json_each(?))",
                (json.dumps(list(busy)),),
            ).fetchone()
            return None if row[0] is None else float(row[0])

        return await self.store.read(op)

    async def complete(
        self, job: Job, *, message_id: str, late_by: float, next_due: float | None, now: float
    ) -> bool:
        """Record a delivery; a repeating job becomes pending for `next_due`. False when the
        claim was lost (the job was cancelled or taken over meanwhile)."""
        status = JobStatus.SENT if next_due is None else JobStatus.PENDING
        due = job.due_at if next_due is None else next_due
        return await self._give_back(
            job,
            "status = :status, due_at = :due, run_at = :due, "
            "attempt = CASE WHEN :status = 'pending' THEN 0 ELSE attempt END, "
            "sent_message_id = :message_id, late_by = :late_by, runs = runs + 1, "
            "last_error = NULL, answer = NULL",
            {"status": status.value, "due": due, "message_id": message_id, "late_by": late_by},
            now=now,
            durable=True,
        )

    async def extend_lease(self, job: Job, *, until: float) -> bool:
        """Keep the claim of a delivery still under way; False when it was lost."""
        return await self.store.write(
            lambda c: bool(
                c.execute(
                    f"UPDATE jobs SET lease_until = :until WHERE {_HELD}",
                    {"until": until, **_held(job)},
                ).rowcount
            )
        )

    async def release(self, job: Job, *, due: float, now: float) -> bool:
        """Give a claimed job back unsent, due at `due` (the occurrence it catches up on):
        there was no room to deliver it in this pass."""
        return await self._give_back(
            job,
            "status = 'pending', due_at = :due, run_at = :due, attempt = attempt - 1",
            {"due": due},
            now=now,
        )

    async def skip(self, job: Job, *, due: float, now: float) -> bool:
        """Give a claimed job back for `due` without running it: its person may not be
        answered there now. Its tries start over, and its listing says it was skipped."""
        return await self._give_back(
            job,
            "status = 'pending', due_at = :due, run_at = :due, attempt = 0, "
            "last_error = :error, answer = NULL",
            {"due": due, "error": SKIPPED_NOT_ALLOWED},
            now=now,
        )

    async def cancel_claimed(self, job: Job, *, error: str, now: float) -> bool:
        """Cancel a claimed job, saying why; False when the claim was lost meanwhile."""
        return await self._give_back(
            job,
            "status = 'cancelled', last_error = :error, answer = NULL",
            {"error": error[:500]},
            now=now,
            durable=True,
        )

    async def holds(self, job: Job) -> bool:
        """Whether `job`'s claim still stands (not cancelled, nor taken over, meanwhile)."""
        return await self.store.read(
            lambda c: (
                c.execute(f"SELECT 1 FROM jobs WHERE {_HELD}", _held(job)).fetchone() is not None
            )
        )

    async def retry_later(
        self, job: Job, *, run_at: float, error: str, now: float, answer: str | None
    ) -> bool:
        """Try again at `run_at`, keeping `answer` (a task's, made but not sent) for it."""
        return await self._give_back(
            job,
            "status = 'pending', run_at = :run_at, last_error = :error, answer = :answer",
            {"run_at": run_at, "error": error[:500], "answer": answer},
            now=now,
        )

    async def pause(self, job: Job, *, error: str, now: float) -> bool:
        return await self._give_back(
            job,
            "status = 'paused', last_error = :error, answer = NULL",
            {"error": error[:500]},
            now=now,
            durable=True,
        )

    async def mark_missed(
        self, job: Job, *, missed_due: float, next_due: float | None, now: float
    ) -> bool:
        """Record a miss to report; the job closes as missed, or waits for `next_due`."""
        status = JobStatus.MISSED if next_due is None else JobStatus.PENDING
        due = job.due_at if next_due is None else next_due

        return await self._give_back(
            job,
            "status = :status, due_at = :due, run_at = :due, attempt = 0, answer = NULL",
            {"status": status.value, "due": due},
            now=now,
            durable=True,
            then=lambda conn: conn.execute(
                "INSERT OR IGNORE INTO job_misses (job_id, due_at) VALUES (?, ?)",
                (job.id, missed_due),
            ),
        )

    async def unreported_misses(self) -> list[Miss]:
        def op(conn: Conn) -> list[Miss]:
            rows = conn.execute(
                f"SELECT {_J_COLUMNS}, m.due_at FROM job_misses m JOIN jobs j ON j.id = m.job_id "
                "WHERE m.reported_at IS NULL ORDER BY m.due_at"
            ).fetchall()
            return [Miss(_job(r[:-1]), r[-1]) for r in rows]

        return await self.store.read(op)

    async def mark_reported(self, misses: Collection[Miss], now: float) -> None:
        await self.store.write(
            lambda c: c.executemany(
                "UPDATE job_misses SET reported_at = ? WHERE job_id = ? AND due_at = ?",
                [(now, m.job.id, m.due_at) for m in misses],
            )
        )


def _get(conn: Conn, job_id: str) -> Job | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return _job(row) if row else None


def _new_id(conn: Conn) -> str:
    while True:
        job_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))
        if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
            return job_id
