"""The SQLite dialect the repositories write, in PostgreSQL's.

The repositories keep one SQL text (SQLite's, with `?` or `:name` placeholders); a statement is
translated once, on first use, and the translation cached. Only the constructs the store uses
are known here; anything else passes through unchanged, and PostgreSQL's own error names it.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass

from bot.errors import StoreError
from bot.store.memory_vectors import VEC_TABLE

#: tables whose `id` is generated: an INSERT into one returns it (the cursor's `lastrowid`)
IDENTITY_TABLES = frozenset({"sessions", "turns", "memory_items", "memory_chunks", "web_messages"})

#: `INSERT OR REPLACE` targets: (conflict key, the other columns, in table order)
_REPLACE: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "paired": (("channel", "user_id"), ("display_name", "approved_at", "approved_by")),
    "web_passkeys": (("credential_id",), ("public_key", "sign_count", "created_at", "last_used")),
    "memory_embedding": (("id",), ("model", "dim", "updated_at")),
    "memory_knowledge_files": (("path",), ("sha256", "item_id")),
}
#: SQLite's two-argument max() and min() are PostgreSQL's GREATEST and LEAST
_SCALAR_MINMAX = re.compile(r"\b(max|min)\(([^(),]+),([^(),]+)\)", re.I)

_PLACEHOLDER = re.compile(
    r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|(?<!:):([A-Za-z_]\w*)|%|(?<![.\w])user\b", re.I
)
_INSERT_OR = re.compile(r"^\s*INSERT\s+OR\s+(IGNORE|REPLACE)\s+INTO\s+(\w+)", re.I)
_INSERT_INTO = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.I)
_DATE_UNIXEPOCH = re.compile(r"date\(([^,()]+),\s*'unixepoch'\)", re.I)
_CLAIM_SUBQUERY = re.compile(r"(\(SELECT id FROM \w+ WHERE .*? LIMIT (?:%s|%\(\w+\)s))\)", re.S)
_LIMIT = re.compile(r"LIMIT (%s|%\(\w+\)s)")
_DDL = re.compile(r"^\s*(CREATE|ALTER)\b", re.I)
_DDL_TYPES = [
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY(\s+AUTOINCREMENT)?", re.I), "BIGINT PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
    (re.compile(r"\)\s*WITHOUT\s+ROWID\s*$", re.I), ")"),
]


@dataclass(frozen=True, slots=True)
class Translated:
    sql: str
    #: the statement returns the generated id, read into the cursor's `lastrowid`
    returns_id: bool = False
    #: statements run after it (without parameters), such as the indexes of a new table
    then: tuple[str, ...] = ()
    #: memory's vector table made anew: (name, dimensions); with pgvector it gets a vector
    #: column instead of `sql`'s bytes (bot/store/pg_vectors.py)
    vector_table: tuple[str, int] | None = None
    #: a statement on memory's vector table: its bytes are vectors (pgvector takes text)
    on_vectors: bool = False


#: SQLite upkeep with nothing to do on PostgreSQL: a tsvector column keeps itself, and a
#: deleted row's space is reused by VACUUM rather than zeroed at once (secure_delete)
_NO_OP = "SELECT 0"
_NO_OPS = re.compile(
    r"^\s*(PRAGMA\s+secure_delete\b.*|INSERT INTO memory_fts\(memory_fts\) VALUES \('optimize'\))$",
    re.I,
)
#: the vector table (sqlite-vec's vec0 on SQLite): vectors as float32 bytes ranked in
#: process, or a pgvector column
_VEC0 = re.compile(
    r"^\s*CREATE VIRTUAL TABLE (\w+) USING vec0\(.*?FLOAT\[(\d+)\].*\)\s*$", re.I | re.S
)
_ON_VECTORS = re.compile(rf"\b{VEC_TABLE}\b", re.I)


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> Translated:
    """`sql` (SQLite's dialect) as PostgreSQL runs it through psycopg."""
    if _NO_OPS.match(sql):
        return Translated(_NO_OP)
    vec0 = _VEC0.match(sql)
    if vec0 is not None:
        table = vec0.group(1)
        return Translated(
            f"CREATE TABLE {table} (chunk_id BIGINT PRIMARY KEY, owner TEXT NOT NULL, "
            "embedding BYTEA NOT NULL)",
            then=(f"CREATE INDEX {table}_owner ON {table}(owner)",),
            vector_table=(table, int(vec0.group(2))),
        )
    translated = _translate(sql)
    if _ON_VECTORS.search(sql):
        return dataclasses.replace(translated, on_vectors=True)
    return translated


def _translate(sql: str) -> Translated:
    text = _placeholders(sql)
    text = text.replace(
        "FROM sqlite_master WHERE name =",
        "FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename =",
    )
    if _DDL.match(text):
        return Translated(_ddl(text))
    text = _DATE_UNIXEPOCH.sub(r"to_char(to_timestamp(\1) AT TIME ZONE 'UTC', 'YYYY-MM-DD')", text)
    text = _SCALAR_MINMAX.sub(
        lambda m: (
            f"{'GREATEST' if m.group(1).lower() == 'max' else 'LEAST'}({m.group(2)},{m.group(3)})"
        ),
        text,
    )
    text = re.sub(r"\bjson_each\(", "json_array_elements_text(", text)
    text = text.replace("lower(hex(randomblob(8)))", "substr(md5(random()::text), 1, 16)")
    # a claim's rows are locked, and rows another replica is claiming are passed over
    text = _CLAIM_SUBQUERY.sub(r"\1 FOR UPDATE SKIP LOCKED)", text)
    # SQLite's LIMIT -1 is "no limit"; PostgreSQL's is LIMIT NULL
    text = _LIMIT.sub(r"LIMIT NULLIF(\1, -1)", text)
    text = re.sub(r"^\s*BEGIN\s+IMMEDIATE\b", "BEGIN", text, flags=re.I)
    insert_or = _INSERT_OR.match(text)
    if insert_or is not None:
        text = _insert_or(text, insert_or)
    insert = _INSERT_INTO.match(text)
    if (
        insert is not None
        and insert.group(1).lower() in IDENTITY_TABLES
        and "returning" not in text.lower()
    ):
        return Translated(text.rstrip() + " RETURNING id", returns_id=True)
    return Translated(text)


def _placeholders(sql: str) -> str:
    """`?` and `:name` as psycopg's `%s` and `%(name)s`; every literal `%` doubled (psycopg
    reads them in quoted text too); the column `user` quoted. Quoted text is otherwise left
    alone."""

    def one(m: re.Match[str]) -> str:
        token = m.group(0)
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        if token.lower() == "user":
            return '"user"'  # a column on SQLite, a reserved word on PostgreSQL
        if m.group(1) is not None:
            return f"%({m.group(1)})s"
        return token.replace("%", "%%")  # a quoted literal or identifier

    return _PLACEHOLDER.sub(one, sql)


def _insert_or(text: str, m: re.Match[str]) -> str:
    verb, table = m.group(1).upper(), m.group(2)
    body = f"INSERT INTO {table}" + text[m.end() :]
    if verb == "IGNORE":
        return body.rstrip() + " ON CONFLICT DO NOTHING"
    known = _REPLACE.get(table.lower())
    if known is None:
        raise StoreError(f"INSERT OR REPLACE INTO {table}: its key is not known to the store")
    key, rest = known
    updates = ", ".join(f"{col} = EXCLUDED.{col}" for col in rest)
    return body.rstrip() + f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"


def _ddl(text: str) -> str:
    for pattern, replacement in _DDL_TYPES:
        text = pattern.sub(replacement, text)
    # an integer key the store does not set itself is generated (SQLite's rowid alias)
    return re.sub(
        r"\bid BIGINT PRIMARY KEY(?!\s+CHECK)",
        "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        text,
    )
