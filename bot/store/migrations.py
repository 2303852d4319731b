"""Schema migrations: ordered functions, each run once, in name order. The runner,
bot/store/migration_runner.py, applies the pending ones: on SQLite all in one transaction;
on PostgreSQL (postgres.py) one transaction each.

Add a migration by writing the next `mNNN_what(conn)` function below and decorating it with
`@migration`. Never edit one that has shipped; write a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Migration = Callable[[Any], None]
MIGRATIONS: dict[str, Migration] = {}


def migration(fn: Migration) -> Migration:
    MIGRATIONS[fn.__name__] = fn
    return fn


@migration
def m001_core(conn: Any) -> None:
    for stmt in _M001:
        conn.execute(stmt)


_M001 = [
    # person_id is the canonical person; identities on several platforms share one after /link
    """CREATE TABLE identities (
        key TEXT PRIMARY KEY, channel TEXT NOT NULL, user_id TEXT NOT NULL,
        display_name TEXT NOT NULL DEFAULT '', is_bot INTEGER NOT NULL DEFAULT 0,
        person_id TEXT NOT NULL, timezone TEXT,
        first_seen REAL NOT NULL, last_seen REAL NOT NULL)""",
    "CREATE INDEX identities_person ON identities(person_id)",
    # one row per session generation; /new ends the current one and starts another
    """CREATE TABLE sessions (
        id INTEGER PRIMARY KEY, key TEXT NOT NULL, created_at REAL NOT NULL, ended_at REAL,
        summary TEXT NOT NULL DEFAULT '', summary_upto INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX sessions_key ON sessions(key, id)",
    """CREATE TABLE turns (
        id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL REFERENCES sessions(id),
        turn_id TEXT NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL DEFAULT '',
        tool_calls TEXT, tool_call_id TEXT, name TEXT, identity_key TEXT,
        provider TEXT, model TEXT, input_tokens INTEGER, output_tokens INTEGER,
        cache_read_tokens INTEGER, cache_write_tokens INTEGER, latency_ms REAL, outcome TEXT,
        created_at REAL NOT NULL)""",
    "CREATE INDEX turns_session ON turns(session_id, id)",
    "CREATE INDEX turns_turn ON turns(turn_id)",
    # every inbound delivery, stored before it is handled: dedupe and crash recovery
    """CREATE TABLE inbound (
        channel TEXT NOT NULL, delivery_id TEXT NOT NULL, session_key TEXT NOT NULL,
        payload TEXT NOT NULL, status TEXT NOT NULL, error TEXT,
        received_at REAL NOT NULL, updated_at REAL NOT NULL,
        PRIMARY KEY (channel, delivery_id))""",
    "CREATE INDEX inbound_open ON inbound(status) WHERE status IN ('pending', 'running')",
    "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at REAL NOT NULL)",
]


@migration
def m002_access(conn: Any) -> None:
    conn.execute(
        """CREATE TABLE paired (
            channel TEXT NOT NULL, user_id TEXT NOT NULL, display_name TEXT NOT NULL DEFAULT '',
            approved_at REAL NOT NULL, approved_by TEXT NOT NULL,
            PRIMARY KEY (channel, user_id))"""
    )
    conn.execute(
        """CREATE TABLE pairing_codes (
            code TEXT PRIMARY KEY, channel TEXT NOT NULL, user_id TEXT NOT NULL,
            display_name TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL,
            expires_at REAL NOT NULL)"""
    )
    conn.execute("CREATE INDEX pairing_codes_user ON pairing_codes(channel, user_id)")


@migration
def m003_memory(conn: Any) -> None:
    for stmt in _M003:
        conn.execute(stmt)


_M003 = [
    # owner is the canonical person id, or 'shared' for the knowledge folder
    """CREATE TABLE memory_items (
        id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, kind TEXT NOT NULL,
        text TEXT NOT NULL, text_hash TEXT NOT NULL, source TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL, updated_at REAL NOT NULL, expires_at REAL)""",
    "CREATE INDEX memory_items_owner ON memory_items(owner, text_hash)",
    "CREATE INDEX memory_items_expiry ON memory_items(expires_at) WHERE expires_at IS NOT NULL",
    # AUTOINCREMENT: a chunk id is never reused, so a stale vector can never name a new chunk
    """CREATE TABLE memory_chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        item_id INTEGER NOT NULL REFERENCES memory_items(id) ON DELETE CASCADE,
        owner TEXT NOT NULL, owner_tag TEXT NOT NULL, seq INTEGER NOT NULL, text TEXT NOT NULL,
        text_hash TEXT NOT NULL, embedded INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX memory_chunks_item ON memory_chunks(item_id)",
    "CREATE INDEX memory_chunks_owner ON memory_chunks(owner)",
    "CREATE INDEX memory_chunks_hash ON memory_chunks(text_hash)",
    "CREATE INDEX memory_chunks_pending ON memory_chunks(id) WHERE embedded = 0",
    # owner_tag is one token per owner, so a MATCH is scoped to an owner inside the index
    """CREATE VIRTUAL TABLE memory_fts USING fts5(
        text, owner_tag, content='memory_chunks', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2')""",
    "INSERT INTO memory_fts(memory_fts, rank) VALUES ('rank', 'bm25(1.0, 0.0)')",
    """CREATE TRIGGER memory_chunks_ai AFTER INSERT ON memory_chunks BEGIN
        INSERT INTO memory_fts(rowid, text, owner_tag) VALUES (new.id, new.text, new.owner_tag);
    END""",
    """CREATE TRIGGER memory_chunks_ad AFTER DELETE ON memory_chunks BEGIN
        INSERT INTO memory_fts(memory_fts, rowid, text, owner_tag)
        VALUES ('delete', old.id, old.text, old.owner_tag);
    END""",
    """CREATE TRIGGER memory_chunks_au AFTER UPDATE OF text, owner_tag ON memory_chunks BEGIN
        INSERT INTO memory_fts(memory_fts, rowid, text, owner_tag)
        VALUES ('delete', old.id, old.text, old.owner_tag);
        INSERT INTO memory_fts(rowid, text, owner_tag) VALUES (new.id, new.text, new.owner_tag);
    END""",
    # the model behind the vector table (memory_vec, created at run time with this dim)
    """CREATE TABLE memory_embedding (
        id INTEGER PRIMARY KEY CHECK (id = 1), model TEXT NOT NULL, dim INTEGER NOT NULL,
        updated_at REAL NOT NULL)""",
    # chunk ids whose vectors could not be deleted (no sqlite-vec in that process)
    "CREATE TABLE memory_vec_orphans (chunk_id INTEGER PRIMARY KEY)",
    """CREATE TABLE memory_embed_cache (
        model TEXT NOT NULL, text_hash TEXT NOT NULL, vector BLOB NOT NULL,
        PRIMARY KEY (model, text_hash)) WITHOUT ROWID""",
    "CREATE INDEX memory_embed_cache_hash ON memory_embed_cache(text_hash)",
    """CREATE TABLE memory_knowledge_files (
        path TEXT PRIMARY KEY, sha256 TEXT NOT NULL,
        item_id INTEGER NOT NULL REFERENCES memory_items(id) ON DELETE CASCADE)""",
    """CREATE TABLE memory_link_codes (
        code TEXT PRIMARY KEY, person_id TEXT NOT NULL, expires_at REAL NOT NULL)""",
]


@migration
def m004_jobs(conn: Any) -> None:
    for stmt in _M004:
        conn.execute(stmt)


_M004 = [
    # reminders and scheduled tasks, and the delivery outbox they are claimed from (leases)
    """CREATE TABLE jobs (
        id TEXT PRIMARY KEY, person_id TEXT NOT NULL, identity_key TEXT NOT NULL,
        kind TEXT NOT NULL, text TEXT NOT NULL,
        repeat TEXT NOT NULL, interval_s REAL, cron TEXT, timezone TEXT NOT NULL,
        channel TEXT NOT NULL, chat_id TEXT NOT NULL, conv_kind TEXT NOT NULL, thread_id TEXT,
        due_at REAL NOT NULL, run_at REAL NOT NULL, status TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0, lease_until REAL, attempt_id TEXT,
        sent_message_id TEXT, late_by REAL, runs INTEGER NOT NULL DEFAULT 0, last_error TEXT,
        created_at REAL NOT NULL, updated_at REAL NOT NULL)""",
    "CREATE INDEX jobs_due ON jobs(run_at) WHERE status IN ('pending', 'sending')",
    "CREATE INDEX jobs_person ON jobs(person_id, status)",
    # occurrences found too late to deliver; each is reported to its person once
    """CREATE TABLE job_misses (
        job_id TEXT NOT NULL REFERENCES jobs(id), due_at REAL NOT NULL, reported_at REAL,
        PRIMARY KEY (job_id, due_at))""",
    "CREATE INDEX job_misses_open ON job_misses(job_id) WHERE reported_at IS NULL",
]


@migration
def m005_delivery_progress(conn: Any) -> None:
    # the outbound side of a delivery: what of its answer the person can see (so a retry or
    # a restart sends only the rest), the answer itself while it is unfinished, and how
    # often sending failed (a delivery ends as 'failed' after a bounded number of tries)
    for stmt in _M005:
        conn.execute(stmt)


_M005 = [
    "ALTER TABLE inbound ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE inbound ADD COLUMN retry_at REAL",
    "ALTER TABLE inbound ADD COLUMN answer TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE inbound ADD COLUMN answer_final INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE inbound ADD COLUMN shown_chars INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE inbound ADD COLUMN sent_refs TEXT NOT NULL DEFAULT '[]'",
]


@migration
def m006_memory_context(conn: Any) -> None:
    """Memory chunks get a `context` column (the speaker's neighbouring turn, the date it was
    said): indexed in its own FTS5 column, weighted below the text itself at query time."""
    conn.execute("ALTER TABLE memory_chunks ADD COLUMN context TEXT NOT NULL DEFAULT ''")
    for trigger in ("memory_chunks_ai", "memory_chunks_ad", "memory_chunks_au"):
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("DROP TABLE memory_fts")
    for stmt in _M006:
        conn.execute(stmt)
    conn.execute("INSERT INTO memory_fts(memory_fts) VALUES ('rebuild')")


_M006 = [
    """CREATE VIRTUAL TABLE memory_fts USING fts5(
        text, owner_tag, context, content='memory_chunks', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2')""",
    "INSERT INTO memory_fts(memory_fts, rank) VALUES ('rank', 'bm25(1.0, 0.0, 0.3)')",
    """CREATE TRIGGER memory_chunks_ai AFTER INSERT ON memory_chunks BEGIN
        INSERT INTO memory_fts(rowid, text, owner_tag, context)
        VALUES (new.id, new.text, new.owner_tag, new.context);
    END""",
    """CREATE TRIGGER memory_chunks_ad AFTER DELETE ON memory_chunks BEGIN
        INSERT INTO memory_fts(memory_fts, rowid, text, owner_tag, context)
        VALUES ('delete', old.id, old.text, old.owner_tag, old.context);
    END""",
    """CREATE TRIGGER memory_chunks_au AFTER UPDATE OF text, owner_tag, context ON memory_chunks
    BEGIN
        INSERT INTO memory_fts(memory_fts, rowid, text, owner_tag, context)
        VALUES ('delete', old.id, old.text, old.owner_tag, old.context);
        INSERT INTO memory_fts(rowid, text, owner_tag, context)
        VALUES (new.id, new.text, new.owner_tag, new.context);
    END""",
]


@migration
def m007_webui(conn: Any) -> None:
    """The web UI's own tables: browser logins (only the SHA-256 of the cookie's value), the
    messages sent to a web chat outside a turn (reminders), passkeys, and pairing links."""
    for stmt in _M007:
        conn.execute(stmt)


_M007 = [
    """CREATE TABLE web_sessions (
        key TEXT PRIMARY KEY, user TEXT NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
        csrf TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL)""",
    "CREATE INDEX web_sessions_expiry ON web_sessions(expires_at)",
    """CREATE TABLE web_messages (
        id INTEGER PRIMARY KEY, chat_id TEXT NOT NULL, text TEXT NOT NULL,
        created_at REAL NOT NULL)""",
    "CREATE INDEX web_messages_chat ON web_messages(chat_id, id)",
    """CREATE TABLE web_passkeys (
        credential_id TEXT PRIMARY KEY, public_key BLOB NOT NULL, sign_count INTEGER NOT NULL,
        created_at REAL NOT NULL, last_used REAL)""",
    """CREATE TABLE web_invites (
        key TEXT PRIMARY KEY, name TEXT NOT NULL, created_at REAL NOT NULL,
        expires_at REAL NOT NULL)""",
]


@migration
def m008_model_choices(conn: Any) -> None:
    # the model a person picked with /model (scope = their person id), and the owner's pick
    # for everyone (scope = '*'); each is tried first, the configured chain after it
    conn.execute(
        """CREATE TABLE model_choices (
            scope TEXT PRIMARY KEY, model TEXT NOT NULL, set_by TEXT NOT NULL,
            updated_at REAL NOT NULL)"""
    )


@migration
def m009_session_leases(conn: Any) -> None:
    """Replicas on one PostgreSQL database: which replica runs each session's turns now (a
    lease with an expiry, so a dead replica's sessions are taken over), and the approvals a
    turn waits for, so that an /approve reaching any replica answers it. Created on SQLite
    too, where one process needs neither."""
    for stmt in _M009:
        conn.execute(stmt)


_M009 = [
    """CREATE TABLE session_leases (
        session_key TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL)""",
    "CREATE INDEX session_leases_holder ON session_leases(holder)",
    """CREATE TABLE approvals (
        id TEXT PRIMARY KEY, holder TEXT NOT NULL, session_key TEXT NOT NULL,
        requester TEXT NOT NULL, summary TEXT NOT NULL, created_at REAL NOT NULL,
        expires_at REAL NOT NULL, approved INTEGER, decided_at REAL)""",
    # the open deliveries of one session: what a lease's holder runs
    "CREATE INDEX inbound_session_open ON inbound(session_key) "
    "WHERE status IN ('pending', 'running')",
]


@migration
def m010_replicas(conn: Any) -> None:
    # one row per gateway process on this database (bot/cluster/registry.py): its id, its
    # role, and when it last said it was alive; rows of replicas gone long ago are pruned
    conn.execute(
        """CREATE TABLE replicas (
            id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
            started_at REAL NOT NULL, role TEXT NOT NULL, seen_at REAL NOT NULL)"""
    )


@migration
def m011_channel_state(conn: Any) -> None:
    """What channel adapters keep between messages, shared by every replica on one database
    (bot/channel_state.py): sent messages' live buttons and their tokens, the Slack threads
    the bot posted in, and Telegram groups that became supergroups."""
    for stmt in _M011:
        conn.execute(stmt)


_M011 = [
    """CREATE TABLE channel_buttons (
        channel TEXT NOT NULL, key TEXT NOT NULL, conversation TEXT NOT NULL,
        shown TEXT NOT NULL, expires_at REAL NOT NULL, allowed TEXT NOT NULL, used_by TEXT,
        PRIMARY KEY (channel, key))""",
    "CREATE INDEX channel_buttons_expiry ON channel_buttons(expires_at)",
    """CREATE TABLE channel_button_tokens (
        channel TEXT NOT NULL, token TEXT NOT NULL, key TEXT NOT NULL, position INTEGER NOT NULL,
        label TEXT NOT NULL, command TEXT NOT NULL, PRIMARY KEY (channel, token))""",
    "CREATE INDEX channel_button_tokens_key ON channel_button_tokens(channel, key)",
    """CREATE TABLE channel_threads (
        channel TEXT NOT NULL, chat TEXT NOT NULL, ts TEXT NOT NULL, added_at REAL NOT NULL,
        PRIMARY KEY (channel, chat, ts))""",
    "CREATE INDEX channel_threads_added ON channel_threads(added_at)",
    """CREATE TABLE channel_chat_moves (
        channel TEXT NOT NULL, new_id TEXT NOT NULL, old_id TEXT NOT NULL,
        PRIMARY KEY (channel, new_id))""",
]


@migration
def m012_job_answer(conn: Any) -> None:
    # a task's (or check-in's) answer whose sending failed: the retry sends it, and does
    # not run the task's prompt, and its tools, again
    conn.execute("ALTER TABLE jobs ADD COLUMN answer TEXT")


@migration
def m013_web_message_answer(conn: Any) -> None:
    # the id a message sent to the web chat outside a turn was streamed under: the history
    # says it, so a page that shows it there does not take it again on a reconnect
    conn.execute("ALTER TABLE web_messages ADD COLUMN answer_id TEXT NOT NULL DEFAULT ''")


@migration
def m014_web_shared(conn: Any) -> None:
    """What the web UI keeps between two requests that a balancer may send to different
    replicas: passkey challenges (one use, minutes long) and, on a shared database, the
    files uploaded from the chat page (kept a day)."""
    for stmt in _M014:
        conn.execute(stmt)


_M014 = [
    """CREATE TABLE web_challenges (
        key TEXT PRIMARY KEY, challenge BLOB NOT NULL, expires_at REAL NOT NULL)""",
    "CREATE INDEX web_challenges_expiry ON web_challenges(expires_at)",
    """CREATE TABLE web_uploads (
        id TEXT PRIMARY KEY, person TEXT NOT NULL, name TEXT NOT NULL, mime TEXT NOT NULL,
        size INTEGER NOT NULL, kind TEXT NOT NULL, created_at REAL NOT NULL,
        data BLOB NOT NULL)""",
    "CREATE INDEX web_uploads_person ON web_uploads(person, created_at)",
    "CREATE INDEX web_uploads_created ON web_uploads(created_at)",
]
