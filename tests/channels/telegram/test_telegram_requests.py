"""The adapter's Bot API requests over aiohttp (channels/telegram_request.py) keep what httpx
gave: a request that never left is told apart from one whose answer was lost (only the first
is sent again), a pool timeout says nothing was sent, a stalled upload ends, proxies come from
the environment, no error holds the token, and every session is closed on stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot
from telegram.error import NetworkError, TimedOut

from bot.errors import ChannelError
from bot.messages import Attachment, Conversation, ConversationKind, OutboundMessage
from channels.telegram import TelegramChannel
from channels.telegram_polling import RawUpdatesBot
from channels.telegram_request import AiohttpRequest, NotSent, PoolTimedOut
from tests.channels.telegram.conftest import until
from tests.fakes.forward_proxy import environment_proxy, thread_hops
from tests.fakes.telegram import TOKEN, FakeTelegram

StartChannel = Callable[..., Awaitable[TelegramChannel]]
DM = Conversation("tg", "42", ConversationKind.DM)
SECRET_HALF = TOKEN.partition(":")[2]


@contextlib.asynccontextmanager
async def direct_bot(base_url: str, **timeouts: Any) -> AsyncIterator[Bot]:
    """A PTB bot on the request class alone, with short timeouts."""
    async with Bot(TOKEN, base_url=base_url, request=AiohttpRequest(2, **timeouts)) as bot:
        yield bot


async def test_a_send_refused_at_connect_is_sent_again_and_arrives_once(
    fake: FakeTelegram, start_channel: StartChannel
) -> None:
    channel = await start_channel()
    channel.max_transient_attempts = 1  # the shared send path's own retries are not tested here
    await fake.stop()
    await asyncio.sleep(0.05)  # the pool's idle connections see the fake hang up
    back = asyncio.get_running_loop().call_later(0.2, lambda: asyncio.ensure_future(fake.start()))
    try:
        await channel.send(OutboundMessage(DM, "after the blip"))
    finally:
        back.cancel()
    assert [c.params["text"] for c in fake.calls_of("sendMessage")] == ["after the blip"]


async def test_a_send_whose_answer_is_lost_is_not_sent_again(
    fake: FakeTelegram, start_channel: StartChannel
) -> None:
    channel = await start_channel()
    channel.max_transient_attempts = 1  # the shared send path's own retries are not tested here
    fake.hang_up.add("sendMessage")
    with pytest.raises(ChannelError):
        await channel.send(OutboundMessage(DM, "maybe delivered"))
    assert len(fake.calls_of("sendMessage")) == 1, "Telegram may have delivered it"


async def test_a_read_timeout_is_an_answer_lost_not_a_request_unsent(fake: FakeTelegram) -> None:
    fake.held["sendMessage"] = asyncio.Event()
    async with direct_bot(fake.base_url, read_timeout=0.3) as bot:
        with pytest.raises(TimedOut) as caught:
            await bot.send_message(42, "slow")
    fake.held["sendMessage"].set()
    assert not isinstance(caught.value, NotSent)
    assert len(fake.calls_of("sendMessage")) == 1


async def test_a_connect_timeout_says_nothing_was_sent_and_names_no_token() -> None:
    # a listener that never accepts, its backlog full: the next connect hangs unanswered
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener:
        port = listener.getsockname()[1]
        queued = [socket.socket() for _ in range(3)]
        for sock in queued:
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", port))
        try:
            bot = Bot(TOKEN, base_url=f"http://127.0.0.1:{port}/bot", request=AiohttpRequest(1))
            request = bot.request
            await request.initialize()
            try:
                with pytest.raises(TimedOut) as caught:
                    await bot.get_me(connect_timeout=0.3)
            finally:
                await request.shutdown()
        finally:
            for sock in queued:
                sock.close()
    assert isinstance(caught.value, NotSent)
    assert "ConnectionTimeoutError" in str(caught.value)
    assert SECRET_HALF not in str(caught.value) and SECRET_HALF not in repr(caught.value)


async def test_a_pool_timeout_says_nothing_was_sent(fake: FakeTelegram) -> None:
    fake.held["sendMessage"] = gate = asyncio.Event()
    request = AiohttpRequest(1, pool_timeout=0.2)
    async with Bot(TOKEN, base_url=fake.base_url, request=request) as bot:
        first = asyncio.create_task(bot.send_message(42, "first"))
        await until(lambda: fake.calls_of("sendMessage"))
        with pytest.raises(TimedOut) as caught:
            await bot.send_message(42, "second")
        gate.set()
        await first
    assert isinstance(caught.value, PoolTimedOut) and isinstance(caught.value, NotSent)
    assert "not* sent" in str(caught.value)
    assert [c.params["text"] for c in fake.calls_of("sendMessage")] == ["first"]


async def test_a_request_waiting_for_a_connection_at_shutdown_says_it_was_not_sent(
    fake: FakeTelegram,
) -> None:
    fake.held["sendMessage"] = gate = asyncio.Event()
    request = AiohttpRequest(1, pool_timeout=30.0)
    async with Bot(TOKEN, base_url=fake.base_url, request=request) as bot:
        first = asyncio.create_task(bot.send_message(42, "first"))
        await until(lambda: fake.calls_of("sendMessage"))
        second = asyncio.create_task(bot.send_message(42, "second"))
        await until(lambda: request._free._waiters)  # waits for the pool's one connection
        await request.shutdown()  # the channel stops meanwhile
        gate.set()
        outcomes = await asyncio.gather(first, second, return_exceptions=True)
    waited = outcomes[1]
    assert isinstance(waited, NetworkError), waited
    assert "shut down" in str(waited) and "not sent" in str(waited)
    assert "Unknown error" not in str(waited), "an error of the request class's own"
    assert [c.params["text"] for c in fake.calls_of("sendMessage")] == ["first"]


async def test_requests_cancelled_mid_flight_give_their_connections_back(
    fake: FakeTelegram,
) -> None:
    fake.held["sendChatAction"] = asyncio.Event()  # never answered
    request = AiohttpRequest(2, pool_timeout=0.5)
    async with Bot(TOKEN, base_url=fake.base_url, request=request) as bot:
        for round_ in range(1, 4):  # more than the pool holds, one pool-full after another
            typing = [asyncio.create_task(bot.send_chat_action(42, "typing")) for _ in range(2)]
            await until(lambda n=2 * round_: len(fake.calls_of("sendChatAction")) == n)
            for task in typing:
                task.cancel()
            await asyncio.gather(*typing, return_exceptions=True)
        assert (await bot.get_me()).username == fake.username
    fake.held["sendChatAction"].set()


async def test_an_upload_telegram_stops_reading_ends_at_the_write_timeout(
    fake: FakeTelegram,
) -> None:
    fake.unread["sendDocument"] = None  # never read, until the fake stops
    async with direct_bot(fake.base_url, media_write_timeout=0.5, read_timeout=1.0) as bot:
        # larger than what the sockets' buffers take in; the bound is generous on purpose:
        # without a write timeout it would wait for good
        async with asyncio.timeout(30):
            with pytest.raises(TimedOut) as caught:
                await bot.send_document(42, b"x" * 16_000_000, filename="big.bin")
    assert not isinstance(caught.value, NotSent), "part of it went out"


async def test_an_upload_that_is_read_goes_through_whole_with_its_name(
    fake: FakeTelegram,
) -> None:
    content = bytes(range(256)) * 2048  # 512 KiB: several pieces
    name = "Résumé (draft) 100%.pdf"  # as written, not percent-encoded: Telegram shows it
    async with direct_bot(fake.base_url, media_write_timeout=5.0) as bot:
        await bot.send_document(42, content, filename=name, caption="whole ✓")
    [upload] = fake.uploads
    assert (upload.data, upload.name, upload.caption) == (content, name, "whole ✓")


async def test_failing_requests_name_no_token_in_errors_or_logs(
    fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[NetworkError] = []
    fake.hang_up.add("sendMessage")
    fake.unread["sendDocument"] = 0.2  # hangs up in the middle of the upload
    async with direct_bot(fake.base_url, read_timeout=0.5, media_write_timeout=2.0) as bot:
        for call in (
            bot.send_message(42, "lost"),
            bot.send_document(42, b"x" * 16_000_000, filename="cut.bin"),
        ):
            with pytest.raises(NetworkError) as caught:
                await call
            errors.append(caught.value)
        await fake.stop()
        with pytest.raises(NetworkError) as caught:
            await bot.get_me()
        errors.append(caught.value)
    assert isinstance(errors[-1], NotSent)
    texts = [text for e in errors for text in (str(e), repr(e))]
    # PTB's own DEBUG lines name the URL; the adapter holds its logger at WARNING (S4)
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    texts += [logging.Formatter("%(message)s").format(r) for r in records]
    assert all(SECRET_HALF not in text for text in texts)


async def test_requests_and_downloads_go_through_a_proxy_from_the_environment(
    fake: FakeTelegram, start_channel: StartChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with environment_proxy(monkeypatch) as proxy:
        channel = await start_channel()
        await channel.send(OutboundMessage(DM, "via the proxy"))
        doc = Attachment("document", fake.add_file(b"%PDF-1.4"), "a.pdf")
        assert await channel.fetch(doc, 1000) == b"%PDF-1.4"
    base = f"http://127.0.0.1:{fake.port}"
    assert f"{base}/bot{TOKEN}/getMe" in proxy.targets
    assert any(t.startswith(f"{base}/file/bot{TOKEN}/") for t in proxy.targets)
    assert fake.calls_of("sendMessage")


async def test_sends_and_edits_through_the_proxy_take_no_thread_hop(
    fake: FakeTelegram, start_channel: StartChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy is looked up once for Telegram's address (at getMe), not in two worker-thread
    round trips for every send and every streamed edit (aiohttp's trust_env)."""
    async with environment_proxy(monkeypatch) as proxy:
        channel = await start_channel()
        with thread_hops(monkeypatch) as hops:
            for n in range(3):
                ref = await channel.send(OutboundMessage(DM, f"sent {n}"))
                await channel.bot.edit_message_text(
                    f"sent {n}, edited", chat_id=42, message_id=int(ref.message_id)
                )
    base = f"http://127.0.0.1:{fake.port}/bot{TOKEN}"
    assert proxy.targets.count(f"{base}/sendMessage") == 3
    assert proxy.targets.count(f"{base}/editMessageText") == 3
    assert hops == [], hops


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("HTTPS_PROXY", "proxy.example:3128", "has no scheme"),
        ("https_proxy", "https://user:s3cret@proxy.example:3128", "is a https:// proxy"),
        ("HTTP_PROXY", "socks5://user:s3cret@127.0.0.1:1080", "is a socks5:// proxy"),
        ("http_proxy", "http://[::1:3128", "is not a valid URL"),
        ("HTTPS_PROXY", "http://user:s3cret@proxy.example:99999", "is not a valid URL"),
        # aiohttp parses these at every lookup, for any address: one it cannot parse would
        # fail every request
        ("WS_PROXY", "http://user:s3cret@proxy.example:99999", "is not a valid URL"),
        ("wss_proxy", "http://[::1:3128", "is not a valid URL"),
    ],
)
async def test_a_proxy_variable_the_requests_cannot_use_is_a_start_up_error_naming_it(
    make_config: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
    problem: str,
) -> None:
    """aiohttp ignores an https:// proxy from the environment (the requests would go around
    it) and fails each request through one without a scheme, naming neither variable."""
    from bot.errors import ConfigError
    from channels.telegram import create
    from channels.telegram_doctor import doctor
    from tests.channels.telegram.conftest import channel_table

    for other in (
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "WS_PROXY",
        "wss_proxy",
    ):
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, value)
    fake_table = channel_table(FakeTelegram())
    config = make_config(channels={"tg": fake_table})
    with pytest.raises(ConfigError, match=f"environment variable {name} {problem}") as caught:
        create("tg", config.channels["tg"], config)
    assert "s3cret" not in str(caught.value), "a proxy's password is not shown"
    [(_, ok, detail)] = await doctor("tg", config.channels["tg"])  # `decapod doctor`
    assert not ok and detail == str(caught.value)


async def test_a_download_being_read_ends_when_the_channel_stops(
    fake: FakeTelegram, start_channel: StartChannel
) -> None:
    """Closing the download session does not end a response being read: a file that
    trickles kept the read going past the stop, until its read timeout (30 s) or for good."""
    import channels.telegram_outbound as outbound

    channel = await start_channel()
    fake.stall_files = True
    doc = Attachment("document", fake.add_file(b"x" * 100_000), "big.bin")
    reading = asyncio.create_task(channel.fetch(doc, 1_000_000))
    await until(lambda: channel._reading)  # half of the file came, the rest does not
    bound = outbound._DOWNLOAD_TIMEOUT.sock_read / 3  # generous: it ends at once
    async with asyncio.timeout(bound):
        await channel.stop()
        with pytest.raises(ChannelError, match="telegram channel tg stopped"):
            await reading


async def test_a_download_that_stops_coming_ends_at_its_read_timeout_without_the_token(
    fake: FakeTelegram, start_channel: StartChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aiohttp

    import channels.telegram_outbound as outbound

    short = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=0.5)
    monkeypatch.setattr(outbound, "_DOWNLOAD_TIMEOUT", short)
    channel = await start_channel()
    fake.stall_files = True
    doc = Attachment("document", fake.add_file(b"x" * 100_000), "big.bin")
    async with asyncio.timeout(30):  # generous: without a read timeout it waits for good
        with pytest.raises(ChannelError, match=r"downloading big\.bin failed") as caught:
            await channel.fetch(doc, 1_000_000)
    assert SECRET_HALF not in str(caught.value) and SECRET_HALF not in repr(caught.value)


async def test_a_download_whose_channel_stopped_meanwhile_opens_no_session(
    fake: FakeTelegram, start_channel: StartChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = await start_channel()
    asked = RawUpdatesBot.get_file

    async def get_file_then_stop(bot: RawUpdatesBot, file_id: str) -> Any:
        file = await asked(bot, file_id)
        await channel.stop()  # the gateway stops while Telegram answers getFile
        return file

    monkeypatch.setattr(RawUpdatesBot, "get_file", get_file_then_stop)
    doc = Attachment("document", fake.add_file(b"data"), "a.txt")
    with pytest.raises(ChannelError, match="not started"):
        await channel.fetch(doc, 1000)
    assert channel._downloads is None, "a session opened after the stop would never close"


async def test_a_download_while_the_channel_stops_is_a_channel_error(
    fake: FakeTelegram, start_channel: StartChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aiohttp

    channel = await start_channel()
    doc = Attachment("document", fake.add_file(b"data"), "a.txt")
    assert await channel.fetch(doc, 1000) == b"data"
    downloads = channel._downloads
    assert downloads is not None
    closing, close = asyncio.Event(), aiohttp.ClientSession.close

    async def slow_close(session: aiohttp.ClientSession) -> None:
        if session is downloads:  # closed at once, as aiohttp does first; done later
            await session.connector.close()  # type: ignore[union-attr]
            await closing.wait()
        await close(session)

    monkeypatch.setattr(aiohttp.ClientSession, "close", slow_close)
    stopping = asyncio.create_task(channel.stop())
    await until(lambda: downloads.closed)
    try:
        with pytest.raises(ChannelError, match="not started"):
            await channel.fetch(doc, 1000)  # Telegram still answers getFile meanwhile
    finally:
        closing.set()
        await stopping


async def test_the_sessions_verify_tls_with_aiohttps_one_context_and_keep_their_pool_sizes(
    fake: FakeTelegram, start_channel: StartChannel
) -> None:
    channel = await start_channel(poll_timeout_s=25)
    assert channel._downloads is None, "made with the first download"
    doc = Attachment("document", fake.add_file(b"data"), "a.txt")
    await channel.fetch(doc, 1000)
    requests = [channel.bot.request, channel.bot._request[0]]
    sessions = [r._session for r in requests if isinstance(r, AiohttpRequest)]
    sessions.append(channel._downloads)
    assert len(sessions) == 3 and len({id(s) for s in sessions}) == 3
    connectors = [s.connector for s in sessions if s is not None]
    # True: aiohttp's verifying context, built once at its import (no CA bundle loaded again)
    assert all(c is not None and c._ssl is True for c in connectors)
    limits = {r._pool_size for r in requests if isinstance(r, AiohttpRequest)}
    assert limits == {32, 2}
    polling = channel.bot._request[0]
    assert polling.read_timeout == 25 + 10, "a long poll's answer takes the poll's timeout"


async def test_a_start_and_stop_twice_closes_every_session(
    fake: FakeTelegram, make_config: Callable[..., Any]
) -> None:
    from channels.telegram import create
    from tests.channels.telegram.conftest import RecordingSink, channel_table

    config = make_config(channels={"tg": channel_table(fake)})
    channel = create("tg", config.channels["tg"], config)
    doc = Attachment("document", fake.add_file(b"data"), "a.txt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for text in ("first", "second"):
            await channel.start(RecordingSink())
            await channel.send(OutboundMessage(DM, text))
            assert await channel.fetch(doc, 1000) == b"data"
            sessions = [r._session for r in (channel.bot.request, channel.bot._request[0])]
            sessions.append(channel._downloads)
            await channel.stop()
            assert all(s is not None and s.closed for s in sessions)
            assert channel._downloads is None
        del sessions
        gc.collect()
    assert not [w for w in caught if "nclosed" in str(w.message)]
    assert fake.texts(42) == ["first", "second"]


def test_a_telegram_start_builds_no_httpx_transport(tmp_path: Path) -> None:
    """httpx itself comes with python-telegram-bot; its transport (httpcore, h11, anyio)
    would come with the first httpx client."""
    code = (
        "import asyncio, os, sys\n"
        "from pathlib import Path\n"
        "from bot.config import parse_config\n"
        "from bot.messages import Conversation, ConversationKind, OutboundMessage\n"
        "from channels.telegram import create\n"
        "from tests.channels.telegram.conftest import RecordingSink, channel_table\n"
        "from tests.fakes.telegram import TOKEN, FakeTelegram\n"
        "async def main():\n"
        "    os.environ['DECAPOD_TEST_TELEGRAM_TOKEN'] = TOKEN\n"
        "    async with FakeTelegram() as fake:\n"
        "        data = {'http': {'enabled': False}, 'logging': {'file': ''},\n"
        "                'channels': {'tg': channel_table(fake, poll_timeout_s=1)}}\n"
        "        config = parse_config(data, Path(sys.argv[1]))\n"
        "        channel = create('tg', config.channels['tg'], config)\n"
        "        await channel.start(RecordingSink())\n"
        "        dm = Conversation('tg', '42', ConversationKind.DM)\n"
        "        await channel.send(OutboundMessage(dm, 'sent'))\n"
        "        await channel.stop()\n"
        "asyncio.run(main())\n"
        "loaded = [m for m in ('httpcore', 'h11', 'anyio') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "home")], check=True)


async def test_a_file_download_does_not_follow_a_redirect(
    fake: FakeTelegram, start_channel: StartChannel
) -> None:
    channel = await start_channel()
    elsewhere = fake.add_file(b"from elsewhere")
    fake.redirect_files = f"{fake.file_base_url}{TOKEN}/documents/{elsewhere}.bin"
    doc = Attachment("document", fake.add_file(b"data"), "a.txt")
    with pytest.raises(ChannelError, match="HTTP 302"):
        await channel.fetch(doc, 1000)
