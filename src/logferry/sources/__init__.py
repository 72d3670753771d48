"""Sources, and the URL that picks one."""

from __future__ import annotations

import os
from typing import Literal
from urllib.parse import unquote, urlsplit

from logferry.errors import ConfigError
from logferry.sources.base import BucketSource
from logferry.sources.localdir import LocalDirSource
from logferry.sources.s3 import S3Source
from logferry.sources.stream import StreamSource

__all__ = [
    "BucketSource",
    "LocalDirSource",
    "S3Source",
    "StreamSource",
    "open_source",
    "open_stream_source",
]

STREAM_SCHEMES = ("tail", "cloudwatch")


def is_stream_url(url: str) -> bool:
    """True for the URLs of stream sources (``tail://``, ``cloudwatch://``)."""
    return url.split(":", 1)[0].lower() in STREAM_SCHEMES and ":" in url


def open_stream_source(
    url: str,
    *,
    endpoint_url: str | None = None,
    start: Literal["beginning", "end"] = "beginning",
) -> StreamSource:
    """Open ``tail:///GLOB`` or ``cloudwatch://GROUP_PREFIX[?streams=…]``.

    The route of each partition picks its format (see :mod:`logferry.codecs.stream`).
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme == "tail":
        from logferry.sources.tail import TailSource

        return TailSource.from_url(url, start=start)
    if scheme == "cloudwatch":
        from logferry.sources.cloudwatch import CloudWatchSource

        return CloudWatchSource.from_url(url, endpoint_url=endpoint_url)
    raise ConfigError(f"{url!r} is not a stream source URL (tail:///GLOB or cloudwatch://GROUP)")


def open_source(url: str, *, endpoint_url: str | None = None, verify: bool = True) -> BucketSource:
    """Open ``s3://BUCKET/PREFIX``, ``cos://BUCKET/PREFIX``, ``file:///DIR`` or a plain path."""
    if "://" not in url:
        return LocalDirSource(url)
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ConfigError(
            "credentials in a source URL are not accepted: use AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY, a profile, or COS_HMAC_* variables"
        )
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"bad file URL {url!r}: use file:///ABSOLUTE/DIR")
        return LocalDirSource(unquote(parts.path))
    if parts.scheme in ("s3", "cos"):
        cos = parts.scheme == "cos"
        bucket = parts.netloc or (os.environ.get("COS_BUCKET", "") if cos else "")
        prefix = parts.path.lstrip("/")
        if cos and not parts.netloc and not prefix:
            prefix = os.environ.get("COS_PREFIX", "")
        return S3Source(bucket, prefix, endpoint_url=endpoint_url, cos=cos, verify=verify)
    if is_stream_url(url):
        raise ConfigError(f"{url} is a stream source: open it with open_stream_source")
    raise ConfigError(
        f"unknown source {url!r}: use s3://BUCKET/PREFIX, cos://BUCKET/PREFIX, file:///DIR, a "
        "path, tail:///GLOB or cloudwatch://GROUP_PREFIX"
    )
