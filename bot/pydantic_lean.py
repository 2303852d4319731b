"""pydantic's plugin loader, imported without importlib.metadata while no plugin is installed.

pydantic looks for plugins (entry points of the group `pydantic`) when it builds its first
model. Its loader, `pydantic.plugin._loader`, imports `importlib.metadata` when it is
imported (with zipfile, csv and importlib.resources: ~16 ms of CPU at every start of
`decapod run`, and nothing else on the way to ready imports it), then reads the entry points
of every installed distribution. Where no plugin is installed, as in the image, that finds
nothing. So the loader is imported with an `entry_points` of its own: it reads the same
`entry_points.txt` files importlib.metadata would, in the folders of `sys.path`, and only
when none of them can declare the `pydantic` group does it answer "none" itself; when one
may (or when it meets a folder, an archive or a finder it does not read as importlib.metadata
does) it calls importlib.metadata's `entry_points`, so an installed plugin loads as before.
Only recent loaders (2.14 releases after 2.14.0) take just that name; an older one keeps the
module and calls its `distributions()` later, so it is dropped and imported again with the real
importlib.metadata.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Iterable
from importlib.machinery import PathFinder
from typing import Any

_LOADER = "pydantic.plugin._loader"
_METADATA = "importlib.metadata"
#: the entry-points file of a distribution's metadata folder
_ENTRY_POINTS = "entry_points.txt"
#: no entry-points file there: importlib.metadata reads it as "no entry points" too
_ABSENT = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


def import_plugin_loader() -> None:
    """Import pydantic's plugin loader (once; before anything imports importlib.metadata or
    builds a model, or this does nothing; on the only thread, as `decapod run` does first,
    since the stand-in is what any import of importlib.metadata meanwhile would get)."""
    if _LOADER in sys.modules or _METADATA in sys.modules:
        return
    import pydantic.plugin  # noqa: F401  # its own imports, with the real modules

    stand_in = types.ModuleType(_METADATA)
    stand_in.entry_points = entry_points  # type: ignore[attr-defined]
    sys.modules[_METADATA] = stand_in  # recent loaders' one name from it: `entry_points`
    try:
        importlib.import_module(_LOADER)
    except ImportError:
        pass  # a loader that wants more of importlib.metadata: imported as usual later
    finally:
        if sys.modules.get(_METADATA) is stand_in:
            del sys.modules[_METADATA]
    if getattr(sys.modules.get(_LOADER), "entry_points", None) is not entry_points:
        _forget_loader()


def _forget_loader() -> None:
    """Drop a loader imported with the stand-in that did not take `entry_points` from it:
    pydantic before 2.14 keeps the module (`import importlib.metadata as ...`) and later calls
    its `distributions()`, which the stand-in lacks. Imported again, it gets the real one."""
    sys.modules.pop(_LOADER, None)
    package, _, name = _LOADER.rpartition(".")
    parent = sys.modules.get(package)
    if parent is not None and name in vars(parent):
        delattr(parent, name)


def entry_points(**params: Any) -> Iterable[Any]:
    """importlib.metadata's `entry_points(**params)`, with no import of it when only a group
    is asked for (pydantic's `pydantic`) and no installed distribution can declare it."""
    if params.keys() == {"group"} and not _may_declare(params["group"]):
        return ()
    from importlib.metadata import entry_points as read

    return read(**params)


def _may_declare(group: str) -> bool:
    """False only when no distribution importlib.metadata would find has an entry-points
    file naming `group`; True whenever it cannot tell."""
    if any(
        getattr(finder, "find_distributions", None) is not None and finder is not PathFinder
        for finder in sys.meta_path
    ):
        return True  # a finder of distributions of its own
    needle = group.encode()
    for root in sys.path:
        if not isinstance(root, str):
            return True
        try:
            children = os.listdir(root or ".")
        except OSError:
            if os.path.exists(root):
                return True  # a zip archive, or a folder it cannot list
            continue  # importlib.metadata finds nothing where nothing is
        egg = os.path.basename(root).lower().endswith(".egg")
        for child in children:
            low = child.lower()
            info = low.endswith((".dist-info", ".egg-info")) or (egg and low == "egg-info")
            if info and _names(os.path.join(root, child, _ENTRY_POINTS), needle):
                return True
    return False


def _names(path: str, needle: bytes) -> bool:
    """Whether the entry-points file at `path` may name `needle` (unreadable: it may)."""
    try:
        with open(path, "rb") as file:
            text = file.read()
    except _ABSENT:
        return False
    except OSError:
        return True
    try:
        text.decode("utf-8")  # importlib.metadata would raise on it: let it
    except UnicodeDecodeError:
        return True
    return needle in text
