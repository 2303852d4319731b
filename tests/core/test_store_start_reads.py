"""The reads a start makes before ready (the admin token, the web UI's password, a channel's
chat moves: keyed lookups; the web UI's passkeys: a small full read) run on the loop: none
opens a reader thread and its connection while the gateway is starting, and each sees what
was written before it."""

from __future__ import annotations

from pathlib import Path

from bot.store import Store
from bot.store.webui import WebUIRepo


async def test_the_starts_reads_open_no_reader_connection(tmp_path: Path) -> None:
    async with Store(tmp_path / "a.db") as store:
        webui = WebUIRepo(store)
        assert await store.kv.get("admin_token") is None
        await store.kv.set("admin_token", "hash")
        await webui.add_passkey("cred", b"key", 3)
        await store.channel_state.add_chat_move("telegram", "-1", "-100")
        assert await store.kv.get("admin_token") == "hash"
        assert [(p.credential_id, p.public_key, p.sign_count) for p in await webui.passkeys()] == [
            ("cred", b"key", 3)
        ]
        assert await store.channel_state.chat_moves("telegram") == {"-100": "-1"}
        assert await store.channel_state.chat_moves("slack") == {}
        assert store._reader_conns == []  # no reader thread's connection was opened
        # a read that is not a keyed lookup still goes to the reader threads
        assert await store.read(lambda conn: conn.execute("SELECT 1").fetchone()[0]) == 1
        assert len(store._reader_conns) == 1
