"""`decapod doctor` for a Telegram channel: is the token valid (getMe), and does Telegram
deliver the way the config says (a webhook set, or none for polling)?"""

from __future__ import annotations

from telegram.error import InvalidToken, TelegramError

from bot.channel_configs.telegram import TelegramChannelConfig
from bot.config import secret_from_env
from bot.errors import ConfigError
from bot.proxy_env import check_proxy_env
from bot.redaction import scrub
from channels.telegram_polling import RawUpdatesBot, describe
from channels.telegram_request import AiohttpRequest
from channels.telegram_token import quiet_http_loggers, register_token


async def doctor(name: str, channel_config: TelegramChannelConfig) -> list[tuple[str, bool, str]]:
    """Is the token valid (getMe), and does Telegram deliver the way the config says?"""
    label = f"channel {name}"
    try:
        token = secret_from_env(channel_config.token_env, f"channels.{name}.token_env")
    except ConfigError as exc:
        return [(label, False, f"{exc} (the token @BotFather gave you)")]
    register_token(token)
    quiet_http_loggers()
    try:
        check_proxy_env()
    except ConfigError as exc:
        return [(label, False, str(exc))]
    bot = RawUpdatesBot(
        token,
        base_url=channel_config.api_base_url,
        base_file_url=channel_config.file_base_url,
        request=AiohttpRequest(1),
    )
    try:
        async with bot:
            checks = [(label, True, f"telegram bot @{bot.username}")]
            info = await bot.get_webhook_info()
    except InvalidToken:
        return [(label, False, f"Telegram rejected the token in {channel_config.token_env}")]
    except TelegramError as exc:
        return [(label, False, f"cannot reach Telegram: {describe(exc)}")]
    if channel_config.mode == "webhook":
        ok = info.url == channel_config.webhook_url
        detail = f"webhook {'set' if ok else 'not set yet (set at start)'}"
        if info.last_error_message:
            detail += f"; Telegram's last delivery error: {scrub(info.last_error_message)}"
        checks.append((f"{label} webhook", ok or not info.url, detail))
    elif info.url:
        checks.append((f"{label} webhook", True, "a webhook is set; polling removes it at start"))
    return checks
