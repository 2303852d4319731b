"""The web tools, run in the gateway (the sandbox has no network): web_fetch behind the
address guard, and web_search over a chain of search APIs.

    guard.py    which addresses may be fetched; the resolver that enforces it
    net.py      the HTTP sessions (the network seam tests replace)
    fetch.py    one GET: URL checks, redirects by hand, byte cap, deadline
    extract.py  a body as text: HTML -> Markdown (trafilatura), JSON, text, PDF (pypdf)
    search.py   SearXNG, Brave and Tavily, and the chain that fails over between them
    limits.py   per-person rate limits, the cache of recent pages
    save.py     web_fetch(save_as=...) into the session workspace
    tools.py    the tools, their policy, and the untrusted-content markers

Importing this package imports nothing heavy; `bot.features.start_web` wires it in.
"""

from __future__ import annotations


def extractor_installed() -> bool:
    """Whether web_fetch can turn HTML into text. Asked at every start: it lives here, not
    in extract.py, which loads with the first page fetched."""
    import importlib.util

    return importlib.util.find_spec("trafilatura") is not None
