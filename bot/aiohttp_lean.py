"""aiohttp, loaded without reading the CA store until a connection needs it.

aiohttp builds two TLS contexts when it is imported (`aiohttp.connector`), and each loaded
the system's CA store (~48 ms of CPU each here, parsing ~140 certificates):

- the one for `ssl=False`, which verifies nothing (`CERT_NONE`) and never reads the store:
  it is not loaded at all;
- the verifying one, which every session uses by default (Telegram's, Slack's, Discord's, the
  providers'): it loads the store when it first verifies, that is when its first TLS
  connection (or socket) is wrapped, and not at every start of `decapod run`. A start whose
  channels and providers speak plain HTTP (local ones, the benches' fakes) never pays it; one
  that connects over TLS pays it once, with its first connection.

Nothing is trusted less: until the store is loaded the context trusts no certificate at all,
so a connection that slipped past the load would fail verification, never pass it; what it
trusts once loaded is what a default context trusts (`SSL_CERT_FILE` / `SSL_CERT_DIR`
honoured, as read at that moment), plus whatever a caller added with
`load_verify_locations` meanwhile. Contexts made after the import load the store as always.
"""

from __future__ import annotations

import ssl
import sys
import threading
from typing import Any

_LOAD = "set_default_verify_paths"
#: one load of the store, whichever thread wraps the first connection
_LOADING = threading.Lock()


class CAStoreOnFirstUse(ssl.SSLContext):
    """A verifying context whose default CA store is loaded when it first wraps a connection
    or is asked what it trusts; then it is a plain `ssl.SSLContext` again (its class is set
    back), so later connections pay nothing."""

    def load_ca_store(self) -> None:
        with _LOADING:
            if type(self) is CAStoreOnFirstUse:
                ssl.SSLContext.set_default_verify_paths(self)
                self.__class__ = ssl.SSLContext  # type: ignore[assignment]  # loaded now

    # every TLS connection and socket made from a context goes through one of these two
    # (`wrap_bio` for asyncio's transports, `wrap_socket` for blocking sockets)
    def _wrap_bio(self, *args: Any, **kwargs: Any) -> Any:
        self.load_ca_store()
        return ssl.SSLContext._wrap_bio(self, *args, **kwargs)  # type: ignore[attr-defined]

    def _wrap_socket(self, *args: Any, **kwargs: Any) -> Any:
        self.load_ca_store()
        return ssl.SSLContext._wrap_socket(self, *args, **kwargs)  # type: ignore[attr-defined]

    # and what it trusts reads as it will verify
    def cert_store_stats(self) -> dict[str, int]:
        self.load_ca_store()
        return ssl.SSLContext.cert_store_stats(self)

    def get_ca_certs(self, binary_form: bool = False) -> Any:
        self.load_ca_store()
        return ssl.SSLContext.get_ca_certs(self, binary_form)


def import_aiohttp() -> None:
    """Import aiohttp (once; before anything else imports it, or this does nothing)."""
    if "aiohttp.connector" in sys.modules:
        return
    own = ssl.SSLContext.__dict__.get(_LOAD)  # None: inherited from _ssl._SSLContext
    load = getattr(ssl.SSLContext, _LOAD)

    def load_on_first_use(context: ssl.SSLContext) -> None:
        if context.verify_mode == ssl.CERT_NONE:
            return  # verifies nothing: the store would never be read
        if type(context) is ssl.SSLContext:
            context.__class__ = CAStoreOnFirstUse
        else:  # a context of a class of its own loads as before
            load(context)

    setattr(ssl.SSLContext, _LOAD, load_on_first_use)
    try:
        import aiohttp.connector  # noqa: F401
    finally:
        if own is None:
            delattr(ssl.SSLContext, _LOAD)
        else:
            setattr(ssl.SSLContext, _LOAD, own)
