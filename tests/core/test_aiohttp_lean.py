"""`decapod run` imports aiohttp through bot/aiohttp_lean.py: the context that verifies
nothing skips the CA store, the verifying one loads it with its first TLS connection (and
trusts nothing before), and nothing stays patched. Each check runs in a fresh interpreter,
since this test process has imported aiohttp."""

from __future__ import annotations

import json
import os
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
    # what the store held before anything connected or asked (the base class's own reading)
    "verified_before_use": ssl.SSLContext.cert_store_stats(verified),
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


def test_the_non_verifying_context_skips_the_ca_store_and_the_verifying_one_defers_it() -> None:
    got = _contexts("import")
    assert got["unverified_mode"] == 0  # CERT_NONE
    assert got["unverified"] == {"x509": 0, "crl": 0, "x509_ca": 0}
    # the import read no store: the verifying context loads it when first used
    assert got["verified_before_use"] == {"x509": 0, "crl": 0, "x509_ca": 0}
    # asked, it trusts exactly what a default context of this host trusts
    assert got["verified_mode"] == 2 and got["verified_checks_hostname"] is True  # CERT_REQUIRED
    assert got["verified"] == got["default"]
    # nothing stays patched: a context made later loads the store, verifying or not
    assert got["restored"] is True
    assert got["later"] == got["default"]


def test_decapod_run_imports_aiohttp_through_it_first() -> None:
    got = _contexts("run")
    assert got["verified_before_use"] == {"x509": 0, "crl": 0, "x509_ca": 0}
    assert got["unverified"] == {"x509": 0, "crl": 0, "x509_ca": 0}
    assert got["verified"] == got["default"]
    assert got["restored"] is True


# A server on 127.0.0.1 with a self-signed certificate, and clients through aiohttp's
# verifying context: a session's default (asyncio's transports wrap a BIO) and a blocking
# socket wrapped with the same context. The context's store is empty until the first of them.
TLS_CHECK = """
import asyncio, json, socket, ssl, sys

from bot.aiohttp_lean import import_aiohttp

import_aiohttp()
import aiohttp
from aiohttp import connector, web

cert, key, first = sys.argv[1], sys.argv[2], sys.argv[3]
verified = connector._SSL_CONTEXT_VERIFIED


async def through_session(port):
    async with aiohttp.ClientSession() as session:
        try:
            async with session.get(f"https://127.0.0.1:{port}/") as answer:
                return await answer.text()
        except aiohttp.ClientConnectorCertificateError:
            return "refused"


def through_socket(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with verified.wrap_socket(raw, server_hostname="127.0.0.1"):
                return "handshake"
        except ssl.SSLCertVerificationError:
            return "refused"


async def main():
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)
    app = web.Application()

    async def hello(request):
        return web.Response(text="hello")

    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=served).start()
    port = runner.addresses[0][1]
    before = ssl.SSLContext.cert_store_stats(verified)
    if first == "session":
        outcomes = [await through_session(port), await asyncio.to_thread(through_socket, port)]
    else:
        outcomes = [await asyncio.to_thread(through_socket, port), await through_session(port)]
    await runner.cleanup()
    print(json.dumps({
        "before": before,
        "outcomes": outcomes,
        "after": ssl.SSLContext.cert_store_stats(verified),
        "default": ssl.create_default_context().cert_store_stats(),
        "mode": int(verified.verify_mode),
    }))


asyncio.run(main())
"""


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A certificate for 127.0.0.1 signed by its own key: (certificate file, key file)."""
    x509 = pytest.importorskip("cryptography.x509")
    import datetime
    import ipaddress

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)


def _connect(self_signed: tuple[str, str], first: str, **env: str) -> dict[str, Any]:
    environ = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    out = subprocess.run(
        [sys.executable, "-c", TLS_CHECK, *self_signed, first],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**environ, **env},
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("first", ["session", "socket"])
def test_a_self_signed_server_still_fails_verification(
    self_signed: tuple[str, str], first: str
) -> None:
    got = _connect(self_signed, first)
    assert got["before"] == {"x509": 0, "crl": 0, "x509_ca": 0}  # deferred, trusting nothing
    assert got["mode"] == 2  # CERT_REQUIRED
    assert got["outcomes"] == ["refused", "refused"]
    assert got["after"] == got["default"]  # the first connection loaded the host's store


@pytest.mark.parametrize("first", ["session", "socket"])
def test_a_ca_file_from_the_environment_is_trusted_with_the_first_connection(
    self_signed: tuple[str, str], first: str
) -> None:
    got = _connect(self_signed, first, SSL_CERT_FILE=self_signed[0])
    assert got["before"] == {"x509": 0, "crl": 0, "x509_ca": 0}
    # whichever path connects first loads the store before its handshake
    expected = ["hello", "handshake"] if first == "session" else ["handshake", "hello"]
    assert got["outcomes"] == expected
    assert got["after"]["x509_ca"] == 1 == got["default"]["x509_ca"]
