"""Names a package exports but imports on first use (a module ``__getattr__``, PEP 562).

Importing any ``logferry.*`` module runs its packages' ``__init__`` first; a package that
imported its exports eagerly would make every command pay for the engine, the pydantic
models or the HTTP stack behind them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``homes[name]`` is the module that defines
    ``name``; it is imported on first use and the value kept in the package."""
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    return __getattr__
