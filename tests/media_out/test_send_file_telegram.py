"""The send_file tool on Telegram, through python-telegram-bot against the fake Bot API: a
chart a sandboxed script drew arrives as a picture, other files as documents; paths are
confined like the file tools'; a missing or oversized file, a transient failure and a
refusal each end the way the model and the person can act on."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest

from bot.gateway import Gateway
from bot.providers.base import ToolCall
from bot.providers.testing import ScriptedProvider
from tests.channels.telegram.conftest import settled, until
from tests.fakes.telegram import FakeTelegram
from tests.media_out.conftest import (
    ALICE,
    TG_DM,
    needs_bwrap,
    send_file_call,
    tiny_png,
    tool_results,
    workspace,
)

pytestmark = needs_bwrap

CHART_SCRIPT = """\
import struct, zlib
def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
rows = b"".join(b"\\x00" + b"\\x00\\x80\\xff" * 8 for _ in range(8))
png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
open("chart.png", "wb").write(png)
"""


async def test_a_chart_drawn_by_a_sandboxed_script_arrives_as_a_picture(
    tg: FakeTelegram, tg_gateway_config: Callable[..., Any]
) -> None:
    write = {"path": "chart.py", "content": CHART_SCRIPT}
    provider = ScriptedProvider(
        [
            [ToolCall("c1", "write_file", json.dumps(write))],
            [ToolCall("c2", "exec", json.dumps({"command": "python3 chart.py"}))],
            [send_file_call("chart.png")],
            "Here is your chart.",
        ]
    )
    async with Gateway(tg_gateway_config(), provider=provider) as gw:
        tg.push_private("draw me a chart", user_id=ALICE)
        await until(lambda: tg.texts(ALICE) == ["Here is your chart."], timeout=30)
        await settled(gw)
        drawn = (workspace(gw, TG_DM) / "chart.png").read_bytes()
    [upload] = tg.uploads
    assert (upload.method, upload.chat_id, upload.name) == ("sendPhoto", ALICE, "chart.png")
    assert upload.data == drawn and drawn.startswith(b"\x89PNG")
    [result] = tool_results(provider.requests[3])
    assert "sent chart.png" in result and "as a picture" in result


async def test_a_document_and_a_picture_from_the_workspace(
    tg: FakeTelegram, tg_gateway_config: Callable[..., Any]
) -> None:
    provider = ScriptedProvider(
        [
            [send_file_call("notes/report.csv", "f1"), send_file_call("/work/pic.png", "f2")],
            "Both sent.",
        ]
    )
    async with Gateway(tg_gateway_config(), provider=provider) as gw:
        root = workspace(gw, TG_DM)
        (root / "notes").mkdir()
        (root / "notes" / "report.csv").write_text("month,sales\njan,3\n")
        (root / "pic.png").write_bytes(tiny_png())
        tg.push_private("send me the report and the picture", user_id=ALICE)
        await until(lambda: tg.texts(ALICE) == ["Both sent."])
        await settled(gw)
    sent = {(u.method, u.name): u.data for u in tg.uploads}
    assert sent == {
        ("sendDocument", "report.csv"): b"month,sales\njan,3\n",
        ("sendPhoto", "pic.png"): tiny_png(),
    }
    assert all(u.chat_id == ALICE for u in tg.uploads)


async def test_paths_outside_the_workspace_are_refused_like_the_file_tools_refuse_them(
    tg: FakeTelegram, tg_gateway_config: Callable[..., Any], tmp_path: Any
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the host's file")
    calls = [
        send_file_call("../../secret.txt", "a"),
        send_file_call("/etc/passwd", "b"),
        send_file_call("escape/secret.txt", "c"),  # a planted symlink to a host folder
        send_file_call("link.txt", "d"),  # a planted symlink to a host file
    ]
    provider = ScriptedProvider([calls, "No."])
    async with Gateway(tg_gateway_config(), provider=provider) as gw:
        root = workspace(gw, TG_DM)
        os.symlink(tmp_path, root / "escape")
        os.symlink(secret, root / "link.txt")
        tg.push_private("send me files", user_id=ALICE)
        await until(lambda: tg.texts(ALICE) == ["No."])
        await settled(gw)
    results = tool_results(provider.requests[1])
    assert [r.startswith("error: refused") for r in results] == [True] * 4, results
    assert "'..'" in results[0] and "outside the workspace" in results[1]
    assert "symlink" in results[2] and "symlink" in results[3]
    assert tg.uploads == [] and str(tmp_path) not in "".join(results)


async def test_a_missing_file_is_a_clear_tool_error(
    tg: FakeTelegram, tg_gateway_config: Callable[..., Any]
) -> None:
    provider = ScriptedProvider([[send_file_call("nothere.pdf")], "It is not there."])
    async with Gateway(tg_gateway_config(), provider=provider) as gw:
        tg.push_private("send nothere.pdf", user_id=ALICE)
        await until(lambda: tg.texts(ALICE) == ["It is not there."])
        await settled(gw)
    assert tool_results(provider.requests[1]) == ["error: nothere.pdf: no such file"]
    assert tg.uploads == []


async def test_a_file_over_the_chats_limit_is_refused_before_any_upload(
    tg: FakeTelegram, tg_gateway_config: Callable[..., Any]
) -> None:
    provider = ScriptedProvider([[send_file_call("big.bin")], "Too big."])
    async with Gateway(tg_gateway_config(), provider=provider) as gw:
        channel = gw.channels["tg"]
        (workspace(gw, TG_DM) / "big.bin").write_bytes(b"x" * (channel.max_upload_bytes + 1))
        tg.push_private("send big.bin", user_id=ALICE)
        await until(lambda: tg.texts(ALICE) == ["Too big."], timeout=20)
        await settled(gw)
    [result] = tool_results(provider.requests[1])
    assert result.startswith("error: refused: big.bin is 50.0 MB")
    assert "at most 50.0 MB" in result
    assert tg.uploads == [] and not tg.calls_of("sendDocument")


async def test_an_upload_that_fails_transiently_is_tried_again(
    tg: FakeTelegram, tg_gateway_config: Callable[..., Any]
) -> None:
    tg.fail_next("sendDocument", 502, "Bad Gateway")
    provider = ScriptedProvider([[send_file_call("a.txt")], "Sent."])
    async with Gateway(tg_gateway_config(), provider=provider) as gw:
        gw.channels["tg"].retry_backoff_s = 0.01  # type: ignore[attr-defined]
        (workspace(gw, TG_DM) / "a.txt").write_text("hello")
        tg.push_private("send a.txt", user_id=ALICE)
        await until(lambda: tg.texts(ALICE) == ["Sent."])
        await settled(gw)
    assert [c.status for c in tg.calls_of("sendDocument")] == [502, 200]
    assert [(u.name, u.data) for u in tg.uploads] == [("a.txt", b"hello")]
    assert tool_results(provider.requests[1])[0].startswith("sent a.txt")


@pytest.mark.parametrize(
    "refusal",
    [
        "Bad Request: not enough rights to send documents to the chat",
        "Bad Request: file must be non-empty",  # any other 400 of an upload: the same again
    ],
)
async def test_a_refused_upload_is_a_tool_error_and_the_person_gets_one_message(
    tg: FakeTelegram, tg_gateway_config: Callable[..., Any], refusal: str
) -> None:
    tg.refuse(ALICE, 400, refusal, methods=("sendDocument",))
    provider = ScriptedProvider(
        [[send_file_call("a.txt")], lambda request: "I could not send it: the chat refused."]
    )
    async with Gateway(tg_gateway_config(), provider=provider) as gw:
        (workspace(gw, TG_DM) / "a.txt").write_text("hello")
        tg.push_private("send a.txt", user_id=ALICE)
        await until(lambda: bool(tg.texts(ALICE)))
        await settled(gw)
    [result] = tool_results(provider.requests[1])
    assert result.startswith("error: a.txt was not delivered: the chat refused it")
    assert refusal.lower()[len("Bad Request: ") :] in result.lower()
    assert "Sending it again will not help" in result
    assert len(tg.calls_of("sendDocument")) == 1  # a refusal is not retried
    assert tg.texts(ALICE) == ["I could not send it: the chat refused."]
    assert tg.uploads == []


_SECRET = "sk-proj-fake-SECRET-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"


@pytest.mark.parametrize(
    ("head", "tail"),
    [
        pytest.param(b"", b"\n", id="utf-8"),
        # a log with one Latin-1 byte in it is still a text file: one odd byte must not let
        # the key in it leave unredacted
        pytest.param(b"caf\xe9 opened\n", b"\ndone\n", id="one byte that is not utf-8"),
    ],
)
async def test_secrets_in_a_text_file_are_redacted_before_it_leaves(
    tg: FakeTelegram,
    tg_gateway_config: Callable[..., Any],
    monkeypatch: Any,
    head: bytes,
    tail: bytes,
) -> None:
    data = await _sent_file(
        tg, tg_gateway_config, monkeypatch, head + b"KEY=" + _SECRET.encode() + tail
    )
    assert _SECRET.encode() not in data
    # the rest of the file arrives as it was, an odd byte included
    assert data.startswith(head + b"KEY=") and data.endswith(tail)


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
async def test_secrets_in_a_utf16_or_utf32_text_file_are_redacted_before_it_leaves(
    tg: FakeTelegram, tg_gateway_config: Callable[..., Any], monkeypatch: Any, codec: str
) -> None:
    """Windows' "Unicode" text: every other byte is NUL, which must not make it binary."""
    data = await _sent_file(
        tg, tg_gateway_config, monkeypatch, f"\ufeffKEY={_SECRET}\r\n".encode(codec)
    )
    assert _SECRET.encode(codec) not in data
    text = data.decode(codec)
    assert text.startswith("\ufeffKEY=") and text.endswith("\r\n") and _SECRET not in text


async def _sent_file(
    tg: FakeTelegram, tg_gateway_config: Callable[..., Any], monkeypatch: Any, content: bytes
) -> bytes:
    """What Telegram receives when the model sends a workspace file holding `content`."""
    monkeypatch.setenv("FAKE_PROVIDER_KEY", _SECRET)
    config = tg_gateway_config(
        providers={"local": {"preset": "ollama", "api_key_env": "FAKE_PROVIDER_KEY"}}
    )
    provider = ScriptedProvider([[send_file_call("run.log")], "Sent."])
    async with Gateway(config, provider=provider) as gw:
        (workspace(gw, TG_DM) / "run.log").write_bytes(content)
        tg.push_private("send run.log", user_id=ALICE)
        await until(lambda: tg.texts(ALICE) == ["Sent."])
        await settled(gw)
    [upload] = tg.uploads
    return upload.data
