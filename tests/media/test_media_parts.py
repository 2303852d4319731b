"""The media parts on their own: which models see images, the config checks of the vision and
transcription chains, image limits, and that pixels never show up in a printed message."""

from __future__ import annotations

import io
from typing import Any

import pytest

from bot.errors import ConfigError
from bot.gateway import Gateway
from bot.media import images
from bot.media.config import DEFAULT_VISION_MODELS
from bot.media.errors import MediaProblem
from bot.media.images import prepare_image
from bot.media.intake import inbox_name
from bot.media.vision import takes_images
from bot.providers.base import ChatMessage, ImagePart
from tests.media.files import png


@pytest.mark.parametrize(
    ("ref", "sees"),
    [
        ("openai:gpt-4o-mini", True),
        ("openai:gpt-4.1", True),
        ("openai:o4-mini", True),
        ("claude:claude-3-5-haiku-latest", True),
        ("claude:claude-sonnet-4-5", True),
        ("claude:claude-opus-4-1", True),
        ("local:llava:13b", True),
        ("local:qwen2.5vl:7b", True),
        ("local:llama3.2-vision:11b", True),
        ("openrouter:openai/gpt-4o", True),
        ("local:llama3.2", False),
        ("openai:gpt-3.5-turbo", False),
        ("local:mistral:7b", False),
    ],
)
def test_known_model_names_say_whether_they_take_images(ref: str, sees: bool) -> None:
    assert takes_images(ref, DEFAULT_VISION_MODELS) is sees


def test_the_vision_models_setting_replaces_the_defaults(make_config: Any) -> None:
    config = make_config(media={"vision_models": ["my-vl-*"]})
    assert takes_images("local:my-vl-7b", config.media.vision_models)
    assert not takes_images("openai:gpt-4o", config.media.vision_models)


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"models": {"chat": ["local:x"], "vision": ["nope:gpt-4o"]}}, "models.vision"),
        ({"transcription": {"chain": ["nope:whisper-1"]}}, "names provider 'nope'"),
        ({"transcription": {"chain": ["whisper-1"]}}, "must be 'provider:model'"),
        (
            {
                "providers": {"local": {"preset": "ollama"}, "claude": {"type": "anthropic"}},
                "transcription": {"chain": ["claude:whisper-1"]},
            },
            "needs an OpenAI-compatible provider",
        ),
        ({"media": {"max_file_mb": 0}}, "media.max_file_mb"),
    ],
)
def test_chains_that_cannot_work_are_config_errors(
    make_config: Any, sections: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        make_config(**sections)


async def test_a_transcriber_without_its_key_is_a_start_up_error(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WHISPER_KEY", raising=False)
    config = make_config(
        providers={
            "local": {"preset": "ollama", "health_probe": False},
            "stt": {"base_url": "https://stt.example.com/v1", "api_key_env": "WHISPER_KEY"},
        },
        transcription={"chain": ["stt:whisper-1"]},
    )
    with pytest.raises(ConfigError, match="WHISPER_KEY is not set"):
        async with Gateway(config, channels={}):
            pass


def test_an_image_with_too_many_pixels_is_refused_undecoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(images, "MAX_PIXELS", 5_000)
    with pytest.raises(MediaProblem, match="too many pixels"):
        prepare_image(png(100, 100), "bomb.png", 1568)


def test_transparency_is_kept_as_png_and_a_small_image_is_not_enlarged() -> None:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGBA", (40, 30), (0, 0, 0, 0)).save(out, "PNG")
    image, size = prepare_image(out.getvalue(), "logo.png", 1568)
    assert image.mime == "image/png" and size == (40, 30)
    with Image.open(io.BytesIO(image.data)) as back:
        assert back.size == (40, 30) and back.mode == "RGBA"


def test_pixels_never_show_in_a_printed_message() -> None:
    secret_pixels = b"\x89PNG-very-private-pixels"
    message = ChatMessage("user", "look", images=(ImagePart("image/png", secret_pixels),))
    assert "private-pixels" not in repr(message) and "private-pixels" not in str(message)
    assert message.without_images() == ChatMessage("user", "look")


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        (".bashrc", "bashrc"),
        ("a/b/ünïcode name?.txt", "_n_code name_.txt"),
        ("", "file"),
        ("..", "file"),
    ],
)
def test_inbox_names_cannot_leave_the_inbox(name: str, safe: str) -> None:
    assert inbox_name(name) == safe


@pytest.mark.parametrize(
    ("name", "copy", "safe"),
    [
        ("report.pdf", 2, "report (2).pdf"),
        ("../notes", 3, "notes (3)"),
        ("archive.tar.gz", 2, "archive.tar (2).gz"),
        # at the limit: the name is cut, never the mark or the extension
        ("y" * 116 + ".pdf", 12, "y" * 111 + " (12).pdf"),
        ("a." + "b" * 40, 2, "a." + "b" * 40 + " (2)"),
    ],
)
def test_a_later_file_of_one_name_is_marked_within_the_name_limit(
    name: str, copy: int, safe: str
) -> None:
    marked = inbox_name(name, copy)
    assert len(marked) <= 120
    assert marked == safe
