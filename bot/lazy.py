"""A package's names imported from their modules at first use (PEP 562 `__getattr__`), so
that entering the package on the start path loads nothing it does not need yet."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """The `__getattr__` of `package`: each name of `where` from the module given for it,
    imported once (the value then sits in the package, and later lookups do not come here).
    Any other name is an AttributeError, so that a submodule is imported as usual."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
