"""Routing: which sinks and which format a key (object, file, stream) goes to."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from logferry.codecs.formats.base import FormatOptions
from logferry.sinks.base import Sink


@dataclass(frozen=True)
class Route:
    """Where keys under ``prefix`` go: a format chain and sinks (none: dropped)."""

    prefix: str
    sinks: tuple[Sink, ...]
    formats: tuple[str, ...] = ("auto",)
    format_options: FormatOptions | None = None

    @property
    def drop(self) -> bool:
        """Keys on this route are marked done without being shipped."""
        return not self.sinks


class Router:
    """Picks the route of a key: the longest matching prefix wins."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)

    @classmethod
    def to_all(cls, sinks: Sequence[Sink], fmt: str = "auto") -> Router:
        """Everything to every sink in ``sinks``, decoded with ``fmt`` (``ship --to …``)."""
        if not sinks:
            raise ValueError("at least one sink is needed")
        return cls([Route("", tuple(sinks), (fmt,))])

    def route(self, key: str) -> Route | None:
        """The route for ``key``, or None when no prefix matches."""
        return next((r for r in self.routes if key.startswith(r.prefix)), None)

    def no_route(self) -> str:
        """Why a key has no route, for the error queue."""
        prefixes = ", ".join(repr(r.prefix) for r in self.routes)
        return f"no route matches this key (route prefixes: {prefixes})"

    def sinks(self) -> list[Sink]:
        """Every sink of every route, once each."""
        seen: dict[int, Sink] = {}
        for route in self.routes:
            for sink in route.sinks:
                seen.setdefault(id(sink), sink)
        return list(seen.values())
