"""Discord setup tools: `decapod discord invite-url` and the doctor's token check.

Imports nothing heavy (no discord.py), so the command line stays fast.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin

if TYPE_CHECKING:
    from bot.channel_configs.discord import DiscordChannelConfig

Check = tuple[str, bool, str]

#: what the bot needs in a server, and nothing more (Discord permission bits)
PERMISSIONS: dict[str, int] = {
    "add_reactions": 1 << 6,
    "view_channel": 1 << 10,
    "send_messages": 1 << 11,
    "attach_files": 1 << 15,
    "read_message_history": 1 << 16,
    "use_application_commands": 1 << 31,
    "send_messages_in_threads": 1 << 38,
}
SCOPES = ("bot", "applications.commands")
AUTHORIZE_URL = "https://discord.com/oauth2/authorize"
#: application flags: the Message Content intent is enabled (full or for unverified bots)
_MESSAGE_CONTENT_FLAGS = (1 << 18) | (1 << 19)


def permissions_value() -> int:
    return sum(PERMISSIONS.values())


def invite_url(client_id: str) -> str:
    query = {
        "client_id": client_id,
        "scope": " ".join(SCOPES),
        "permissions": str(permissions_value()),
    }
    return f"{AUTHORIZE_URL}?{urlencode(query)}"


def client_id_from_token(token: str) -> str | None:
    """A bot token starts with its user id in base64, which is also the application id."""
    head = token.strip().split(".", 1)[0]
    try:
        decoded = base64.b64decode(head + "=" * (-len(head) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded if decoded.isdigit() else None


def add_subparsers(sub: Any) -> None:
    """Add `decapod discord ...` to the CLI's subcommands."""
    parser = sub.add_parser("discord", help="Discord setup tools")
    actions = parser.add_subparsers(dest="discord_command", metavar="ACTION", required=True)
    invite = actions.add_parser(
        "invite-url", help="print the link that adds the bot to a server, with its permissions"
    )
    invite.add_argument("--channel", help="name of the discord channel in config (default: first)")
    invite.add_argument("--client-id", help="the application id (default: read from the bot token)")


def run(args: argparse.Namespace, config: Any) -> int:
    client_id = args.client_id
    if not client_id:
        channel = _discord_channel(config, args.channel)
        if channel is None:
            print("no discord channel in the config; pass --client-id (the application id)")
            return 2
        name, cfg = channel
        token = os.environ.get(cfg.token_env, "")
        client_id = client_id_from_token(token) if token else None
        if client_id is None:
            where = "is not set" if not token else "does not look like a bot token"
            print(f"${cfg.token_env} {where} (channel {name}); pass --client-id instead")
            return 2
    if not client_id.isdigit():
        print(f"{client_id!r} is not an application id (digits only)")
        return 2
    print(invite_url(client_id))
    print(
        "Scopes: bot, applications.commands. Permissions: "
        + ", ".join(name.replace("_", " ") for name in PERMISSIONS)
        + f" ({permissions_value()})."
    )
    return 0


def _discord_channel(config: Any, wanted: str | None) -> tuple[str, DiscordChannelConfig] | None:
    for name, cfg in config.channels.items():
        if cfg.type == "discord" and wanted in (None, name):
            return name, cfg
    return None


async def doctor(name: str, channel_config: DiscordChannelConfig) -> list[Check]:
    """The token works (GET /users/@me), and (GET /oauth2/applications/@me) the Message
    Content intent is enabled when the config asks for it, or in interactions mode the
    configured public key is the application's."""
    import aiohttp

    from bot.errors import ConfigError
    from bot.proxy_env import ProxyLookup, check_proxy_env

    what = f"discord {name}"
    token = os.environ.get(channel_config.token_env, "")
    if not token:
        return [(what, False, f"${channel_config.token_env} is not set (the bot token)")]
    base = channel_config.api_base_url
    headers = {"Authorization": f"Bot {token}"}
    try:
        check_proxy_env()
    except ConfigError as exc:
        return [(what, False, str(exc))]
    try:
        # the proxy of the environment, and no redirect, as the adapter's own requests
        proxy = await ProxyLookup().for_url(base)
        async with aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=10), trust_env=False
        ) as http:
            async with http.get(f"{base}/users/@me", proxy=proxy, allow_redirects=False) as resp:
                if resp.status == 401:
                    return [(what, False, f"the token in ${channel_config.token_env} is rejected")]
                if resp.status != 200:
                    location = resp.headers.get("Location")
                    # relative or not: where the request would have gone, whole
                    moved = f" (it leads to {urljoin(str(resp.url), location)})" if location else ""
                    return [(what, False, f"GET /users/@me answered {resp.status}{moved}")]
                me = await resp.json(content_type=None)
            async with http.get(
                f"{base}/oauth2/applications/@me", proxy=proxy, allow_redirects=False
            ) as resp:
                app = await resp.json(content_type=None) if resp.status == 200 else {}
    except (aiohttp.ClientError, TimeoutError) as exc:
        from channels.http_errors import describe_http_error

        return [(what, False, f"cannot reach {base}: {describe_http_error(exc)}")]
    checks: list[Check] = [(what, True, f"logged in as {me.get('username')} (id {me.get('id')})")]
    if channel_config.mode == "interactions":
        if app:
            checks.append(_interactions_check(what, channel_config, app))
        return checks  # no gateway connection: the intent does not matter
    if channel_config.message_content_intent and app:
        enabled = bool(int(app.get("flags") or 0) & _MESSAGE_CONTENT_FLAGS)
        detail = (
            "Message Content intent enabled"
            if enabled
            else "Message Content intent is off: enable it (Developer Portal > Bot) "
            "or set message_content_intent = false"
        )
        checks.append((f"{what} intent", enabled, detail))
    return checks


def _interactions_check(what: str, cfg: DiscordChannelConfig, app: dict[str, Any]) -> Check:
    actual = str(app.get("verify_key") or "")
    if actual.lower() != (cfg.public_key or "").lower():
        return (f"{what} public key", False, f"public_key is not the application's ({actual})")
    url = app.get("interactions_endpoint_url")
    detail = f"Interactions Endpoint URL: {url}" if url else "set the Interactions Endpoint URL"
    return (f"{what} public key", True, f"public key matches; {detail}")
