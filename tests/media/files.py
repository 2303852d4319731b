"""Small real files for the media tests: images drawn with Pillow, a PDF written out by hand
(one page, real text operators, a correct cross-reference table), a WAV of silence."""

from __future__ import annotations

import io
import wave


def png(
    width: int = 3000, height: int = 2000, color: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def jpeg(width: int, height: int, quality: int = 95) -> bytes:
    """A noisy photo-like JPEG: noise keeps it from compressing to almost nothing."""
    from PIL import Image

    out = io.BytesIO()
    Image.effect_noise((width, height), 80).convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def image_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.size


def pdf(text: str) -> bytes:
    """A one-page PDF whose page shows `text` (plain ASCII, no parentheses)."""
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def wav_silence(seconds: float = 1.0, rate: int = 16_000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(rate * seconds))
    return out.getvalue()


def slack_clip(url: str, size: int) -> dict[str, object]:
    """A clip recorded in the Slack client, as its file object comes in a message event."""
    return {"id": "F00C1", "name": "audio_message.webm", "title": "Audio clip",
            "mimetype": "audio/webm", "filetype": "webm", "subtype": "slack_audio",
            "media_display_type": "audio", "duration_ms": 1000, "size": size,
            "mode": "hosted", "url_private": url, "url_private_download": url}  # fmt: skip
