"""The Telegram adapter loads python-telegram-bot without cryptography (Passport only) and httpx
without its command-line tool's click, rich and pygments."""

from __future__ import annotations

import json
import subprocess
import sys


def test_the_adapter_loads_without_unused_optional_imports_which_stay_importable() -> None:
    code = (
        "import sys\n"
        "import channels.telegram\n"
        "from channels.telegram_lean import tls_context\n"
        "assert 'telegram' in sys.modules\n"
        "loaded = [m for m in ('cryptography', 'click', 'rich', 'pygments') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "assert tls_context() is tls_context()\n"
        "import cryptography.hazmat.primitives.hashes, click\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_ca_bundle_loads_off_the_importing_thread_into_one_verifying_context() -> None:
    # the ~20 ms load overlaps the start's other imports instead of holding its loop
    code = (
        "import json, ssl, threading\n"
        "loaded_in = []\n"
        "create = ssl.create_default_context\n"
        "def recording(*args, **kwargs):\n"
        "    loaded_in.append(threading.current_thread().name)\n"
        "    return create(*args, **kwargs)\n"
        "ssl.create_default_context = recording\n"
        "from channels.telegram_lean import tls_context\n"
        "context = tls_context()\n"
        "ssl.create_default_context = create\n"
        "print(json.dumps([loaded_in, context is tls_context(),"
        " context.verify_mode == ssl.CERT_REQUIRED, context.check_hostname]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)

    loaded_in, same, verifying, checks_host = json.loads(out.stdout.splitlines()[-1])
    assert "MainThread" not in loaded_in and loaded_in.count("tls-context") == 1
    assert same and verifying and checks_host
