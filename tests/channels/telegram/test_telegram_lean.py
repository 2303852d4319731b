"""The Telegram adapter loads python-telegram-bot without cryptography (Passport only) and httpx
without its command-line tool's click, rich and pygments."""

from __future__ import annotations

import subprocess
import sys


def test_the_adapter_loads_without_unused_optional_imports_which_stay_importable() -> None:
    code = (
        "import sys\n"
        "import channels.telegram\n"
        "assert 'telegram' in sys.modules\n"
        "loaded = [m for m in ('cryptography', 'click', 'rich', 'pygments') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "import cryptography.hazmat.primitives.hashes, click\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
