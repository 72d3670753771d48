"""The TLS context of an HTTP sink is built at its first TLS connection, and still verifies."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from logferry.errors import FatalSinkError, SinkError
from logferry.sinks.http import HttpSender, _DeferredTLS
from logferry.testing.mezmo_server import MezmoServer


def _deferred(sender: HttpSender) -> _DeferredTLS:
    pool = sender._client._transport._pool  # type: ignore[attr-defined]
    context = pool._ssl_context
    assert isinstance(context, _DeferredTLS)
    return context


def test_plain_http_never_reads_the_ca_bundle() -> None:
    with MezmoServer("k" * 32, store=False, validate=False) as server:
        sender = HttpSender(name="t")
        try:
            with pytest.raises(FatalSinkError, match="401"):  # an answer: the request went out
                sender.post(server.url.removeprefix("mezmo+"), b"[]")
            assert _deferred(sender)._context is None
        finally:
            sender.close()


def test_a_named_ca_file_is_read_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    with pytest.raises(OSError):  # a bad path fails when the sink opens, as before
        HttpSender(name="t")


@pytest.fixture()
def tls_port(tmp_path: Path) -> Iterator[int]:
    """A TLS listener with a self-signed certificate (no CA the client trusts)."""
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            with conn, context.wrap_socket(conn, server_side=True):
                pass
        except (OSError, ssl.SSLError):
            pass  # the client refuses the certificate: the handshake fails here too

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    listener.close()
    thread.join(5)


def test_https_builds_the_default_context_and_verifies(tls_port: int) -> None:
    sender = HttpSender(name="t", timeout=5)
    try:
        with pytest.raises(FatalSinkError, match=r"(?i)certificate"):
            sender.post(f"https://localhost:{tls_port}/", b"[]")
        assert isinstance(_deferred(sender)._context, ssl.SSLContext)
    finally:
        sender.close()


def test_a_ca_file_that_is_not_pem_fails_the_request(
    tls_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    monkeypatch.setenv("SSL_CERT_FILE", str(bad))
    sender = HttpSender(name="t", timeout=5)
    try:
        with pytest.raises(SinkError, match="cannot load CA certificates"):
            sender.post(f"https://localhost:{tls_port}/", b"[]")
    finally:
        sender.close()


def test_httpx_0_27_gets_verify_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx 0.27 (allowed by the requirements) takes any verify object but an SSLContext for
    # a CA bundle path: a deferred context would fail every sink when it opens.
    import httpx

    from logferry.sinks import http

    monkeypatch.setattr(httpx, "__version__", "0.27.2")
    assert http._tls_context(True) is True
    monkeypatch.setattr(httpx, "__version__", "0.28.1")
    assert isinstance(http._tls_context(True), _DeferredTLS)
