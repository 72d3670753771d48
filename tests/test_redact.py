"""Secrets stay out of messages: the redaction helper, and every URL error that uses it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from logferry.config import parse_pipeline
from logferry.errors import ConfigError
from logferry.pipeline import Pipeline, check_pipeline
from logferry.redact import redact, redact_url, safe_url
from logferry.sinks import check_sink, open_sink
from logferry.sources import open_source, open_stream_source

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@host:8443/p?q=1", "https://user:***@host:8443/p?q=1"),
        ("https://TOKEN@github.com/x", "https://***@github.com/x"),
        ("http://key:@h/", "http://***@h/"),
        ("http://u:p/w@127.0.0.1:1/b", "http://u:***@127.0.0.1:1/b"),
        ("mezmo+https://h/x?apikey=A&app=a", "mezmo+https://h/x?apikey=***&app=a"),
        ("logdna:eu-de?ingestion_key=K", "logdna:eu-de?ingestion_key=***"),
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=C&X-Amz-Signature=S&x=1#f",
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&x=1#f",
        ),
        ("s3://b/p?access_key=A&token=T", "s3://b/p?access_key=***&token=***"),
        ("http://h/@scope/pkg", "http://h/@scope/pkg"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("s3://bucket/prefix", "s3://bucket/prefix"),
        ("/var/log/app", "/var/log/app"),
        ("-", "-"),
        ("http://h:bad-port/x", "http://h:bad-port/x"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_finds_urls_in_text() -> None:
    text = (
        'Could not connect to the endpoint URL: "http://u:pw@127.0.0.1:1/b?token=T&list-type=2"'
        " (also 'mezmo:eu-de?key=K') - done."
    )
    assert redact(text) == (
        'Could not connect to the endpoint URL: "http://u:***@127.0.0.1:1/b?token=***&list-type=2"'
        " (also 'mezmo:eu-de?key=***') - done."
    )
    assert redact("no url: just text?a=b") == "no url: just text?a=b"


def test_safe_url_is_the_http_sinks_helper() -> None:
    from logferry.sinks import http

    assert http.safe_url is safe_url
    assert safe_url("https://u:p@h:8443/a/b?token=x#f") == "https://h:8443/a/b"
    assert safe_url("http://u:p@[::1") == "http://u:***@[::1"


# -- errors built from URLs -------------------------------------------------------------

BAD_SINKS = [
    f"kafka://user:{SECRET}@broker/topic?token={SECRET}",
    f"https://u:{SECRET}@example.com/",
    f"duckdb://u:{SECRET}@host/x.db",
    f"duckdb:///x.db?password={SECRET}",
    f"file://u:{SECRET}@host/dir",
    f"stdout://u:{SECRET}@x",
    f"mezmo+ftp://u:{SECRET}@host/x",
    f"mezmo+https://u:{SECRET}@host/x",
    f"mezmo+https://host/x?apikey={SECRET}",
    f"mezmo+https://host:{SECRET}/x",
    f"influxdb+http://u:{SECRET}@host/db",
    f"influxdb2+https://host/org/bucket?token={SECRET}",
]
BAD_SOURCES = [
    f"kafka://user:{SECRET}@broker/topic?token={SECRET}",
    f"s3://AKIA:{SECRET}@bucket/p",
    f"file://u:{SECRET}@host/dir",
    f"tail://u:{SECRET}@host/*.log",
    f"cloudwatch://grp?token={SECRET}",
]


@pytest.mark.parametrize("url", BAD_SINKS)
def test_bad_sink_urls_keep_their_secrets(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGDNA_INGESTION_KEY", "k")
    for call in (check_sink, open_sink):
        with pytest.raises(ConfigError) as err:
            call(url)
        assert SECRET not in str(err.value)


@pytest.mark.parametrize("url", BAD_SOURCES)
def test_bad_source_urls_keep_their_secrets(url: str) -> None:
    opener: Callable[..., Any] = (
        open_stream_source if url.startswith(("tail", "cloud")) else open_source
    )
    with pytest.raises(ConfigError) as err:
        opener(url)
    assert SECRET not in str(err.value)
    with pytest.raises(ConfigError) as err:
        open_source(url) if opener is open_stream_source else open_stream_source(url)
    assert SECRET not in str(err.value)


def _pipeline(text: str, **env: str) -> Any:
    return parse_pipeline(textwrap.dedent(text), "p.yaml", env=env)


def test_pipeline_secrets_from_env_stay_out_of_errors(tmp_path: Path) -> None:
    env = {"PW": SECRET, "TOK": SECRET, "DIR": str(tmp_path)}
    bad_sink = _pipeline(
        """
        sinks:
          out: {url: "kafka+https://user:${PW}@broker/x?token=${TOK}"}
        sources:
          a: {url: "${DIR}", sinks: [out]}
        """,
        **env,
    )
    with pytest.raises(ConfigError) as err:
        check_pipeline(bad_sink)
    assert "sinks.out.url: unknown sink" in str(err.value) and SECRET not in str(err.value)
    with pytest.raises(ConfigError) as err:
        Pipeline(bad_sink).close()
    assert SECRET not in str(err.value)

    bad_source = _pipeline(
        """
        sinks:
          out: {url: "${DIR}/out"}
        sources:
          a: {url: "nats://user:${PW}@host/subject?token=${TOK}", sinks: [out]}
        """,
        **env,
    )
    with pytest.raises(ConfigError) as err:
        check_pipeline(bad_source)
    assert "sources.a.url: unknown source" in str(err.value) and SECRET not in str(err.value)

    with pytest.raises(ConfigError) as err:
        _pipeline(
            """
            sources:
              a: {url: "cos://bucket/p?token=${TOK}", type: s3, sinks: [out]}
            sinks:
              out: {url: "-"}
            """,
            **env,
        )
    assert "does not match the URL" in str(err.value) and SECRET not in str(err.value)


def test_s3_listing_errors_hide_endpoint_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.config

    real = botocore.config.Config

    def one_attempt(**kwargs: Any) -> Any:  # port 1 refuses at once; don't back off 10 times
        return real(**{**kwargs, "retries": {"mode": "standard", "total_max_attempts": 1}})

    monkeypatch.setattr(botocore.config, "Config", one_attempt)
    source = open_source("s3://bucket/logs/", endpoint_url=f"http://u:{SECRET}@127.0.0.1:1")
    try:
        with pytest.raises(ConfigError) as err:
            list(source.list_pages())
    finally:
        source.close()
    message = str(err.value)
    assert "cannot list s3://bucket/logs/" in message and "127.0.0.1:1" in message
    assert SECRET not in message

    with pytest.raises(ConfigError) as err:
        open_source("s3://bucket", endpoint_url=f"http://u:{SECRET}@[::1")
    assert SECRET not in str(err.value)
