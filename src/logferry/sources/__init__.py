"""Sources, and the URL that picks one (through :mod:`logferry.registry`).

Every module of this package may declare a source ``COMPONENT``; these functions are thin
wrappers over the registry that keep the signatures the rest of the code calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from logferry import registry
from logferry.errors import ConfigError
from logferry.redact import redact_url
from logferry.sources.base import BucketSource
from logferry.sources.localdir import LocalDirSource
from logferry.sources.stream import StreamSource

if TYPE_CHECKING:
    from logferry.sources.s3 import S3Source

__all__ = [
    "BucketSource",
    "LocalDirSource",
    "S3Source",
    "StreamSource",
    "is_stream_url",
    "open_source",
    "open_stream_source",
]


def __getattr__(name: str) -> Any:
    # S3Source stays importable from here without importing boto3 with the package.
    if name == "S3Source":
        from logferry.sources.s3 import S3Source

        return S3Source
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_stream_url(url: str) -> bool:
    """True for the URLs of stream sources (``tail://``, ``cloudwatch://``)."""
    component = registry.lookup(url, "source")
    return component is not None and component.kind == "stream"


def _usage(kind: registry.Kind) -> str:
    return " or ".join(c.usage for c in registry.components(kind))


def open_stream_source(
    url: str,
    *,
    endpoint_url: str | None = None,
    start: Literal["beginning", "end"] = "beginning",
    profile: str | None = None,
    region: str | None = None,
) -> StreamSource:
    """Open a stream source URL: ``tail:///GLOB``, ``cloudwatch://GROUP_PREFIX[?streams=…]``.

    The route of each partition picks its format (see :mod:`logferry.codecs.stream`).
    """
    component = registry.find(url, "source")
    if component.kind != "stream":
        raise ConfigError(
            f"{redact_url(url)!r} is not a stream source URL (use {_usage('stream')})"
        )
    options = {"endpoint_url": endpoint_url, "start": start, "profile": profile, "region": region}
    source = component.open(url, component.make_options(options))
    assert isinstance(source, StreamSource)
    return source


def open_source(
    url: str,
    *,
    endpoint_url: str | None = None,
    verify: bool = True,
    profile: str | None = None,
    region: str | None = None,
) -> BucketSource:
    """Open a bucket source URL: ``s3://BUCKET/PREFIX``, ``cos://…``, ``file:///DIR``, a path.

    ``profile`` and ``region`` reach the sources that call AWS (others ignore them).
    """
    component = registry.find(url, "source")
    if component.kind != "bucket":
        raise ConfigError(f"{redact_url(url)} is a stream source: open it with open_stream_source")
    settings = {
        "endpoint_url": endpoint_url,
        "verify": verify,
        "profile": profile,
        "region": region,
    }
    source = component.open(url, component.make_options(settings))
    assert isinstance(source, BucketSource)
    return source
