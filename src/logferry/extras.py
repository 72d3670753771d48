"""Optional dependencies: which extra provides a library, and the error when it is missing.

The core install ships buckets, files and streams to Mezmo, InfluxDB and files. The
heavier libraries come with extras (``pip install 'logferry[store]'``); the places that
import them ask :func:`require` first, so a missing one is a one-line error naming the extra.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from logferry.errors import ConfigError

#: Extra -> the distributions it adds, as pyproject.toml declares them (tests keep both equal).
EXTRAS: dict[str, tuple[str, ...]] = {
    "store": ("duckdb", "numpy"),
    "stats": ("fastapi", "uvicorn", "jinja2", "duckdb", "numpy"),
    "tail": ("watchdog",),
    "fast": ("numpy",),
    "package": ("shiv",),
    "queue": ("nats-py",),
}


class MissingExtraError(ConfigError):
    """An optional dependency is not installed (exit 2); the message names the extra."""


def missing_extra(extra: str, module: str, exc: ImportError | None = None) -> MissingExtraError:
    """The error for ``module`` missing; re-raises ``exc`` if it is about another module."""
    if exc is not None and exc.name and exc.name.split(".")[0] != module.split(".")[0]:
        raise exc  # the library is there but broken: that is not a missing extra
    return MissingExtraError(
        f"this needs {module}, which is not installed: pip install 'logferry[{extra}]'"
    )


def require(extra: str, *modules: str) -> list[ModuleType]:
    """Import ``modules`` (provided by ``extra``), or raise :class:`MissingExtraError`."""
    loaded = []
    for module in modules:
        try:
            loaded.append(importlib.import_module(module))
        except ImportError as exc:
            raise missing_extra(extra, module, exc) from None
    return loaded


def require_installed(extra: str, *modules: str) -> None:
    """Like :func:`require`, without importing anything: validation stays light."""
    for module in modules:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):  # a parent missing, or a module blocked as None
            spec = None
        if spec is None:
            raise missing_extra(extra, module)
