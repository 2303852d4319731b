"""S4: a Telegram token is in every request URL, yet no log record, log file line or error a
person could see contains it, or its secret half, while the Bot API answers 200, then 500,
then refuses the connection."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ChannelError
from bot.messages import Attachment, Conversation, ConversationKind, OutboundMessage
from channels.telegram import create
from channels.telegram_doctor import doctor
from tests.channels.telegram.conftest import TOKEN_ENV, RecordingSink, channel_table, until
from tests.fakes.telegram import FakeTelegram

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawX"
SECRET_HALF = TOKEN.partition(":")[2]


async def test_s4_platform_tokens_not_in_logs_or_errors(
    make_config: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    caplog.set_level(logging.DEBUG)
    log_file = tmp_path / "decapod.log"
    file_handler = logging.FileHandler(log_file, encoding="utf-8")
    file_handler.setLevel(logging.DEBUG)
    file_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(file_handler)
    shown: list[str] = []  # every text a person or an operator could be shown
    fake = await FakeTelegram(token=TOKEN).start()
    dm = Conversation("tg", "42", ConversationKind.DM)
    try:
        config = make_config(channels={"tg": channel_table(fake, poll_timeout_s=1)})
        channel = create("tg", config.channels["tg"], config)
        assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
        assert logging.getLogger("httpcore").getEffectiveLevel() >= logging.WARNING
        await channel.start(RecordingSink())
        try:
            # 200: a normal exchange
            await channel.send(OutboundMessage(dm, "all fine"))
            shown += [str(check) for check in await doctor("tg", config.channels["tg"])]
            fake.push_private("hi")
            await until(lambda: len(channel.sink.messages) == 1)  # type: ignore[union-attr]

            # 500: every call fails
            fake.status_override = 500
            await _failing(channel.send(OutboundMessage(dm, "during the outage")), shown)
            doc = Attachment("document", "FILE1", "a.txt")
            await _failing(channel.fetch(doc, 1000), shown)
            await until(lambda: _logged(caplog, "getUpdates failed"), 10)

            # connection refused: the server is gone
            await fake.stop()
            await _failing(channel.send(OutboundMessage(dm, "while down")), shown)
            await _failing(channel.fetch(doc, 1000), shown)
            shown += [str(check) for check in await doctor("tg", config.channels["tg"])]
            refused = len([r for r in caplog.records if "getUpdates failed" in r.getMessage()])
            await until(lambda: _logged(caplog, "getUpdates failed", more_than=refused), 10)
            shown.append(str(channel.health()))
        finally:
            await channel.stop()
    finally:
        await fake.stop()
        logging.getLogger().removeHandler(file_handler)
        file_handler.close()

    assert shown and caplog.records
    formatter = logging.Formatter("%(message)s")
    for record in caplog.records:
        text = formatter.format(record)  # the message and any traceback
        assert SECRET_HALF not in text, f"token in a {record.levelname} record of {record.name}"
    for text in shown:
        assert SECRET_HALF not in text
    written = log_file.read_text(encoding="utf-8")
    assert "getUpdates failed" in written and SECRET_HALF not in written
    assert TOKEN.partition(":")[0] + ":" not in written


async def _failing(call: Any, shown: list[str]) -> None:
    with pytest.raises(ChannelError) as caught:
        await call
    shown += [str(caught.value), caught.value.user_message, repr(caught.value)]


def _logged(caplog: pytest.LogCaptureFixture, needle: str, more_than: int = 0) -> bool:
    return len([r for r in caplog.records if needle in r.getMessage()]) > more_than
