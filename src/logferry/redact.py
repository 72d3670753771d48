"""Take secrets out of URLs and messages before they reach errors, logs or output.

One helper for every message built from a URL (invariant 5: secrets never reach logs,
errors, the ledger or status output). Standard library only, so any layer can use it.

- :func:`redact_url`: one URL, its userinfo password and secret query values replaced by
  ``***`` (the rest kept, so the message still says which URL was wrong);
- :func:`redact`: the same for every URL found in free text (exception messages that echo
  an endpoint, for instance);
- :func:`safe_url`: a URL reduced to scheme, host, port and path, for names and reprs.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MASK", "SECRET_PARAMS", "redact", "redact_url", "safe_url"]

MASK = "***"

#: Query parameters whose values are secrets (compared case-insensitively).
SECRET_PARAMS = frozenset(
    {
        "key",
        "apikey",
        "api_key",
        "api-key",
        "token",
        "access_token",
        "auth",
        "password",
        "passwd",
        "pwd",
        "secret",
        "client_secret",
        "ingestion_key",
        "ingestionkey",
        "sig",
        "signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
    }
)
# Names that are secrets wherever they appear in a parameter name (``access_key``, ``sas_token``).
_SECRET_PART = re.compile(r"token|secret|passw|signature|credential|api.?key|[_-]key$", re.I)

# A scheme, then either an authority (``//…``) or a query somewhere in the token.
_URL_IN_TEXT = re.compile(
    r"\b[a-zA-Z][a-zA-Z0-9+.-]*:(?://[^\s'\"<>`]*|[^\s'\"<>`?]*\?[^\s'\"<>`]*)"
)
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*:)?//")
_PORT = re.compile(r":\d*$")


def _secret_param(name: str) -> bool:
    name = name.strip().lower()
    return name in SECRET_PARAMS or bool(_SECRET_PART.search(name))


def _redact_query(query: str) -> str:
    parts = []
    for item in query.split("&"):
        name, eq, value = item.partition("=")
        parts.append(f"{name}={MASK}" if eq and value and _secret_param(name) else item)
    return "&".join(parts)


def _redact_authority(rest: str) -> str:
    """``rest`` is what follows ``//``: mask the userinfo before the host."""
    end = len(rest)
    for stop in "/?#":
        i = rest.find(stop)
        if i != -1:
            end = min(end, i)
    authority = rest[:end]
    at = authority.rfind("@")
    if at == -1:
        # ``user:pa/ss@host`` puts the '@' after the first '/': the authority then ends in
        # something that is no port. Mask up to the last '@' of the URL instead.
        if ":" not in authority or _PORT.search(authority) or "@" not in rest[end:]:
            return rest
        at = rest.rfind("@")
    userinfo = rest[:at]
    user, colon, password = userinfo.partition(":")
    # A user without a password may itself be the key (``https://TOKEN@host``).
    masked = f"{user}:{MASK}" if colon and password and "/" not in user else MASK
    return masked + rest[at:]


def redact_url(url: str) -> str:
    """``url`` with the userinfo password and secret query values replaced by ``***``.

    Text that is not a URL comes back unchanged; malformed URLs never raise.
    """
    head = _SCHEME.match(url)
    if head:
        url = url[: head.end()] + _redact_authority(url[head.end() :])
    base, q, query = url.partition("?")
    if not q:
        return url
    query, hash_, fragment = query.partition("#")
    return f"{base}?{_redact_query(query)}{hash_}{fragment}"


def redact(text: str) -> str:
    """``text`` with every URL in it passed through :func:`redact_url`."""
    if ":" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def safe_url(url: object) -> str:
    """``url`` without credentials, query or fragment: fit for names and reprs."""
    text = str(url)
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unbalanced '[' in the host
        return redact_url(text).partition("?")[0]
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a malformed port must not turn a message into a crash
        port = None
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
