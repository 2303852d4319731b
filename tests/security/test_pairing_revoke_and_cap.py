"""Pairing over time: a revoke from the CLI applies to the very next message of a running
gateway, and a handful of throwaway accounts cannot stop a real person from getting a code."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.gateway import Gateway
from bot.providers.testing import FunctionProvider, ScriptedProvider
from bot.security import access
from tests.fakes.channel import RecordingChannel

CODE = re.compile(rf"[{access.CODE_ALPHABET}]{{{access.CODE_LENGTH}}}")


def _config(make_config: Any) -> Any:
    return make_config(
        gateway={"owners": ["test:boss"]},
        channels={"test": {"type": "telegram", "access": {"dm_policy": "pairing"}}},
        sandbox={"backend": "none"},
        memory={"enabled": False},
    )


async def _settle(gw: Gateway) -> None:
    await asyncio.wait_for(gw.sessions.wait_idle(), 10)


async def _decapod(home: Path, *argv: str) -> tuple[int, str]:
    """The CLI in its own process, as an operator runs it next to the gateway."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *argv,
        env={**os.environ, "DECAPOD_HOME": str(home)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_a_revoke_from_the_cli_stops_the_next_message(make_config: Any, home: Path) -> None:
    async def answer(request: Any) -> str:
        return "re: " + request.messages[-1].content

    provider = FunctionProvider(answer)
    channel = RecordingChannel(console=False)
    async with Gateway(_config(make_config), provider=provider, channels={"test": channel}) as gw:
        await channel.push("hi", user="friend")
        [notice] = await channel.wait_for_messages(1, chat_id="friend")
        code = CODE.search(notice).group(0)  # type: ignore[union-attr]
        await channel.push(f"/pair {code}", user="boss")
        # the owner was told of the request (with buttons), then answered
        told, approved = await channel.wait_for_messages(2, chat_id="boss")
        assert code in told and approved.startswith("Approved Friend")
        revision = gw.store.access.revision
        for n, text in enumerate(("one", "two"), start=2):  # the second is answered from cache
            await channel.push(text, user="friend")
            await channel.wait_for_messages(n, chat_id="friend")
        await _settle(gw)
        assert len(provider.requests) == 2
        # the gateway's own writes leave the cache alone: no lookup per message
        assert gw.store.access.revision == revision

        assert await _decapod(home, "pairing", "revoke", "test:friend") == (0, "revoked\n")
        after = await channel.push("three", user="friend")
        await _settle(gw)
        assert await gw.store.inbound.status("test", after.id) == "denied"
        assert len(provider.requests) == 2, "a revoked person costs no LLM call"
        assert channel.texts("friend") == [notice, "re: one", "re: two"]

        # approved again (a new code once the notice interval allows one), they are back
        gw.access._last_notice.clear()  # type: ignore[attr-defined]
        await channel.push("please", user="friend")
        again = (await channel.wait_for_messages(4, chat_id="friend"))[-1]
        code = CODE.search(again).group(0)  # type: ignore[union-attr]
        assert await _decapod(home, "pairing", "approve", code) == (0, "approved Friend on test\n")
        await channel.push("four", user="friend")
        assert (await channel.wait_for_messages(5, chat_id="friend"))[-1] == "re: four"
    assert len(provider.requests) == 3


async def test_throwaway_accounts_do_not_block_a_real_person(make_config: Any) -> None:
    channel = RecordingChannel(console=False)
    provider = ScriptedProvider([])
    async with Gateway(_config(make_config), provider=provider, channels={"test": channel}) as gw:
        for i in range(5):
            await channel.push("hi", user=f"throwaway{i}")
            await channel.push("hi again", user=f"throwaway{i}")  # one code per sender
        await channel.push("hello", user="real")
        await _settle(gw)
        pending = await gw.store.access.pending()
    assert len(pending) == 6 and len({c.code for c in pending}) == 6
    [notice] = channel.texts("real")
    assert CODE.search(notice), notice
    assert provider.requests == []


async def test_the_channel_cap_is_logged_and_shown_by_pairing_list(
    make_config: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bot.cli import main

    monkeypatch.setattr(access, "MAX_PENDING_PER_CHANNEL", 3)
    channel = RecordingChannel(console=False)
    async with Gateway(
        _config(make_config), provider=ScriptedProvider([]), channels={"test": channel}
    ) as gw:
        for i in range(5):
            await channel.push("hi", user=f"p{i}")
        await _settle(gw)
        assert len(await gw.store.access.pending()) == 3
    assert "can't take new people" in channel.texts("p3")[0]
    full = [r for r in caplog.records if "pairing codes are pending" in r.getMessage()]
    assert len(full) == 1, "logged once while the table stays full"

    capsys.readouterr()
    assert await asyncio.to_thread(main, ["pairing", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("pending") for line in lines) == 3
    assert "test: 3 of at most 3 codes pending - full" in lines[-1]
