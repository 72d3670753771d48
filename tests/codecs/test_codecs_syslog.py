"""syslog: RFC 3164 with year inference and a zone, RFC 5424, and what is neither."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from logferry.codecs.formats import DecodeContext, FormatOptions
from logferry.errors import ConfigError
from tests.codecs.conftest import decode_merged, utc_ms

Chunker = Callable[[bytes, int], list[bytes]]


def _ctx(last_modified: str = "2021-06-26T00:00:00+00:00", **options: object) -> DecodeContext:
    return DecodeContext(
        "var/log/syslog.gz",
        utc_ms(last_modified),
        FormatOptions(**options),  # type: ignore[arg-type]
    )


def test_rfc3164_lines_fields_and_timestamps(chunked: Chunker) -> None:
    data = (
        b"<34>Jun 25 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8\n"
        b"Jun 25 20:56:21 web-1 sshd[4242]: Accepted publickey for deploy from 10.0.0.5 port "
        b"50022 ssh2\r\n"
        b"<22>Jun  5 04:02:01 mail postfix/smtpd[1234]: connect from unknown[203.0.113.9]\n"
        b"<6>Jun 25 20:56:21.250 web-1 kernel: [12345.678] eth0: link up\n"
        b"<46>Jun 25 20:20:00 web-1 -- MARK --\n"
    )
    ctx = _ctx()
    out = decode_merged("syslog", chunked(data, 7), ctx)
    assert out.lines[0].startswith("<34>Jun 25 22:14:15 mymachine su: ")  # shipped as written
    assert out.lines[1].endswith("ssh2")
    assert out.timestamps == [
        utc_ms("2021-06-25T22:14:15+00:00"),
        utc_ms("2021-06-25T20:56:21+00:00"),
        utc_ms("2021-06-05T04:02:01+00:00"),
        utc_ms("2021-06-25T20:56:21.250+00:00"),
        utc_ms("2021-06-25T20:20:00+00:00"),
    ]
    assert out.fields == [
        {"host": "mymachine", "app": "su", "level": "crit"},
        {"host": "web-1", "app": "sshd"},  # no PRI: no severity to tell
        {"host": "mail", "app": "postfix/smtpd", "level": "info"},
        {"host": "web-1", "app": "kernel", "level": "info"},
        {"host": "web-1", "level": "info"},
    ]
    assert not ctx.counters


def test_rfc3164_year_comes_from_last_modified_and_steps_back_over_new_year() -> None:
    data = (
        b"<13>Dec 31 23:59:58 h app: old year\n"
        b"<13>Jan  1 00:05:00 h app: new year\n"
        b"<13>Jan  2 00:05:00 h app: within a day of LastModified (clock skew)\n"
        b"<13>Jan  3 00:30:00 h app: more than a day ahead: last year's\n"
    )
    out = decode_merged("syslog", [data], _ctx("2022-01-01T00:10:00+00:00"))
    assert out.timestamps == [
        utc_ms("2021-12-31T23:59:58+00:00"),
        utc_ms("2022-01-01T00:05:00+00:00"),
        utc_ms("2022-01-02T00:05:00+00:00"),
        utc_ms("2021-01-03T00:30:00+00:00"),
    ]


def test_rfc3164_feb_29_belongs_to_the_last_leap_year() -> None:
    out = decode_merged(
        "syslog", [b"Feb 29 12:00:00 h app: x\n"], _ctx("2025-03-01T00:00:00+00:00")
    )
    assert out.timestamps == [utc_ms("2024-02-29T12:00:00+00:00")]


def test_rfc3164_timezone_option() -> None:
    data = b"<30>Jun 25 20:56:21 h app: summer\n<30>Dec  1 08:00:00 h app: winter\n"
    ctx = _ctx("2021-12-02T00:00:00+00:00", syslog_timezone="America/New_York")
    out = decode_merged("syslog", [data], ctx)
    assert out.timestamps == [
        utc_ms("2021-06-25T20:56:21-04:00"),  # EDT
        utc_ms("2021-12-01T08:00:00-05:00"),  # EST
    ]


def test_rfc3164_year_is_the_zones_year_at_last_modified() -> None:
    # LastModified is already 2022 in UTC but still 2021 in New York.
    ctx = _ctx("2022-01-01T02:00:00+00:00", syslog_timezone="America/New_York")
    out = decode_merged("syslog", [b"Dec 31 20:00:00 h app: x\n"], ctx)
    assert out.timestamps == [utc_ms("2021-12-31T20:00:00-05:00")]


def test_unknown_timezone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown syslog_timezone 'Mars/Olympus'"):
        decode_merged("syslog", [b"Jun 25 20:56:21 h a: x\n"], _ctx(syslog_timezone="Mars/Olympus"))


def test_rfc5424_examples_from_the_rfc() -> None:
    data = (
        "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \ufeff'su root' "
        "failed for lonvick on /dev/pts/8\n"
        "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make "
        "the do-nuts.\n"
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 "
        'iut="3" eventSource="Application" eventID="1011"] An application event log entry...\n'
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 "
        'iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]\n'
        "<15>1 - - - - - -\n"
    ).encode()
    ctx = _ctx()
    out = decode_merged("syslog", [data], ctx)
    assert out.timestamps == [
        utc_ms("2003-10-11T22:14:15.003+00:00"),
        utc_ms("2003-08-24T12:14:15.000+00:00"),
        utc_ms("2003-10-11T22:14:15.003+00:00"),
        utc_ms("2003-10-11T22:14:15.003+00:00"),
        ctx.last_modified_ms,  # NILVALUE timestamp
    ]
    assert out.fields == [
        {"host": "mymachine.example.com", "app": "su", "level": "crit"},
        {"host": "192.0.2.1", "app": "myproc", "level": "notice"},
        {"host": "mymachine.example.com", "app": "evntslog", "level": "notice"},
        {"host": "mymachine.example.com", "app": "evntslog", "level": "notice"},
        {"level": "debug"},
    ]
    assert not ctx.counters


def test_rsyslog_high_precision_timestamps() -> None:
    data = b"2024-01-02T03:04:05.123456+01:00 web-1 nginx[77]: started\n"
    out = decode_merged("syslog", [data], _ctx())
    assert out.timestamps == [utc_ms("2024-01-02T02:04:05.123+00:00")]
    assert out.fields == [{"host": "web-1", "app": "nginx"}]


@pytest.mark.parametrize(
    ("pri", "level"),
    [("0", "emerg"), ("9", "alert"), ("11", "err"), ("4", "warning"), ("191", "debug")],
)
def test_severity_names(pri: str, level: str) -> None:
    out = decode_merged("syslog", [f"<{pri}>Jun 25 20:56:21 h app: x\n".encode()], _ctx())
    assert out.fields == [{"host": "h", "app": "app", "level": level}]


def test_malformed_lines_are_shipped_raw_and_counted() -> None:
    data = (
        b"<13>Jun 25 20:56:21 ok app: fine\n"
        b"just some text\n"
        b"<999>Jun 25 20:56:21 h app: PRI out of range\n"
        b"Feb 30 10:00:00 h app: no such day\n"
        b"<34>Jun 25 25:14:15 h app: no such hour\n"
        b"<34>1 not-a-time h app - - - x\n"
        b"<34>1 2003-10-11T22:14:15.003Z h app - ID47 missing structured data\n"
    )
    ctx = _ctx()
    out = decode_merged("syslog", [data], ctx)
    assert out.lines == data.decode().splitlines()
    assert out.timestamps[1:] == [ctx.last_modified_ms] * 6
    assert out.fields is not None
    assert out.fields[1:] == [{}] * 6
    assert ctx.counters["malformed"] == 6


def test_fields_dicts_are_shared_per_host_app_and_priority() -> None:
    data = b"<13>Jun 25 20:56:21 h app: a\n<13>Jun 25 20:56:22 h app: b\n"
    out = decode_merged("syslog", [data], _ctx())
    assert out.fields is not None
    assert out.fields[0] is out.fields[1]
