"""Format auto-detection and the decode_object pipeline (decompress → detect → decode)."""

from __future__ import annotations

import bz2
import gzip
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import zstandard

from logferry.codecs import DecodeContext, decode_object, detect_format, resolve_format
from logferry.errors import ConfigError, DecodeError

Chunker = Callable[[bytes, int], list[bytes]]

LAST_MODIFIED = 1_700_000_000_000
AWS_HEADER = (
    b"version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes "
    b"start end action log-status\n"
)
AWS_ROW = (
    b"2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 "
    b"1418530010 1418530070 ACCEPT OK\n"
)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("ibm_vpc_flowlogs_v1/account=a/region=us-south/00000001.gz", "ibm-vpc-flow"),
        (
            "AWSLogs/123456789010/vpcflowlogs/us-east-1/2021/06/25/"
            "123456789010_vpcflowlogs_us-east-1_fl-1234abcd_20210625T2055Z_abcd.log.gz",
            "aws-vpc-flow",
        ),
        (
            "AWSLogs/123456789010/CloudTrail/us-east-1/2021/06/25/"
            "123456789010_CloudTrail_us-east-1_20210625T2055Z_abcd.json.gz",
            "cloudtrail",
        ),
        ("app/2021/events.ndjson.gz", "ndjson"),
        ("app/2021/events.JSONL.zst", "ndjson"),
        ("app/server.log.bz2", "lines"),
        ("app/server.log", "lines"),
        (
            "AWSLogs/123456789012/elasticloadbalancing/us-east-2/2018/07/02/123456789012_"
            "elasticloadbalancing_us-east-2_app.my-loadbalancer.1234567890abcdef_"
            "20180702T2225Z_10.0.0.1_2fk7y3yo.log.gz",
            "aws-alb",
        ),
        (
            "logs/AWSLogs/123456789012/elasticloadbalancing/us-east-2/2015/05/13/123456789012_"
            "elasticloadbalancing_us-east-2_my-loadbalancer_20150513T2340Z_172.160.001.192_"
            "20sg8hgm.log",
            "aws-alb",
        ),
        (
            "AWSLogs/123456789012/elasticloadbalancing/us-east-2/2018/12/20/123456789012_"
            "elasticloadbalancing_us-east-2_net.my-loadbalancer.1234567890abcdef_"
            "20181220T2350Z_0123abcd.log.gz",
            "lines",
        ),
        (
            "AWSLogs/123456789012/elasticloadbalancing/us-east-2/2023/10/04/conn_log_123456789012_"
            "elasticloadbalancing_us-east-2_app.my-lb.1234567890abcdef_20231004T0800Z_"
            "10.0.0.1_2fk7y3yo.log.gz",
            "lines",
        ),
        (
            "exports/1d0f4e5a-6b7c-4d8e-9f01-23456789abcd/i-0123456789abcdef0/000000.gz",
            "cloudwatch-export",
        ),
        ("reports/2024-01-02/users.csv.gz", "csv"),
        ("reports/USERS.CSV", "csv"),
    ],
)
def test_detect_by_key(key: str, expected: str) -> None:
    # The content says otherwise: key rules come first.
    assert detect_format(key, b'{"flow_logs": []}') == expected


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b'{"a": 1}\n{"a": 2}\n', "ndjson"),
        (b'{"a": 1}', "ndjson"),
        (b'{\n  "a": 1\n}\n', "json"),
        (b'{"a": 1}\nplain text', "json"),
        (b'[\n {"a": 1}\n]', "json"),
        (b'{\n  "flow_logs": []\n}', "ibm-vpc-flow"),
        (b'{\n  "Records": [\n', "cloudtrail"),
        (b"not json\n", "json"),
    ],
)
def test_detect_json_kind_for_json_keys(head: bytes, expected: str) -> None:
    assert detect_format("logs/thing.json.gz", head) == expected


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"", "lines"),
        (b"Jun 25 20:56:21 host sshd[1]: Accepted\n", "lines"),
        (AWS_HEADER + AWS_ROW, "aws-vpc-flow"),
        (b"start srcaddr dstaddr action\n", "aws-vpc-flow"),
        (AWS_ROW, "lines"),
        (b'  \n{"a": 1}\n\n{"b": 2}\n', "ndjson"),
        (b"\xef\xbb\xbf[1, 2]\n[3]\n", "ndjson"),
        (b'{"version": "0.0.1", "flow_logs": [{"a": 1}]}', "ibm-vpc-flow"),
        (b'{\n"version": "0.0.1",\n"flow_logs": [', "ibm-vpc-flow"),
        (b'{"Records": [{"eventTime": "2021-06-25T20:56:21Z"}]}', "cloudtrail"),
        (b'{\n  "Records": [', "cloudtrail"),
        (b'{\n  "service": "api"\n}', "json"),
        (b'{"cut": "a document longer than the head', "json"),
        (b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed\n", "syslog"),
        (b"<13>Jun  5 04:02:01 host app: x\n", "syslog"),
        (b"<165>1 2003-10-11T22:14:15.003Z host app - ID47 - msg\n", "syslog"),
        (b"<15>1 - - - - - -\n", "syslog"),
        (b"<b>not syslog</b>\n", "lines"),
        (b"<34>1 plain\n", "lines"),
        (b"2024-01-02T03:04:05.678Z START RequestId: 8f5e Version: $LATEST\n", "cloudwatch-export"),
        (b"2024-01-02 03:04:05,678 INFO app started\n", "lines"),
        (b"2024-01-02T03:04:05Z INFO not the export's millisecond shape\n", "lines"),
        (b"time,user,action\n2024-01-02T03:04:05Z,alice,login\n", "lines"),
        (
            b'{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#auditLogs/signIns",'
            b'"value":[]}',
            "azure-ad",
        ),
        (
            b'{\n  "records": [\n    {"resourceId": "/tenants/x/providers/Microsoft.aadiam"',
            "azure-ad",
        ),
        (b'{"time":"2024","resourceId":"/tenants/x/providers/Microsoft.aadiam"}\n{}\n', "azure-ad"),
        (b'{\n "kind": "admin#reports#activities",\n "items": [', "gsuite-login"),
        (
            b'{"kind":"admin#reports#activity","id":{}}\n{"kind":"admin#reports#activity"}\n',
            "gsuite-login",
        ),
    ],
)
def test_detect_by_content(head: bytes, expected: str) -> None:
    assert detect_format("bucket/object-without-extension", head) == expected


def test_log_keys_are_lines_unless_they_start_with_syslog_pri() -> None:
    assert detect_format("var/log/messages.log", b"<13>Jun  5 04:02:01 host app: x\n") == "syslog"
    assert detect_format("var/log/messages.log", b"Jun  5 04:02:01 host app: x\n") == "lines"
    assert detect_format("var/log/app.log", b"2024-01-02T03:04:05.678Z x\n") == "lines"


def test_json_keys_detect_azure_and_gsuite_documents() -> None:
    assert (
        detect_format("x/signins.json", b'{"value": [{"resourceId": "/providers/Microsoft.aadiam"')
        == "azure-ad"
    )
    assert (
        detect_format("x/login.json.gz", b'{"kind": "admin#reports#activities"}') == "gsuite-login"
    )


def test_detect_real_ibm_fixtures_by_content(ibm_fixtures: Path) -> None:
    one_line = gzip.decompress((ibm_fixtures / "00000911.gz").read_bytes())
    pretty = (ibm_fixtures / "00002630.json").read_bytes()
    assert detect_format("x/00000911", one_line) == "ibm-vpc-flow"
    assert detect_format("x/00002630", pretty) == "ibm-vpc-flow"
    assert detect_format("x/00002630.json", pretty) == "ibm-vpc-flow"


def test_decode_object_real_ibm_gzip_auto(ibm_fixtures: Path, chunked: Chunker) -> None:
    key = "ibm_vpc_flowlogs_v1/account=a/record-type=all/stream-id=20200604T134239Z/00000911.gz"
    ctx = DecodeContext(key, LAST_MODIFIED)
    raw = (ibm_fixtures / "00000911.gz").read_bytes()
    chunks = list(decode_object(chunked(raw, 7), ctx))
    assert ctx.format_name == "ibm-vpc-flow"
    timestamps = [t for c in chunks for t in c.timestamps]
    assert timestamps == [1591278190000, 1591278159000]
    fields = [f for c in chunks for f in (c.fields or [])]
    assert [f["key"] for f in fields] == [key, key]


def test_decode_object_real_empty_ibm_by_content(ibm_fixtures: Path) -> None:
    ctx = DecodeContext("bucket/00002630", LAST_MODIFIED)
    raw = (ibm_fixtures / "00002630.json").read_bytes()
    assert list(decode_object([raw], ctx)) == []
    assert ctx.format_name == "ibm-vpc-flow"
    assert not ctx.counters


@pytest.mark.parametrize(
    "compress",
    [gzip.compress, bz2.compress, zstandard.ZstdCompressor().compress, lambda d: d],
    ids=["gzip", "bz2", "zstd", "none"],
)
def test_decode_object_detects_after_decompressing(
    compress: Callable[[bytes], bytes], chunked: Chunker
) -> None:
    data = AWS_HEADER + AWS_ROW * 3000
    ctx = DecodeContext("bucket/flows", LAST_MODIFIED)
    chunks = list(decode_object(chunked(compress(data), 7000), ctx))
    assert ctx.format_name == "aws-vpc-flow"
    # Peeking 64 KiB for detection must not lose or repeat data.
    lines = [line for c in chunks for line in c.lines]
    assert lines == [AWS_ROW.decode().rstrip("\n")] * 3000
    assert {t for c in chunks for t in c.timestamps} == {1418530010000}


def test_decode_object_ndjson_over_many_small_chunks(chunked: Chunker) -> None:
    data = b"".join(
        orjson.dumps({"n": i, "ts": 1624654581 + i, "msg": "h\u00e9llo \u2603"}) + b"\n"
        for i in range(20_000)
    )
    ctx = DecodeContext("bucket/app.jsonl.gz", LAST_MODIFIED)
    chunks = list(decode_object(chunked(gzip.compress(data), 7), ctx))
    assert ctx.format_name == "ndjson"
    lines = [orjson.loads(line) for c in chunks for line in c.lines]
    assert [f["n"] for f in lines] == list(range(20_000))
    assert lines[5]["msg"] == "h\u00e9llo \u2603"
    assert chunks[0].timestamps[0] == 1624654581000
    assert chunks[-1].timestamps[-1] == (1624654581 + 19_999) * 1000
    assert chunks[-1].timestamps[-1] == (1624654581 + 19_999) * 1000
    assert len(chunks) < 100  # chunks follow decompressed pieces, not lines


def test_decode_object_explicit_format_skips_detection() -> None:
    ctx = DecodeContext("bucket/events.json", LAST_MODIFIED)
    out = list(decode_object([b'{"a": 1}\n{"a": 2}\n'], ctx, "lines"))
    assert ctx.format_name == "lines"
    assert out[0].lines == ['{"a": 1}', '{"a": 2}']


def test_decode_object_unknown_format_fails_before_reading() -> None:
    def never() -> Iterator[bytes]:
        raise AssertionError("must not read")
        yield b""

    with pytest.raises(ConfigError, match="unknown format 'xml'"):
        decode_object(never(), DecodeContext("k", 0), "xml")


def test_decode_object_truncated_gzip_raises_decode_error() -> None:
    blob = gzip.compress(b"".join(b"line %d\n" % i for i in range(10_000)))
    ctx = DecodeContext("bucket/app.log.gz", LAST_MODIFIED)
    with pytest.raises(DecodeError, match=r"^truncated gzip stream"):
        list(decode_object([blob[: len(blob) // 2]], ctx))


def test_decode_object_pretty_json_document_by_content(chunked: Chunker) -> None:
    doc = {"service": "api", "timestamp": "2021-06-25T20:56:21.250Z", "status": 200}
    ctx = DecodeContext("bucket/doc", LAST_MODIFIED)
    chunks = list(decode_object(chunked(json.dumps(doc, indent=4).encode(), 7), ctx))
    assert ctx.format_name == "json"
    line = '{"service":"api","timestamp":"2021-06-25T20:56:21.250Z","status":200}'
    assert chunks[0].lines == [line]
    assert chunks[0].timestamps == [1624654581250]


def test_resolve_format_returns_choice_and_intact_data() -> None:
    name, data = resolve_format([b'{"Records"', b": []}"], "bucket/trail")
    assert name == "cloudtrail"
    assert b"".join(data) == b'{"Records": []}'
    name, data = resolve_format([b"x"], "bucket/trail", "lines")
    assert (name, list(data)) == ("lines", [b"x"])
