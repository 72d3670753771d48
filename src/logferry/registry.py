"""The component registry: which module handles which URL, found by looking, not by lists.

A **component** is a source, sink or ledger backend. Its module declares it at top level::

    COMPONENT = Component(
        name="duckdb",
        kind="sink",
        schemes=("duckdb",),
        options=DuckDBOptions,        # a pydantic model of the options it takes
        check=_check,                 # check(url, options): validate; no side effects, no network
        open=_open,                   # open(url, options, **context) -> the sink / source
        usage="duckdb:///PATH",
    )

(``COMPONENTS = (…)`` declares several). The registry imports every module of the
``logferry.sources`` and ``logferry.sinks`` packages (``pkgutil.iter_modules``) and the
declarations of ``logferry.ledger``; adding a sink is adding one module there. Component
modules import heavy libraries (boto3, duckdb, numpy) inside functions, so discovery stays
cheap: ``logferry --help`` and ``validate`` do not pay for them.

Schemes are lower case; ``""`` stands for a plain path (no scheme) and ``"-"`` for stdout.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from logferry.errors import ConfigError
from logferry.redact import redact_url

__all__ = [
    "PACKAGES",
    "Component",
    "Kind",
    "NoOptions",
    "Role",
    "check",
    "components",
    "find",
    "kind_of",
    "lookup",
    "open",
    "preload",
    "reload",
    "scheme_of",
    "schemes",
]

Kind = Literal["bucket", "stream", "sink", "ledger", "queue"]
"""bucket: listed objects (S3, a directory); stream: growing partitions (tail, CloudWatch);
queue: a work queue of object notifications (SQS, NATS JetStream) for workers."""
Role = Literal["source", "sink", "ledger", "queue"]
"""What a URL is used as: ``source`` covers the bucket and stream kinds."""

_KINDS_OF_ROLE: Mapping[str, tuple[Kind, ...]] = {
    "source": ("bucket", "stream"),
    "sink": ("sink",),
    "ledger": ("ledger",),
    "queue": ("queue",),
}
_ROLE_WORD = {
    "bucket": "source",
    "stream": "source",
    "sink": "sink",
    "ledger": "ledger",
    "queue": "queue",
}

#: Packages whose every module may declare ``COMPONENT`` / ``COMPONENTS``.
PACKAGES = ("logferry.sources", "logferry.sinks", "logferry.queues")
#: Packages that declare their components in the package itself (their modules may need
#: optional dependencies, e.g. psycopg for the PostgreSQL ledger).
_DECLARING_PACKAGES = ("logferry.ledger",)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


class NoOptions(BaseModel):
    """The options model of a component that takes none."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class Component:
    """One source, sink or ledger backend: the URL schemes it answers and how to open it."""

    name: str
    kind: Kind
    schemes: tuple[str, ...]
    #: The options it takes; shared option sets are projected onto its fields.
    options: type[BaseModel]
    #: ``check(url, options)``: raise ``ConfigError`` if unusable; no side effects, no network.
    check: Callable[[str, Any], None]
    #: ``open(url, options, **context)``: the opened source, sink or ledger.
    open: Callable[..., Any]
    #: URL forms for messages and ``--help``, e.g. ``s3://BUCKET/PREFIX``.
    usage: str
    summary: str = ""
    #: Libraries it imports when opened (boto3, duckdb): ``--processes`` imports them once,
    #: before forking its copies, which then share them.
    preload: tuple[str, ...] = ()

    def make_options(self, values: BaseModel | Mapping[str, Any] | None = None) -> BaseModel:
        """Validate the fields of ``values`` this component knows into its options model."""
        if isinstance(values, self.options):
            return values
        if isinstance(values, BaseModel):
            values = values.model_dump()
        known = {k: v for k, v in (values or {}).items() if k in self.options.model_fields}
        try:
            return self.options(**known)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "options"
            raise ConfigError(
                f"{self.name}: invalid {where}: {first.get('msg', 'invalid value')}"
            ) from None


_lock = threading.RLock()  # reentrant: a module may look components up while imported
_loaded: tuple[Component, ...] | None = None


def _declared(module: Any) -> list[Component]:
    found = list(getattr(module, "COMPONENTS", ()))
    single = getattr(module, "COMPONENT", None)
    if single is not None:
        found.append(single)
    for c in found:
        if not isinstance(c, Component):
            raise TypeError(f"{module.__name__}: COMPONENT(S) must hold Component instances")
    return found


def _discover() -> tuple[Component, ...]:
    found: list[Component] = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        found.extend(_declared(package))
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            if not info.ispkg:
                found.extend(_declared(importlib.import_module(f"{package_name}.{info.name}")))
    for package_name in _DECLARING_PACKAGES:
        found.extend(_declared(importlib.import_module(package_name)))
    seen: dict[tuple[str, str], str] = {}
    for c in found:
        for scheme in c.schemes:
            slot = (_ROLE_WORD[c.kind], scheme)
            if slot in seen and seen[slot] != c.name:
                raise RuntimeError(
                    f"{_ROLE_WORD[c.kind]} scheme {scheme!r} is declared by both "
                    f"{seen[slot]} and {c.name}"
                )
            seen[slot] = c.name
    return tuple(dict.fromkeys(found))  # a module imported twice declares nothing new


def _all() -> tuple[Component, ...]:
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                _loaded = _discover()
    return _loaded


def reload() -> None:
    """Forget what was discovered; the next call looks again (tests, plugins added late)."""
    global _loaded
    with _lock:
        _loaded = None


def components(kind: Kind | Role | None = None) -> tuple[Component, ...]:
    """The declared components of ``kind`` (``"source"``: bucket and stream), or all."""
    every = _all()
    if kind is None:
        return every
    kinds = _KINDS_OF_ROLE.get(kind, (kind,))
    return tuple(c for c in every if c.kind in kinds)


def schemes(kind: Kind | Role) -> tuple[str, ...]:
    """Every scheme of ``kind``'s components, sorted (``""``: a plain path, ``"-"``: stdout)."""
    return tuple(sorted({s for c in components(kind) for s in c.schemes}))


def scheme_of(url: str, kind: Kind | Role) -> str:
    """The scheme ``url`` is looked up by among ``kind``'s components.

    ``"-"`` is its own scheme; a prefix before ``:`` counts as a scheme when the URL has
    ``://`` or when the prefix is a declared scheme (``logdna:REGION``, ``tail:GLOB``);
    anything else is a plain path (``""``), so ``C:\\logs`` and ``a:b/c`` stay paths.
    """
    url = url.strip()
    if url == "-":
        return "-"
    m = _SCHEME.match(url)
    if not m:
        return ""
    scheme = m.group(1).lower()
    if url[m.end() :].startswith("//") or scheme in schemes(kind):
        return scheme
    return ""


def lookup(url: str, kind: Kind | Role) -> Component | None:
    """The component of ``kind`` that handles ``url``, or None."""
    scheme = scheme_of(url, kind)
    return next((c for c in components(kind) if scheme in c.schemes), None)


def find(url: str, kind: Kind | Role) -> Component:
    """The component of ``kind`` that handles ``url``; ``ConfigError`` listing the known ones."""
    found = lookup(url, kind)
    if found is not None:
        return found
    word = _ROLE_WORD.get(kind, kind)
    declared = schemes(kind)
    known = [s for s in declared if s not in ("", "-")]
    known += [text for s, text in (("-", "- for stdout"), ("", "a plain path")) if s in declared]
    forms = "; ".join(c.usage for c in components(kind))
    raise ConfigError(
        f"unknown {word} {redact_url(url)!r}: known schemes are {', '.join(known)} (e.g. {forms})"
    )


def kind_of(url: str) -> Literal["bucket", "stream"]:
    """Whether the source ``url`` names is a bucket or a stream; ``ConfigError`` if unknown."""
    kind = find(url, "source").kind
    assert kind in ("bucket", "stream")
    return kind


def check(
    url: str, kind: Kind | Role, options: BaseModel | Mapping[str, Any] | None = None
) -> Component:
    """Validate ``url`` and ``options`` without side effects; return the component."""
    component = find(url, kind)
    component.check(url, component.make_options(options))
    return component


def preload(url: str, kind: Kind | Role) -> None:
    """Import the libraries the component for ``url`` uses when opened (see
    ``Component.preload``); quietly nothing for an unknown URL or a missing extra: opening
    it says what is wrong."""
    component = lookup(url, kind)
    for name in component.preload if component is not None else ():
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def open(
    url: str,
    kind: Kind | Role,
    options: BaseModel | Mapping[str, Any] | None = None,
    **context: Any,
) -> Any:
    """Open what ``url`` names with the component of ``kind`` that handles it."""
    component = find(url, kind)
    return component.open(url, component.make_options(options), **context)
