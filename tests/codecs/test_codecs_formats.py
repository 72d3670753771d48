"""Each format on its own: lines, ndjson, json, ibm-vpc-flow, aws-vpc-flow, cloudtrail."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from logferry.codecs.formats import FORMATS, DecodeContext, FormatOptions, get_format
from logferry.errors import ConfigError, DecodeError
from logferry.records import Chunk
from tests.codecs.conftest import decode_merged

Chunker = Callable[[bytes, int], list[bytes]]

LAST_MODIFIED = 1_700_000_000_000
IBM_KEY = (
    "ibm_vpc_flowlogs_v1/account=713c783d9a507a53135fe6793c37cc74/region=us-south/"
    "record-type=all/year=2020/month=06/day=04/hour=13/stream-id=20200604T134239Z/00000911.gz"
)


def _ctx(key: str = "some/key", **options: object) -> DecodeContext:
    return DecodeContext(key, LAST_MODIFIED, FormatOptions(**options))  # type: ignore[arg-type]


def _decode(name: str, chunks: list[bytes], ctx: DecodeContext | None = None) -> Chunk:
    """Decode with ``name`` and merge the chunks, checking they are well-formed."""
    return decode_merged(name, chunks, ctx or _ctx())


# -- registry ---------------------------------------------------------------------------


def test_registry_names() -> None:
    assert sorted(FORMATS) == [
        "api-request",
        "auto",
        "aws-alb",
        "aws-vpc-flow",
        "azure-ad",
        "cloudtrail",
        "cloudwatch-export",
        "csv",
        "gsuite-login",
        "ibm-vpc-flow",
        "json",
        "lines",
        "ndjson",
        "syslog",
    ]
    for name, cls in FORMATS.items():
        assert get_format(name).name == name == cls.name


def test_unknown_format_lists_valid_names() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown format 'xml'; choose one of: api-request, auto, aws-alb"
    ):
        get_format("xml")


# -- lines --------------------------------------------------------------------------------


def test_lines(chunked: Chunker) -> None:
    out = _decode("lines", chunked(b"GET /a 200\r\n\r\nGET /b 404\nno newline", 7))
    assert out.lines == ["GET /a 200", "GET /b 404", "no newline"]
    assert out.timestamps == [LAST_MODIFIED] * 3
    assert out.fields is None


def test_lines_yields_chunk_per_input_chunk_not_per_line() -> None:
    chunks = list(get_format("lines").decode([b"a\nb\nc\n", b"d\ne\n"], _ctx()))
    assert [c.lines for c in chunks] == [["a", "b", "c"], ["d", "e"]]


# -- ndjson -------------------------------------------------------------------------------


def test_ndjson_keeps_original_text_and_the_level(chunked: Chunker) -> None:
    data = (
        b'{"msg": "a",  "timestamp": "2021-06-25T20:56:21Z", "level": "warn"}\r\n'
        b'{"msg":"b","@timestamp":1624654582}\n'
        b'{"msg":"c","time":"2021-06-25T22:56:23.5+02:00","ts":1, "level": 3}\n'
        b'{"msg":"d"}\n'
    )
    ctx = _ctx()
    out = _decode("ndjson", chunked(data, 7), ctx)
    assert out.lines[0] == '{"msg": "a",  "timestamp": "2021-06-25T20:56:21Z", "level": "warn"}'
    assert out.timestamps == [1624654581000, 1624654582000, 1624654583500, LAST_MODIFIED]
    # only a string level is kept: whole parsed objects would cost memory while batches wait
    assert out.fields == [{"level": "warn"}, {}, {}, {}]
    assert ctx.counters["not_json"] == 0


def test_ndjson_bad_lines_are_shipped_and_counted() -> None:
    ctx = _ctx()
    data = b'{"a":1}\nnot json at all\n{"broken":\n[1,2]\n"\xff"\n'
    out = _decode("ndjson", [data], ctx)
    assert out.lines == ['{"a":1}', "not json at all", '{"broken":', "[1,2]", '"\ufffd"']
    assert out.fields == [{}, {}, {}, {}, {}]
    assert out.timestamps == [LAST_MODIFIED] * 5
    assert ctx.counters["not_json"] == 2
    assert ctx.counters["not_object"] == 2


def test_ndjson_custom_timestamp_field_and_unparseable_value() -> None:
    ctx = _ctx(timestamp_fields=("when",))
    data = b'{"when":"2021-06-25T20:56:21Z","timestamp":5}\n{"when":"soon"}\n{"when":""}\n'
    out = _decode("ndjson", [data], ctx)
    assert out.timestamps == [1624654581000, LAST_MODIFIED, LAST_MODIFIED]


# -- json ---------------------------------------------------------------------------------


def test_json_document_is_one_compact_record(chunked: Chunker) -> None:
    doc = {"service": "api", "time": "2021-06-25T20:56:21Z", "items": [1, 2]}
    out = _decode("json", chunked(json.dumps(doc, indent=2).encode(), 7))
    assert out.lines == ['{"service":"api","time":"2021-06-25T20:56:21Z","items":[1,2]}']
    assert out.timestamps == [1624654581000]
    assert out.fields == [doc]


def test_json_top_level_array_is_one_record_per_element() -> None:
    out = _decode("json", [b'[{"a": 1, "ts": 1624654581}, 7]'])
    assert out.lines == ['{"a":1,"ts":1624654581}', "7"]
    assert out.timestamps == [1624654581000, LAST_MODIFIED]
    assert out.fields == [{"a": 1, "ts": 1624654581}, {}]


def test_json_expand_merges_top_level_fields() -> None:
    doc = {
        "host": "h1",
        "time": "2021-06-25T20:56:21Z",
        "events": [{"msg": "x", "time": "2021-06-25T20:56:22Z"}, {"msg": "y", "host": "h2"}, 5],
    }
    out = _decode("json", [orjson.dumps(doc)], _ctx(expand="events"))
    assert out.fields == [
        {"host": "h1", "time": "2021-06-25T20:56:22Z", "msg": "x"},
        {"host": "h2", "time": "2021-06-25T20:56:21Z", "msg": "y"},
        {"host": "h1", "time": "2021-06-25T20:56:21Z", "events": 5},
    ]
    assert out.lines[2] == '{"host":"h1","time":"2021-06-25T20:56:21Z","events":5}'
    assert out.timestamps == [1624654582000, 1624654581000, 1624654581000]


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (b'{"other": []}', "cannot expand field 'events': it is missing"),
        (b'{"events": {"a": 1}}', "cannot expand field 'events': it is a dict, not a list"),
        (b"[1, 2]", "cannot expand field 'events': the document is a JSON list"),
    ],
)
def test_json_expand_errors_name_the_field(doc: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=f"^{reason}"):
        _decode("json", [doc], _ctx(expand="events"))


def test_json_invalid_document() -> None:
    with pytest.raises(DecodeError, match=r"^invalid JSON document: "):
        _decode("json", [b'{"a": 1,'])


def test_json_empty_object_ships_nothing() -> None:
    assert list(get_format("json").decode([b"", b"  \n"], _ctx())) == []


def test_json_document_over_limit() -> None:
    big = orjson.dumps({"data": "x" * 5000})
    with pytest.raises(DecodeError, match=r"^document larger than 1000 bytes"):
        _decode("json", [big[:700], big[700:]], _ctx(max_document_bytes=1000))
    assert len(_decode("json", [big], _ctx(max_document_bytes=len(big))).lines) == 1


# -- ibm-vpc-flow -------------------------------------------------------------------------


def test_ibm_fixture_two_flows_despite_count(ibm_fixtures: Path, chunked: Chunker) -> None:
    raw = gzip.decompress((ibm_fixtures / "00000911.gz").read_bytes())
    out = _decode("ibm-vpc-flow", chunked(raw, 7), _ctx(IBM_KEY))
    assert len(out.lines) == 2  # number_of_flow_logs says 1: the list wins
    # First flow has start_time; the second's is empty, so capture_start_time is used.
    assert out.timestamps == [1591278190000, 1591278159000]
    assert out.fields is not None
    first, second = out.fields
    assert first["start_time"] == "2020-06-04T13:43:10Z"
    assert second["start_time"] == ""
    for record in out.fields:
        assert record["key"] == IBM_KEY
        assert record["capture_start_time"] == "2020-06-04T13:42:39Z"
        assert record["network_interface_id"] == "0717-83c09614-8ba2-4911-bada-66cb04f004f5"
        assert record["initiator_ip"] == "10.240.0.5"
        assert record["bytes_from_initiator"] == 1358
        assert "flow_logs" not in record
        assert "number_of_flow_logs" not in record
    assert [orjson.loads(line) for line in out.lines] == out.fields


def test_ibm_fixture_without_flows_ships_nothing(ibm_fixtures: Path, chunked: Chunker) -> None:
    raw = (ibm_fixtures / "00002630.json").read_bytes()
    ctx = _ctx("my/key")
    assert list(get_format("ibm-vpc-flow").decode(chunked(raw, 7), ctx)) == []


def test_ibm_flow_falls_back_to_top_level_capture_start_then_last_modified() -> None:
    doc = {
        "capture_start_time": "2020-06-04T13:42:39Z",
        "key": "from/the/document",
        "flow_logs": [
            {"start_time": "", "capture_start_time": "2020-06-04T13:42:40Z"},
            {"start_time": ""},
            {"start_time": "bogus"},
        ],
    }
    out = _decode("ibm-vpc-flow", [orjson.dumps(doc)], _ctx("real/key"))
    assert out.timestamps == [1591278160000, 1591278159000, 1591278159000]
    assert out.fields is not None
    assert {f["key"] for f in out.fields} == {"real/key"}  # the object key wins
    no_capture = _decode("ibm-vpc-flow", [b'{"flow_logs": [{"a": 1}]}'])
    assert no_capture.timestamps == [LAST_MODIFIED]
    assert no_capture.lines == ['{"a":1,"key":"some/key"}']


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (b"[1]", "the object is a JSON list"),
        (b"", "the object is empty"),
        (b'{"flow_logs": null}', "no top-level flow_logs list"),
        (b'{"version": "0.0.1"}', "no top-level flow_logs list"),
    ],
)
def test_ibm_not_a_flow_log(doc: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=f"^not an IBM VPC flow log: {reason}"):
        _decode("ibm-vpc-flow", [doc])


# -- aws-vpc-flow -------------------------------------------------------------------------

AWS_V2 = (
    b"version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes "
    b"start end action log-status\n"
    b"2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 "
    b"1418530010 1418530070 ACCEPT OK\n"
    b"2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA\n"
    b"2 123456789010 eni-11111111111111111 - - - - - - - - - - SKIPDATA\n"
)


def test_aws_vpc_flow_with_header(chunked: Chunker) -> None:
    out = _decode("aws-vpc-flow", chunked(AWS_V2, 7))
    assert len(out.lines) == 3  # the header is not a record; NODATA/SKIPDATA are
    assert out.lines[0].startswith("2 123456789010 eni-1235b8ca123456789 172.31.16.139")
    assert out.timestamps == [1418530010000, 1431280876000, LAST_MODIFIED]
    assert out.fields is not None
    assert out.fields[0]["srcaddr"] == "172.31.16.139"
    assert out.fields[0]["bytes"] == "4249"
    assert out.fields[0]["action"] == "ACCEPT"
    assert out.fields[1]["srcaddr"] == "-"
    assert out.fields[1]["log-status"] == "NODATA"
    assert out.fields[2]["log-status"] == "SKIPDATA"


def test_aws_vpc_flow_custom_field_order() -> None:
    data = (
        b"start interface-id srcaddr flow-direction pkt-src-aws-service\n"
        b"1700000000 eni-0a 10.0.0.1 ingress S3\n"
    )
    out = _decode("aws-vpc-flow", [data])
    assert out.fields == [
        {
            "start": "1700000000",
            "interface-id": "eni-0a",
            "srcaddr": "10.0.0.1",
            "flow-direction": "ingress",
            "pkt-src-aws-service": "S3",
        }
    ]
    assert out.timestamps == [1700000000000]


def test_aws_vpc_flow_without_header_uses_default_fields() -> None:
    rows = AWS_V2.split(b"\n", 1)[1]
    ctx = _ctx()
    out = _decode("aws-vpc-flow", [rows], ctx)
    assert len(out.lines) == 3
    assert out.fields is not None
    assert out.fields[0]["interface-id"] == "eni-1235b8ca123456789"
    assert out.fields[0]["end"] == "1418530070"
    assert out.timestamps[0] == 1418530010000
    assert ctx.counters["no_header"] == 1


def test_aws_vpc_flow_without_start_field_uses_last_modified() -> None:
    ctx = _ctx()
    out = _decode("aws-vpc-flow", [b"srcaddr dstaddr\n10.0.0.1 10.0.0.2\n10.0.0.3\n"], ctx)
    assert out.timestamps == [LAST_MODIFIED, LAST_MODIFIED]
    assert out.fields == [{"srcaddr": "10.0.0.1", "dstaddr": "10.0.0.2"}, {"srcaddr": "10.0.0.3"}]
    assert ctx.counters["field_count_mismatch"] == 1


def test_aws_vpc_flow_header_only_ships_nothing() -> None:
    assert _decode("aws-vpc-flow", [AWS_V2.split(b"\n", 1)[0] + b"\n"]).lines == []


# -- cloudtrail ---------------------------------------------------------------------------


def test_cloudtrail(chunked: Chunker) -> None:
    trail = {
        "Records": [
            {
                "eventVersion": "1.08",
                "eventTime": "2021-06-25T20:56:21Z",
                "eventSource": "s3.amazonaws.com",
                "eventName": "GetObject",
            },
            {"eventName": "NoTime"},
        ]
    }
    out = _decode("cloudtrail", chunked(json.dumps(trail, indent=1).encode(), 7))
    assert out.lines == [
        '{"eventVersion":"1.08","eventTime":"2021-06-25T20:56:21Z",'
        '"eventSource":"s3.amazonaws.com","eventName":"GetObject"}',
        '{"eventName":"NoTime"}',
    ]
    assert out.timestamps == [1624654581000, LAST_MODIFIED]
    assert out.fields == trail["Records"]


def test_cloudtrail_many_records_come_in_several_chunks() -> None:
    trail = {"Records": [{"eventTime": "2021-06-25T20:56:21Z", "n": i} for i in range(12_000)]}
    chunks = list(get_format("cloudtrail").decode([orjson.dumps(trail)], _ctx()))
    assert len(chunks) > 1
    assert sum(len(c) for c in chunks) == 12_000
    assert chunks[-1].fields is not None
    assert chunks[-1].fields[-1]["n"] == 11_999


def test_cloudtrail_without_records_list() -> None:
    with pytest.raises(DecodeError, match=r"^not a CloudTrail log file: no top-level Records"):
        _decode("cloudtrail", [b'{"digestStartTime": "2021-06-25T20:56:21Z"}'])
