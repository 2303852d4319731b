"""Slack's Web API, response_urls and file downloads over one aiohttp session, with Slack's
errors mapped to ours (`classified`): a 429 (or `ratelimited`) becomes RateLimited carrying
Retry-After, a refusal a retry cannot change DeliveryRefused (ConversationGone when the bot
can no longer reach the conversation), a message that cannot be updated EditRejected,
anything else a ChannelError (transient). Also the token checks of `decapod doctor`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.channel_configs.slack import SlackChannelConfig
from bot.errors import (
    ChannelError,
    ConfigError,
    ConversationGone,
    DeliveryRefused,
    EditRejected,
    RateLimited,
)
from bot.messages import Conversation, size_text
from bot.proxy_env import ProxyLookup, check_proxy_env
from channels.http_errors import describe_http_error

log = logging.getLogger("decapod.channels.slack")

Check = tuple[str, bool, str]

# Slack's error codes (chat.postMessage, chat.update) that a retry cannot change
_GONE = frozenset({"channel_not_found", "not_in_channel", "is_archived", "is_inactive"})
_REFUSED = frozenset(
    {
        "account_inactive",
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "access_denied",
        "ekm_access_denied",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "team_access_not_granted",
        "not_allowed_token_type",
        "unknown_method",
        "method_deprecated",
        "accesslimited",
    }
)
#: setStatus codes that say the method is not there for this app or workspace: only these
#: turn the status off for good (a timeout, a 5xx, a refusal of one thread do not)
_STATUS_UNAVAILABLE = frozenset(
    {
        "missing_scope",
        "unknown_method",
        "method_deprecated",
        "not_allowed_token_type",
        "accesslimited",
        "no_permission",
        "team_access_not_granted",
    }
)
# more codes a file upload gets that a retry cannot change
_FILE_REFUSED = frozenset(
    {"file_uploads_disabled", "file_uploads_except_images_disabled", "invalid_arguments"}
)
_EDIT_REJECTED = frozenset(
    {"message_not_found", "cant_update_message", "edit_window_closed", "streaming_state_conflict"}
)


class SlackApi:
    def __init__(self, token: str, api_url: str, pause: Callable[[float], None]) -> None:
        self.api_url = api_url
        self._token = token
        # not trust_env, which looks up the proxy and ~/.netrc in two thread hops per request
        # (every post and edit): slack_sdk gives its API calls the proxy it read from the
        # environment at its start, and the requests made here (downloads, response_url) take
        # the one `_proxies` looks up once per address
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30), trust_env=False
        )
        self._proxies = ProxyLookup()
        self.client = AsyncWebClient(
            token=token,
            base_url=api_url,
            session=self.session,
            retry_handlers=[AsyncConnectionErrorRetryHandler(), _PausingRetry(pause)],
        )

    async def close(self) -> None:
        await self.session.close()

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        body = {k: v for k, v in params.items() if v is not None}
        try:
            response = await self.client.api_call(method, json=body)
        except SlackApiError as exc:
            raise classified(method, exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChannelError(f"slack {method} failed: {describe_http_error(exc)}") from None
        data = response.data
        return data if isinstance(data, dict) else {}

    async def upload(
        self, channel: str, thread_ts: str | None, data: bytes, name: str, comment: str
    ) -> str:
        """Post a file through Slack's external upload flow: files.getUploadURLExternal, the
        POST of the bytes to the URL it gives, files.completeUploadExternal (the three steps
        `files_upload_v2` takes). Returns the file's id. A failed step fails the whole
        upload, and a retry starts again at the first: an upload URL is good for one POST."""
        try:
            response = await self.client.files_upload_v2(
                channel=channel,
                thread_ts=thread_ts,
                file=data,
                filename=name,
                title=name,
                initial_comment=comment or None,
            )
        except SlackApiError as exc:
            raise classified("file upload", exc, _FILE_REFUSED) from None
        except SlackRequestError as exc:  # the POST of the bytes answered an error status
            raise ChannelError(f"slack file upload failed: {exc}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChannelError(f"slack file upload failed: {describe_http_error(exc)}") from None
        file = response.get("file")
        return str(file.get("id", "")) if isinstance(file, dict) else ""

    async def respond(self, url: str, payload: dict[str, Any]) -> None:
        """POST to a slash command's response_url (it needs no token)."""
        proxy = await self._proxies.for_url(url)
        try:
            # no redirect: it would keep the first address's proxy, and Slack answers here
            async with self.session.post(
                url, json=payload, proxy=proxy, allow_redirects=False
            ) as resp:
                if resp.status == 429:
                    raise RateLimited(retry_after(resp.headers))
                if resp.status >= 400:
                    raise ChannelError(f"slack response_url answered HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChannelError(f"slack response_url failed: {describe_http_error(exc)}") from None

    async def download(self, url: str, limit: int, name: str) -> bytes:
        """A file's bytes with the bot token, from Slack only: the token never goes elsewhere,
        and redirects are not followed."""
        if not self.is_slack_url(url):
            raise ChannelError("not a Slack file URL")
        too_large = ChannelError(f"{name} is larger than {size_text(limit)}")
        headers = {"Authorization": f"Bearer {self._token}"}
        proxy = await self._proxies.for_url(url)
        try:
            async with self.session.get(
                url, headers=headers, allow_redirects=False, proxy=proxy
            ) as resp:
                if resp.status != 200:
                    raise ChannelError(f"slack file download answered HTTP {resp.status}")
                if resp.content_type == "text/html":
                    raise ChannelError("Slack sent a web page, not the file: add files:read")
                data = bytearray()
                async for block in resp.content.iter_chunked(65536):
                    data += block
                    if len(data) > limit:
                        raise too_large
                return bytes(data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ChannelError(f"slack file download failed: {describe_http_error(exc)}") from None

    def is_slack_url(self, url: str) -> bool:
        parts, api = urlsplit(url), urlsplit(self.api_url)
        if (parts.scheme, parts.netloc) == (api.scheme, api.netloc):
            return True
        host = (parts.hostname or "").lower()
        return parts.scheme == "https" and (host == "slack.com" or host.endswith(".slack.com"))


class WorkingSignal:
    """What shows that the model is working: the assistant thread status where Slack offers
    it (apps with assistant:write), else a reaction on the person's message. Both stay until
    removed, so unlike a typing indicator they are set once per answer. Only an answer that
    says the method is not there (`_STATUS_UNAVAILABLE`) gives the status up for good."""

    def __init__(self, api: Callable[[], SlackApi], reaction: str) -> None:
        self._api = api
        self.reaction = reaction
        self.status_works: bool | None = None  # unknown until tried once

    async def show(self, conversation: Conversation, ts: str | None) -> Shown | None:
        chat, thread = conversation.chat_id, conversation.thread_id
        if (
            thread
            and self.status_works is not False
            and await self._set_status(chat, thread, "is thinking…")
        ):
            return Shown("status", chat, thread)
        if self.reaction and ts:
            with contextlib.suppress(ChannelError):
                await self._api().call(
                    "reactions.add", channel=conversation.chat_id, timestamp=ts, name=self.reaction
                )
                return Shown("reaction", conversation.chat_id, ts)
        return None

    async def hide(self, shown: Shown | None) -> None:
        if shown is None:
            return
        if shown.kind == "status":
            await self._set_status(shown.channel, shown.ts, "")
            return
        with contextlib.suppress(ChannelError):
            await self._api().call(
                "reactions.remove", channel=shown.channel, timestamp=shown.ts, name=self.reaction
            )

    async def _set_status(self, channel: str, thread_ts: str, status: str) -> bool:
        try:
            await self._api().call(
                "assistant.threads.setStatus",
                channel_id=channel,
                thread_ts=thread_ts,
                status=status,
            )
        except DeliveryRefused as exc:
            if exc.reason in _STATUS_UNAVAILABLE and self.status_works is not False:
                log.info("slack: no assistant thread status (%s); using reactions", exc)
                self.status_works = False
            return False
        except ChannelError as exc:
            # this message shows a reaction; the next one tries the status again
            log.info("slack: the assistant thread status failed (%s)", exc)
            return False
        self.status_works = True
        return True


@dataclass(frozen=True, slots=True)
class Shown:
    kind: str  # status | reaction
    channel: str
    ts: str


class _PausingRetry(AsyncRateLimitErrorRetryHandler):
    """The SDK's retry after a 429 (it sleeps Retry-After), which also pauses every other send
    of the channel for that long: Slack throttles the app, not one request."""

    def __init__(self, pause: Callable[[float], None]) -> None:
        super().__init__(max_retry_count=1)
        self._pause = pause

    async def prepare_for_next_attempt_async(self, **kwargs: Any) -> None:
        response = kwargs.get("response")
        if response is not None:
            self._pause(retry_after(response.headers))
        await super().prepare_for_next_attempt_async(**kwargs)


def classified(
    method: str, exc: SlackApiError, refused: frozenset[str] = frozenset()
) -> ChannelError:
    """A failed Web API call as one of Decapod's errors; `refused`: more codes of this call
    that a retry cannot change."""
    response = exc.response
    code = str(response.get("error") or f"HTTP {response.status_code}")
    detail = f"slack {method} failed: {code}"
    if response.status_code == 429 or code in ("ratelimited", "rate_limited"):
        return RateLimited(retry_after(response.headers))
    if code in _GONE:
        return ConversationGone(code, detail)
    if code in _REFUSED or code in refused:
        return DeliveryRefused(code, detail)
    if code in _EDIT_REJECTED:
        return EditRejected(detail)
    return ChannelError(detail)


def retry_after(headers: Mapping[str, Any]) -> float:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list) and value else value
            with contextlib.suppress(TypeError, ValueError):
                return max(float(raw), 0.0)
    return 1.0


def signed(verifier: SignatureVerifier, body: bytes, headers: Mapping[str, str]) -> bool:
    """Slack's v0 signature over the raw body, with a timestamp within five minutes."""
    try:
        return verifier.is_valid(
            body=body,
            timestamp=headers.get("X-Slack-Request-Timestamp"),
            signature=headers.get("X-Slack-Signature"),
        )
    except ValueError:  # a timestamp that is not a number
        return False


async def doctor(name: str, settings: SlackChannelConfig) -> list[Check]:
    """The bot token by auth.test; the app token by apps.connections.open (Socket Mode must
    be on for it to pass); the signing secret by presence (only Slack can test it)."""
    what = f"slack {name}"
    token = os.environ.get(settings.bot_token_env, "")
    if not token:
        return [(what, False, f"environment variable {settings.bot_token_env} is not set")]
    try:
        check_proxy_env()
    except ConfigError as exc:
        return [(what, False, str(exc))]
    checks: list[Check] = []
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=10), trust_env=True
    ) as session:
        client = AsyncWebClient(token=token, base_url=settings.api_url, session=session)
        try:
            auth = await client.auth_test()
            checks.append((what, True, f"bot @{auth.get('user')} in {auth.get('team')}"))
        except SlackApiError as exc:
            detail = f"auth.test: {exc.response.get('error')} (check {settings.bot_token_env})"
            checks.append((what, False, detail))
        except (aiohttp.ClientError, TimeoutError) as exc:
            checks.append(
                (what, False, f"{settings.api_url} unreachable: {describe_http_error(exc)}")
            )
        if settings.mode == "socket":
            checks.append(await _check_app_token(client, settings))
    if settings.mode == "http":
        present = bool(os.environ.get(settings.signing_secret_env))
        detail = "signing secret set" if present else f"{settings.signing_secret_env} is not set"
        checks.append((f"{what} signing", present, detail))
    return checks


async def _check_app_token(client: AsyncWebClient, settings: SlackChannelConfig) -> Check:
    what = "slack app token"
    app_token = os.environ.get(settings.app_token_env, "")
    if not app_token.startswith("xapp-"):
        return (what, False, f"{settings.app_token_env} must hold an xapp-... app-level token")
    try:
        await client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = exc.response.get("error")
        return (what, False, f"apps.connections.open: {error} (is Socket Mode enabled?)")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return (what, False, f"unreachable: {describe_http_error(exc)}")
    return (what, True, "Socket Mode connection allowed")
