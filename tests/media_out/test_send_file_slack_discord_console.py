"""The send_file tool on Slack (slack_sdk's files_upload_v2: files.getUploadURLExternal, the
POST of the bytes, files.completeUploadExternal) and Discord (discord.py's multipart
attachments) against their fakes, and on the console (a file in the outbox folder)."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.errors import DeliveryRefused
from bot.gateway import Gateway
from bot.messages import Conversation, ConversationKind, SentRef
from bot.providers.testing import ScriptedProvider
from channels.base import FileUpload
from channels.console import ConsoleChannel
from tests.channels.slack.conftest import idle, until
from tests.fakes.channel import RecordingChannel
from tests.fakes.discord import ALICE as DISCORD_ALICE
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack
from tests.media_out.conftest import (
    SANDBOX,
    needs_bwrap,
    send_file_call,
    tiny_png,
    tool_results,
    workspace,
)

pytestmark = needs_bwrap

SLACK_DM = Conversation("slack", "D0001", ConversationKind.DM)


class _Typed(io.StringIO):
    """Terminal input that is typed once `ready` is set (the console reads on a thread)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.ready = threading.Event()

    def readline(self, size: int | None = -1) -> str:
        self.ready.wait(20)
        return super().readline(size)


def _both() -> ScriptedProvider:
    return ScriptedProvider(
        [[send_file_call("report.txt", "f1"), send_file_call("pic.png", "f2")], "Both sent."]
    )


def _put_both(root: Path) -> None:
    (root / "report.txt").write_text("quarterly numbers\n")
    (root / "pic.png").write_bytes(tiny_png())


async def test_slack_document_and_picture_through_the_external_upload_flow(
    slack: FakeSlack, slack_gateway_config: Any
) -> None:
    provider = _both()
    async with Gateway(slack_gateway_config, provider=provider) as gw:
        await slack.wait_connected()
        _put_both(workspace(gw, SLACK_DM))
        await slack.socket_send("events_api", slack.event("dm_message", text="send both"))
        await until(lambda: "Both sent." in slack.texts("D0001"))
        await idle(gw)
    sent = {(u.channel, u.name): u.data for u in slack.uploads}
    assert sent == {
        ("D0001", "report.txt"): b"quarterly numbers\n",
        ("D0001", "pic.png"): tiny_png(),
    }
    steps = [c.method for c in slack.calls if c.method.startswith("files.")]
    assert steps == ["files.getUploadURLExternal", "files.completeUploadExternal"] * 2
    assert all(r.startswith("sent ") for r in tool_results(provider.requests[1]))


async def test_slack_upload_post_that_fails_is_retried_from_the_first_step(
    slack: FakeSlack, slack_gateway_config: Any
) -> None:
    slack.fail("upload", status=503, error="upstream unavailable")
    provider = ScriptedProvider([[send_file_call("report.txt")], "Sent."])
    async with Gateway(slack_gateway_config, provider=provider) as gw:
        gw.channels["slack"].retry_backoff_s = 0.01  # type: ignore[attr-defined]
        await slack.wait_connected()
        _put_both(workspace(gw, SLACK_DM))
        await slack.socket_send("events_api", slack.event("dm_message", text="send it"))
        await until(lambda: "Sent." in slack.texts("D0001"))
        await idle(gw)
    # the upload URL the failed POST used is not reused: a new one is asked for
    assert len(slack.method_calls("files.getUploadURLExternal")) == 2
    assert [(u.name, u.data) for u in slack.uploads] == [("report.txt", b"quarterly numbers\n")]


async def test_slack_refusal_of_an_upload_is_a_tool_error(
    slack: FakeSlack, slack_gateway_config: Any
) -> None:
    # an app installed without files:write
    slack.fail("files.getUploadURLExternal", status=200, error="missing_scope", times=5)
    provider = ScriptedProvider(
        [[send_file_call("report.txt")], lambda request: "I cannot send files here."]
    )
    async with Gateway(slack_gateway_config, provider=provider) as gw:
        await slack.wait_connected()
        _put_both(workspace(gw, SLACK_DM))
        await slack.socket_send("events_api", slack.event("dm_message", text="send it"))
        await until(lambda: bool(slack.texts("D0001")))
        await idle(gw)
    [result] = tool_results(provider.requests[1])
    assert result.startswith("error: report.txt was not delivered: the chat refused it")
    assert "missing_scope" in result
    assert len(slack.method_calls("files.getUploadURLExternal", status=None)) == 1
    assert slack.texts("D0001") == ["I cannot send files here."] and slack.uploads == []


async def test_discord_document_and_picture_as_attachments(
    discord_fake: FakeDiscord, discord_gateway_config: Callable[..., Any]
) -> None:
    provider = _both()
    dm_channel = discord_fake.dm_channel_id(DISCORD_ALICE)
    conversation = Conversation("discord", DISCORD_ALICE, ConversationKind.DM)
    async with Gateway(discord_gateway_config(), provider=provider) as gw:
        await discord_fake.until(lambda: discord_fake.connected)
        _put_both(workspace(gw, conversation))
        await discord_fake.send_message("send both", dm=True)
        await discord_fake.until(lambda: "Both sent." in discord_fake.texts_in(dm_channel), 10)
        await idle(gw)
    uploads = [
        c for c in discord_fake.calls_to("POST", f"/channels/{dm_channel}/messages") if c.files
    ]
    files = [f for call in uploads for f in call.files]
    assert [(name, data) for name, _mime, data in files] == [
        ("report.txt", b"quarterly numbers\n"),
        ("pic.png", tiny_png()),
    ]
    shown = [
        m["attachments"][0]["filename"]
        for m in discord_fake.messages.values()
        if m.get("attachments")
    ]
    assert shown == ["report.txt", "pic.png"]


async def test_discord_upload_that_times_out_is_retried(
    discord_fake: FakeDiscord, discord_gateway_config: Callable[..., Any]
) -> None:
    provider = ScriptedProvider([[send_file_call("pic.png")], "Sent."])
    dm_channel = discord_fake.dm_channel_id(DISCORD_ALICE)
    conversation = Conversation("discord", DISCORD_ALICE, ConversationKind.DM)
    async with Gateway(discord_gateway_config(), provider=provider) as gw:
        gw.channels["discord"].retry_backoff_s = 0.01  # type: ignore[attr-defined]
        await discord_fake.until(lambda: discord_fake.connected)
        _put_both(workspace(gw, conversation))
        # a timeout Discord answers (discord.py itself retries only 5xx, with long pauses)
        discord_fake.fail("POST", f"/channels/{dm_channel}/messages", 408, 0, "timeout")
        await discord_fake.send_message("send the picture", dm=True)
        await discord_fake.until(lambda: "Sent." in discord_fake.texts_in(dm_channel), 10)
        await idle(gw)
    attempts = [c for c in discord_fake.calls_to("POST", "/messages", status=None) if c.files]
    assert [c.status for c in attempts] == [408, 200]
    assert tool_results(provider.requests[1])[0].startswith("sent pic.png")


async def test_console_writes_the_file_to_its_outbox_and_prints_the_path(tmp_path: Path) -> None:
    out = io.StringIO()
    console = ConsoleChannel("console", stdin=io.StringIO(""), stdout=out, user="me",
                             files_dir=tmp_path / "outbox")  # fmt: skip
    first = await console.send_file(console.conversation, b"one", "report.txt", "text/plain")
    second = await console.send_file(
        console.conversation, tiny_png(), "report.txt", "text/plain", caption="again"
    )
    assert (tmp_path / "outbox" / "report.txt").read_bytes() == b"one"
    assert (tmp_path / "outbox" / "report (2).txt").read_bytes() == tiny_png()
    assert (first.message_id, second.message_id) == (
        str(tmp_path / "outbox" / "report.txt"),
        str(tmp_path / "outbox" / "report (2).txt"),
    )
    assert f"bot> [document: {tmp_path / 'outbox' / 'report.txt'}]\n" in out.getvalue()
    assert f"[document: {tmp_path / 'outbox' / 'report (2).txt'}] again\n" in out.getvalue()


async def test_console_send_file_through_a_turn(
    make_config: Callable[..., Any], tmp_path: Path
) -> None:
    out, typed = io.StringIO(), _Typed("send me the chart\n")
    console = ConsoleChannel(
        "console", stdin=typed, stdout=out, user="me",
        files_dir=tmp_path / "outbox", reply_timeout_s=20,
    )  # fmt: skip
    provider = ScriptedProvider([[send_file_call("chart.png")], "There it is."])
    config = make_config(memory={"enabled": False}, sandbox=SANDBOX)
    async with Gateway(config, provider=provider, channels={"console": console}) as gw:
        (workspace(gw, console.conversation) / "chart.png").write_bytes(tiny_png())
        typed.ready.set()  # the person types only now that the chart is there
        await until(console.closed.is_set, timeout=20)
    saved = tmp_path / "outbox" / "chart.png"
    assert saved.read_bytes() == tiny_png()
    assert f"bot> [photo: {saved}]\n" in out.getvalue()
    assert "bot> There it is." in out.getvalue()


async def test_a_channel_without_file_sending_refuses_clearly_without_retrying() -> None:
    class Counting(RecordingChannel):
        tries = 0

        async def _send_file(self, upload: FileUpload) -> SentRef:
            self.tries += 1
            return await super()._send_file(upload)

    channel = Counting("test", console=True)
    conversation = Conversation("test", "u1", ConversationKind.DM)
    with pytest.raises(DeliveryRefused, match="the recording channel cannot send files"):
        await channel.send_file(conversation, b"x", "a.txt", "text/plain")
    assert channel.tries == 1
    big = b"x" * (channel.max_upload_bytes + 1)
    with pytest.raises(
        DeliveryRefused, match=r"big\.bin is .* the recording channel takes at most"
    ):
        await channel.send_file(conversation, big, "big.bin", "text/plain")
    assert channel.tries == 1  # refused before the platform is asked
