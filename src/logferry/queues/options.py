"""Queue options written in the URL's query string (``?visibility_timeout=120&…``).

A queue URL carries its own settings, so one string in a config file or a flag says it all.
Options given explicitly (a flag, a config key) win over the query string, which wins over
the defaults of :class:`~logferry.queues.base.QueueOptions`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pydantic import ValidationError

from logferry.errors import ConfigError
from logferry.queues.base import QueueOptions
from logferry.redact import redact_url

OptionsT = TypeVar("OptionsT", bound=QueueOptions)

__all__ = ["split_options"]


def split_options(
    url: str, options: OptionsT, own: Iterable[str] = ()
) -> tuple[str, OptionsT, dict[str, str]]:
    """``(url without its query, options merged with the query, the queue's own parameters)``.

    ``own`` names the parameters the queue reads itself (``subject``, ``durable``); any other
    parameter that is no option field is a one-line ``ConfigError`` listing the known ones.
    """
    parts = urlsplit(url)
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConfigError(f"queue {redact_url(url)!r}: malformed query string") from None
    own = set(own)
    fields = set(type(options).model_fields)
    mine: dict[str, str] = {}
    from_query: dict[str, str] = {}
    for name, value in pairs:
        if name in own:
            mine[name] = value
        elif name in fields:
            from_query[name] = value
        else:
            known = ", ".join(sorted(own | fields))
            raise ConfigError(
                f"queue {redact_url(url)!r}: unknown parameter {name!r} (known: {known})"
            )
    explicit = {
        k: v
        for k, v in options.model_dump().items()
        if k in options.model_fields_set and v is not None
    }
    try:
        merged = type(options)(**{**from_query, **explicit})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "options"
        raise ConfigError(
            f"queue {redact_url(url)!r}: invalid {where}: {first.get('msg', 'invalid value')}"
        ) from None
    # urlunsplit drops an empty authority ("sqs://" would come back as "sqs:").
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    if not parts.netloc and url[len(parts.scheme) + 1 :].startswith("//"):
        base = f"{parts.scheme}://{parts.path}"
    return base, merged, mine
