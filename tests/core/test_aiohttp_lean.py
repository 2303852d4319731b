"""`decapod run` imports aiohttp through bot/aiohttp_lean.py: the context that verifies
nothing skips the CA store, the verifying one loads it as before, and nothing stays patched.
Each check runs in a fresh interpreter, since this test process has imported aiohttp."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

CHECK = """
import json, ssl, sys

if sys.argv[1] == "run":  # through `decapod run`'s entry, its work stubbed out
    from bot import cli, operate

    operate.dispatch = lambda args: 0
    cli.main(["run"])
else:
    from bot.aiohttp_lean import import_aiohttp

    import_aiohttp()
    import_aiohttp()  # a second call finds aiohttp imported and changes nothing

from aiohttp import connector

unverified, verified = connector._SSL_CONTEXT_UNVERIFIED, connector._SSL_CONTEXT_VERIFIED
later = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
later.check_hostname = False
later.verify_mode = ssl.CERT_NONE
later.set_default_verify_paths()  # after the import: loads as always
print(json.dumps({
    "unverified": unverified.cert_store_stats(),
    "unverified_mode": int(unverified.verify_mode),
    "verified": verified.cert_store_stats(),
    "verified_mode": int(verified.verify_mode),
    "verified_checks_hostname": verified.check_hostname,
    "default": ssl.create_default_context().cert_store_stats(),
    "later": later.cert_store_stats(),
    "restored": "set_default_verify_paths" not in ssl.SSLContext.__dict__,
}))
"""


def _contexts(how: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHECK, how], capture_output=True, text=True, timeout=60, check=True
    )
    got = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    if not got["default"]["x509_ca"]:  # a CA directory only: OpenSSL reads it lazily anyway
        pytest.skip("no CA file on this host: nothing is loaded when a context is made")
    return got


def test_the_non_verifying_context_skips_the_ca_store_and_the_verifying_one_loads_it() -> None:
    got = _contexts("import")
    assert got["unverified_mode"] == 0  # CERT_NONE
    assert got["unverified"] == {"x509": 0, "crl": 0, "x509_ca": 0}
    # the verifying context trusts exactly what a default context of this host trusts
    assert got["verified_mode"] == 2 and got["verified_checks_hostname"] is True  # CERT_REQUIRED
    assert got["verified"] == got["default"]
    # nothing stays patched: a context made later loads the store, verifying or not
    assert got["restored"] is True
    assert got["later"] == got["default"]


def test_decapod_run_imports_aiohttp_through_it_first() -> None:
    got = _contexts("run")
    assert got["unverified"] == {"x509": 0, "crl": 0, "x509_ca": 0}
    assert got["verified"] == got["default"]
    assert got["restored"] is True
