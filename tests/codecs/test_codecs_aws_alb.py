"""aws-alb: Application (and Classic) Load Balancer access logs, samples from the AWS docs."""

from __future__ import annotations

from collections.abc import Callable

from logferry.codecs.formats import DecodeContext
from tests.codecs.conftest import decode_merged, utc_ms

Chunker = Callable[[bytes, int], list[bytes]]

LAST_MODIFIED = 1_700_000_000_000
TG = "arn:aws:elasticloadbalancing:us-east-2:123456789012:targetgroup/my-targets/73e2d6bc24d8a067"
HTTP = (
    "http 2018-07-02T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 "
    "192.168.131.39:2817 10.0.0.1:80 0.000 0.001 0.000 200 200 34 366 "
    f'"GET http://www.example.com:80/ HTTP/1.1" "curl/7.46.0" - - {TG} '
    '"Root=1-58337262-36d228ad5d99923122bbe354" "-" "-" 0 2018-07-02T22:22:48.364000Z '
    '"forward" "-" "-" "10.0.0.1:80" "200" "-" "-"'
)
HTTPS = (
    "https 2018-07-02T22:23:01.5Z app/my-loadbalancer/50dc6c495c0c9188 "
    "192.168.131.39:2817 10.0.0.1:80 0.086 0.048 0.037 200 200 0 57 "
    '"GET https://www.example.com:443/ HTTP/1.1" "Mozilla/5.0 (X11; Linux x86_64) \\"quoted\\"" '
    f"ECDHE-RSA-AES128-GCM-SHA256 TLSv1.2 {TG} "
    '"Root=1-58337281-1d84f3d73c47ec4e58577259" "www.example.com" '
    '"arn:aws:acm:us-east-2:123456789012:certificate/12345678-1234-1234-1234-123456789012" '
    '1 2018-07-02T22:22:48.364000Z "authenticate,forward" "-" "-" "10.0.0.1:80" "200" '
    '"-" "-" TID_1234abcd "-" "-"'  # newer trailing fields
)
LAMBDA_502 = (
    "h2 2018-11-30T22:23:00.186641Z app/my-loadbalancer/50dc6c495c0c9188 "
    "192.168.131.39:2817 - 0.000 0.001 0.000 502 - 34 366 "
    f'"GET https://www.example.com:443/ HTTP/2.0" "curl/7.46.0" - - {TG} '
    '"Root=1-58337364-23a8c76965a2ef7629b185e3" "-" "-" 0 2018-11-30T22:22:48.364000Z '
    '"forward" "-" "LambdaInvalidResponse" "-" "-" "-" "-"'
)
CLASSIC = (
    "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 "
    '0.000073 0.001048 0.000057 200 200 0 29 "GET http://www.example.com:80/ HTTP/1.1" '
    '"curl/7.38.0" - -'
)
CLASSIC_TCP = (
    "2015-05-13T23:39:43.945958Z my-loadbalancer 192.168.131.39:2817 10.0.0.1:80 "
    '0.001069 0.000028 0.000041 - - 82 305 "- - - " "-" - -'
)


def _ctx() -> DecodeContext:
    return DecodeContext("AWSLogs/123/elasticloadbalancing/x.log.gz", LAST_MODIFIED)


def test_alb_lines_timestamps_and_fields(chunked: Chunker) -> None:
    data = "\n".join([HTTP, HTTPS, LAMBDA_502]).encode() + b"\n"
    ctx = _ctx()
    out = decode_merged("aws-alb", chunked(data, 9), ctx)
    assert out.lines == [HTTP, HTTPS, LAMBDA_502]
    assert out.timestamps == [
        utc_ms("2018-07-02T22:23:00.186+00:00"),
        utc_ms("2018-07-02T22:23:01.500+00:00"),
        utc_ms("2018-11-30T22:23:00.186+00:00"),
    ]
    assert out.fields == [
        {
            "type": "http",
            "elb": "app/my-loadbalancer/50dc6c495c0c9188",
            "client": "192.168.131.39:2817",
            "target": "10.0.0.1:80",
            "elb_status_code": "200",
            "target_status_code": "200",
        },
        {
            "type": "https",
            "elb": "app/my-loadbalancer/50dc6c495c0c9188",
            "client": "192.168.131.39:2817",
            "target": "10.0.0.1:80",
            "elb_status_code": "200",
            "target_status_code": "200",
        },
        {
            "type": "h2",
            "elb": "app/my-loadbalancer/50dc6c495c0c9188",
            "client": "192.168.131.39:2817",
            "target": "-",
            "elb_status_code": "502",
            "target_status_code": "-",
        },
    ]
    assert not ctx.counters


def test_classic_load_balancer_lines_have_no_type() -> None:
    out = decode_merged("aws-alb", [f"{CLASSIC}\n{CLASSIC_TCP}\n".encode()], _ctx())
    assert out.timestamps == [utc_ms("2015-05-13T23:39:43.945+00:00")] * 2
    assert out.fields is not None
    assert out.fields[0] == {
        "elb": "my-loadbalancer",
        "client": "192.168.131.39:2817",
        "target": "10.0.0.1:80",
        "elb_status_code": "200",
        "target_status_code": "200",
    }
    assert out.fields[1]["elb_status_code"] == "-"


def test_malformed_lines_are_shipped_raw_and_counted() -> None:
    bad = [
        HTTP[:60],  # cut off
        "not an access log line",
        HTTP.replace("2018-07-02T22:23:00", "2018-02-30T22:23:00"),  # no such day
        HTTP.replace(" 200 200 34 366 ", " 200 200 "),  # fields missing
    ]
    ctx = _ctx()
    out = decode_merged("aws-alb", ["\n".join([*bad, HTTP]).encode()], ctx)
    assert out.lines == [*bad, HTTP]
    assert out.timestamps[:4] == [LAST_MODIFIED] * 4
    assert out.timestamps[4] == utc_ms("2018-07-02T22:23:00.186+00:00")
    assert out.fields is not None
    assert out.fields[:4] == [{}] * 4
    assert ctx.counters["malformed"] == 4
