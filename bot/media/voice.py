"""Voice answers: with `/voice on`, the answer to a voice note also comes back spoken.

The text answer always goes out first and stays the answer of record; the spoken copy is
made after it (bot/media/speech.py), as a voice message where the platform has them
(Telegram: OGG/Opus) and as an MP3 file elsewhere. When speech fails, the person still has
the text, once: the failure is only logged. The choice is per person (linked identities
share it) and kept in the store.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from bot.errors import ChannelError

if TYPE_CHECKING:
    from bot.commands import CommandContext, CommandTable
    from bot.gateway import Gateway
    from bot.media.speech import SpeechChain
    from bot.messages import FileChannel, InboundMessage
    from bot.store import Store

log = logging.getLogger("decapod.media")

_SETTING = "voice_answers:"
HOW_TO_ENABLE = (
    "Voice answers are not set up on this gateway. To enable them, the operator adds a "
    "[speech] table to config.toml naming an OpenAI-compatible text-to-speech server of "
    '[providers], e.g. `[speech]` `chain = ["openai:gpt-4o-mini-tts"]` `voice = "alloy"` '
    "(or a local server such as Kokoro-FastAPI), and restarts. See README, Voice."
)


class VoiceAnswers:
    def __init__(self, store: Store, speech: SpeechChain | None) -> None:
        self.store = store
        self.speech = speech

    async def wanted(self, person_id: str) -> bool:
        return await self.store.kv.get(_SETTING + person_id) == "on"

    async def choose(self, person_id: str, on: bool) -> None:
        await self.store.kv.set(_SETTING + person_id, "on" if on else "off")

    async def answer(
        self, channel: FileChannel, message: InboundMessage, person_id: str, text: str
    ) -> None:
        """Send `text` spoken, when `message` was a voice note and its sender wants voice."""
        if self.speech is None or not any(part.kind == "voice" for part in message.parts):
            return
        from bot.media.speech import SpeechFailed, speakable

        spoken = speakable(text, self.speech.config.max_chars)
        if not spoken or not await self.wanted(person_id):
            return
        if channel.sends_voice_notes:
            audio_format, kind, name, mime = "opus", "voice", "answer.ogg", "audio/ogg"
        else:
            audio_format, kind, name, mime = "mp3", "audio", "answer.mp3", "audio/mpeg"
        try:
            audio = await self.speech.synthesize(spoken, audio_format)
            await channel.send_file(message.conversation, audio, name, mime, kind=kind)
        except (SpeechFailed, ChannelError) as exc:
            # the text answer is out already; the spoken copy is a convenience
            log.warning("no voice answer in %s: %s", message.session_key, exc)

    async def command(self, ctx: CommandContext) -> str:
        setting = ctx.args.strip().lower()
        if setting not in ("on", "off"):
            state = "on" if await self.wanted(ctx.person_id) else "off"
            return f"Voice answers are {state}. Usage: /voice on|off"
        if setting == "on" and self.speech is None:
            return HOW_TO_ENABLE
        await self.choose(ctx.person_id, setting == "on")
        if setting == "on":
            return "Voice answers on: I will answer your voice notes with voice too."
        return "Voice answers off: I answer voice notes in text only."


def register_voice_command(table: CommandTable, voice: VoiceAnswers) -> None:
    table.add("voice", "Answer my voice notes with voice too", usage="on|off", arg_name="setting")(
        voice.command
    )


async def start_media_out(gw: Gateway, stack: contextlib.AsyncExitStack) -> None:
    """Voice answers (the `/voice` command always; speech when `[speech]` has a chain) and,
    where the session workspaces exist, the send_file tool."""
    speech = None
    if gw.config.speech.chain:  # without one, the speech module is not loaded at all
        from bot.media.speech import SpeechChain

        speech = SpeechChain.from_config(gw.config.speech, gw.config.providers)
    if speech is not None:
        stack.push_async_callback(speech.aclose)
        log.info("voice answers: %s", ", ".join(gw.config.speech.chain))
    gw.voice = VoiceAnswers(gw.store, speech)
    register_voice_command(gw.commands, gw.voice)
    if gw.deps.sandbox is not None:
        from bot.media.outbound import outbound_tools

        for t in outbound_tools():
            gw.tools.register(t)
