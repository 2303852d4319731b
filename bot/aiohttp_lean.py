"""aiohttp, loaded without the CA store that its non-verifying context never reads.

aiohttp builds two TLS contexts when it is imported (`aiohttp.connector`): the verifying one
every session uses by default, which loads the system's CA store (~18 ms of CPU, parsing
~140 certificates), and the one for `ssl=False`, which verifies nothing (`CERT_NONE`) but
loads the same store again, another ~18 ms at every start of `decapod run`. So the first
import runs with loading the default CA paths skipped for a context that verifies nothing;
a context that verifies loads them as before, during the import and after it.
"""

from __future__ import annotations

import ssl
import sys

_LOAD = "set_default_verify_paths"


def import_aiohttp() -> None:
    """Import aiohttp (once; before anything else imports it, or this does nothing)."""
    if "aiohttp.connector" in sys.modules:
        return
    own = ssl.SSLContext.__dict__.get(_LOAD)  # None: inherited from _ssl._SSLContext
    load = getattr(ssl.SSLContext, _LOAD)

    def load_when_verifying(context: ssl.SSLContext) -> None:
        if context.verify_mode != ssl.CERT_NONE:
            load(context)

    setattr(ssl.SSLContext, _LOAD, load_when_verifying)
    try:
        import aiohttp.connector  # noqa: F401
    finally:
        if own is None:
            delattr(ssl.SSLContext, _LOAD)
        else:
            setattr(ssl.SSLContext, _LOAD, own)
