"""``auto``: pick the format from the object key, else from the first decompressed bytes."""

from __future__ import annotations

import orjson

from logferry.codecs.formats.aws_vpc_flow import is_header

#: How much decompressed data detection looks at.
HEAD_SIZE = 64 * 1024

_COMPRESSION_SUFFIXES = (".gz", ".gzip", ".zst", ".zstd", ".bz2")
_NOT_JSON = object()


def detect_format(key: str, head: bytes) -> str:
    """Name the format of an object from its key, else its first (decompressed) bytes."""
    if "ibm_vpc_flowlogs_v1/" in key:
        return "ibm-vpc-flow"
    if "_vpcflowlogs_" in key:
        return "aws-vpc-flow"
    if "_CloudTrail_" in key:
        return "cloudtrail"
    name = key.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    if name.endswith((".ndjson", ".jsonl")):
        return "ndjson"
    if name.endswith(".json"):
        return _sniff_json(head) or "json"
    if name.endswith(".log"):
        return "lines"
    return _sniff(head)


def _sniff(head: bytes) -> str:
    text = head.removeprefix(b"\xef\xbb\xbf")
    newline = text.find(b"\n")
    first = text if newline < 0 else text[:newline]
    # The header is ASCII; a partial decode keeps a cut multi-byte character harmless.
    if is_header(first.decode("utf-8", "replace")):
        return "aws-vpc-flow"
    return _sniff_json(text) or "lines"


def _sniff_json(head: bytes) -> str | None:
    """ndjson, a document format, or None when the data does not start like JSON."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if not text.startswith((b"{", b"[")):
        return None
    newline = text.find(b"\n")
    first = text if newline < 0 else text[:newline]
    rest = b"" if newline < 0 else text[newline + 1 :].lstrip()
    try:
        value = orjson.loads(first)
    except orjson.JSONDecodeError:
        value = _NOT_JSON
    if value is not _NOT_JSON:
        if not rest:
            # A single line that is a whole document (IBM writes flow logs on one line).
            if isinstance(value, dict):
                if isinstance(value.get("flow_logs"), list):
                    return "ibm-vpc-flow"
                if isinstance(value.get("Records"), list):
                    return "cloudtrail"
            return "ndjson"
        if rest.startswith((b"{", b"[")):
            return "ndjson"
    if b'"flow_logs"' in text:
        return "ibm-vpc-flow"
    if b'"Records"' in text:
        return "cloudtrail"
    return "json"
