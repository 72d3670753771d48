"""``auto``: pick the format from the object key, else from the first decompressed bytes."""

from __future__ import annotations

import re

import orjson

from logferry.codecs.formats.aws_vpc_flow import is_header
from logferry.codecs.formats.cloudwatch_export import EXPORT_LINE

#: How much decompressed data detection looks at.
HEAD_SIZE = 64 * 1024

_COMPRESSION_SUFFIXES = (".gz", ".gzip", ".zst", ".zstd", ".bz2")
_NOT_JSON = object()
#: ``<task-id>/<log-stream>/000000.gz`` under any prefix: what create-export-task writes.
_CLOUDWATCH_EXPORT_KEY = re.compile(
    r"(?:^|/)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/[^/]+/\d{6}\.gz$"
)
#: The request log the stats generator writes (``api_requests.log``, ``api_requests-1.log``).
_API_REQUESTS_KEY = re.compile(r"(?:^|/)api_requests[^/]*\.log$")
#: A line starting with a syslog PRI and an RFC 5424 or RFC 3164 timestamp.
_SYSLOG_LINE = re.compile(
    rb"<\d{1,3}>(?:1 (?:\d{4}-\d\d-\d\dT|- )"
    rb"|(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d\d:\d\d:\d\d )"
)
#: Markers near the start of a document that only these services write.
_JSON_MARKERS = (
    (b'"admin#reports#activit', "gsuite-login"),
    (b"/providers/Microsoft.aadiam", "azure-ad"),
    (b"$metadata#auditLogs/", "azure-ad"),
    (b"$metadata#identityProtection/", "azure-ad"),
)
_MARKER_SPAN = 4096


def detect_format(key: str, head: bytes) -> str:
    """Name the format of an object from its key, else its first (decompressed) bytes."""
    if "ibm_vpc_flowlogs_v1/" in key:
        return "ibm-vpc-flow"
    if "_vpcflowlogs_" in key:
        return "aws-vpc-flow"
    if "_CloudTrail_" in key:
        return "cloudtrail"
    if "_elasticloadbalancing_" in key or "/elasticloadbalancing/" in key:
        return _elb(key)
    if _CLOUDWATCH_EXPORT_KEY.search(key):
        return "cloudwatch-export"
    name = key.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    if _API_REQUESTS_KEY.search(name):
        return "api-request"
    if name.endswith((".ndjson", ".jsonl")):
        return "ndjson"
    if name.endswith(".json"):
        return _sniff_json(head) or "json"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".log"):
        return "syslog" if _SYSLOG_LINE.match(head.removeprefix(b"\xef\xbb\xbf")) else "lines"
    return _sniff(head)


def _elb(key: str) -> str:
    """ALB and Classic ELB access logs share a layout; NLB and connection logs do not."""
    file_name = key.rsplit("/", 1)[-1]
    if file_name.startswith("conn_log_") or "_net." in file_name:
        return "lines"
    return "aws-alb"


def _sniff(head: bytes) -> str:
    text = head.removeprefix(b"\xef\xbb\xbf")
    newline = text.find(b"\n")
    first = text if newline < 0 else text[:newline]
    # The header is ASCII; a partial decode keeps a cut multi-byte character harmless.
    if is_header(first.decode("utf-8", "replace")):
        return "aws-vpc-flow"
    if _SYSLOG_LINE.match(text):
        return "syslog"
    if EXPORT_LINE.match(first.decode("utf-8", "replace")):
        return "cloudwatch-export"
    return _sniff_json(text) or "lines"


def _sniff_json(head: bytes) -> str | None:
    """ndjson, a document format, or None when the data does not start like JSON."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if not text.startswith((b"{", b"[")):
        return None
    start = text[:_MARKER_SPAN]
    for marker, format_name in _JSON_MARKERS:
        if marker in start:
            return format_name
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
