"""The Telegram adapter loads python-telegram-bot without cryptography (Passport only)."""

from __future__ import annotations

import subprocess
import sys


def test_the_adapter_loads_without_cryptography_which_stays_importable() -> None:
    code = (
        "import sys\n"
        "import channels.telegram\n"
        "from channels.telegram_lean import tls_context\n"
        "assert 'telegram' in sys.modules\n"
        "assert 'cryptography' not in sys.modules, 'cryptography was imported'\n"
        "assert tls_context() is tls_context()\n"
        "import cryptography.hazmat.primitives.hashes\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
