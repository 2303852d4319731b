"""An adapter's failed HTTP call is told without the request it was: aiohttp's error for an
answer that is not HTTP keeps the request, whose headers carry the platform token."""

from __future__ import annotations

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from channels.discord_errors import classify
from channels.http_errors import describe_http_error

TOKEN = "MTA-fake-discord-bot-token.Gx7Yk2.abcdefghijklmnopqrstuvwxyz012345"


def _garbled_answer() -> aiohttp.ClientResponseError:
    url = URL("https://discord.test/api/v10/channels/1/messages")
    headers = CIMultiDictProxy(CIMultiDict({"Authorization": f"Bot {TOKEN}"}))
    request = aiohttp.RequestInfo(url, "POST", headers, url)
    return aiohttp.ClientResponseError(request, (), status=400, message="Invalid status line")


def test_a_garbled_answer_is_described_by_its_status_and_message_only() -> None:
    said = describe_http_error(_garbled_answer())
    assert said == "ClientResponseError: 400, Invalid status line"


def test_a_discord_send_that_got_a_garbled_answer_does_not_name_the_token() -> None:
    error = classify(_garbled_answer(), "send")
    assert TOKEN not in str(error) and "Authorization" not in str(error)
    assert "Invalid status line" in str(error)


def test_other_failures_keep_their_words() -> None:
    assert describe_http_error(TimeoutError()) == "TimeoutError"
    disconnected = aiohttp.ServerDisconnectedError()
    assert describe_http_error(disconnected).startswith("ServerDisconnectedError: ")
