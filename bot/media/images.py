"""An image from a person, made fit for a model: decoded with Pillow, scaled so its longest
side is at most the configured size, and encoded as JPEG (PNG when it has transparency).

JPEGs are decoded at a reduced scale from the start (Pillow's draft mode), so a 20 MB photo
never expands to its full pixel count in memory. Everything here is CPU-bound and blocking:
call it in a thread.
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

from bot.media.errors import MediaProblem
from bot.providers.base import ImagePart

if TYPE_CHECKING:
    from PIL import Image

#: a decoded image larger than this many pixels is refused (a decompression bomb)
MAX_PIXELS = 120_000_000
#: the most an encoded image may weigh: far under every provider's per-image limit (Anthropic
#: 5 MB), and small enough that a request with a photo uploads quickly; a noisy photo gets a
#: lower JPEG quality, then fewer pixels, until it fits
MAX_ENCODED_BYTES = 600 * 1024
_JPEG_QUALITIES = (85, 70, 55)


def prepare_image(data: bytes, name: str, max_side: int) -> tuple[ImagePart, tuple[int, int]]:
    """The image as the model gets it, and its original (width, height). MediaProblem when
    it cannot be read."""
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError:
        raise MediaProblem(
            f"I cannot look at {name}: reading images needs Pillow, which is not installed "
            "(pip install 'decapod[media]')"
        ) from None
    if not data:
        raise MediaProblem(f"{name} is empty (0 bytes)")
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            # past MAX_PIXELS Pillow only warns; a bomb must be refused, not decoded
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                size = opened.size
                opened.draft("RGB", (max_side, max_side))  # JPEG only: decode smaller
                image = ImageOps.exif_transpose(opened)
                image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
                encoded = _encode(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MediaProblem(f"{name} has too many pixels for me to open") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise MediaProblem(
            f"{name} is not an image I can read (damaged or unknown format)"
        ) from None
    return encoded, size


def _encode(image: Image.Image) -> ImagePart:
    """PNG when the image has transparency (JPEG has none), else JPEG; within the budget."""
    from PIL import Image

    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if not has_alpha:
        image = image.convert("RGB")
    while True:
        for quality in (None,) if has_alpha else _JPEG_QUALITIES:
            out = io.BytesIO()
            if quality is None:
                image.save(out, "PNG")
            else:
                image.save(out, "JPEG", quality=quality)
            if out.tell() <= MAX_ENCODED_BYTES:
                return ImagePart("image/png" if has_alpha else "image/jpeg", out.getvalue())
        width, height = image.size
        if max(width, height) <= 256:
            return ImagePart("image/png" if has_alpha else "image/jpeg", out.getvalue())
        smaller = (max(1, width * 3 // 4), max(1, height * 3 // 4))
        image = image.resize(smaller, Image.Resampling.LANCZOS)
