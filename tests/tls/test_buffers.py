"""SSL_MODE_RELEASE_BUFFERS on the gateway's contexts (``mssgw.tls.buffers``)."""

from __future__ import annotations

import logging
import socket
import ssl
import threading

import pytest

from mssgw.tls import buffers
from mssgw.tls.context import client_context, server_context
from tests.tls.pki import DevPki

SSL_CTRL_CLEAR_MODE = 78  # openssl/ssl.h


def clear_release_buffers(ctx: ssl.SSLContext) -> None:
    """Undo CPython's default, so that setting the bit is observable."""
    lib = buffers._libssl()
    lib.SSL_CTX_ctrl(
        buffers.ssl_ctx_pointer(ctx), SSL_CTRL_CLEAR_MODE, buffers.SSL_MODE_RELEASE_BUFFERS, None
    )
    assert buffers.mode(ctx) is not None
    assert not buffers.mode(ctx) & buffers.SSL_MODE_RELEASE_BUFFERS  # type: ignore[operator]


def test_gateway_contexts_release_buffers(dev_pki: DevPki) -> None:
    op = dev_pki.op(1)
    anchors = dev_pki.manifest["anchors"]
    contexts = [
        server_context(op["certificate"], op["key"], anchors, client_cert=mode)  # type: ignore[arg-type]
        for mode in ("required", "optional", "none")
    ]
    contexts.append(client_context(op["certificate"], op["key"], anchors))
    for ctx in contexts:
        mode = buffers.mode(ctx)
        assert mode is not None
        assert mode & buffers.SSL_MODE_RELEASE_BUFFERS


def test_sets_the_bit_when_missing() -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    clear_release_buffers(ctx)
    before = buffers.mode(ctx)
    assert buffers.release_buffers(ctx)
    after = buffers.mode(ctx)
    assert after == (before or 0) | buffers.SSL_MODE_RELEASE_BUFFERS


def test_connection_works_with_released_buffers(dev_pki: DevPki) -> None:
    """Records of every size go both ways while the buffers come and go."""
    op = dev_pki.op(1)
    server = server_context(
        op["certificate"], op["key"], dev_pki.manifest["anchors"], client_cert="none"
    )
    clear_release_buffers(server)
    assert buffers.release_buffers(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    payloads = [b"a", b"b" * 1000, b"c" * 16384, b"d" * 100_000, b"e"]
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def echo() -> None:
        conn, _ = listener.accept()
        with server.wrap_socket(conn, server_side=True) as tls:
            tls.settimeout(10)
            for size in map(len, payloads):
                data = b""
                while len(data) < size:
                    data += tls.recv(size - len(data))
                received.append(data)
                tls.sendall(data[::-1])

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    with (
        socket.create_connection(listener.getsockname(), timeout=10) as raw,
        client.wrap_socket(raw) as tls,
    ):
        assert tls.version() == "TLSv1.2"
        for payload in payloads:
            tls.sendall(payload)
            answer = b""
            while len(answer) < len(payload):
                answer += tls.recv(len(payload) - len(answer))
            assert answer == payload[::-1]
    thread.join(10)
    listener.close()
    assert received == payloads


class _Context(ssl.SSLContext):
    pass


@pytest.mark.parametrize("obj", [object(), _Context(ssl.PROTOCOL_TLS_SERVER)])
def test_refuses_other_objects(obj: object, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="mssgw.tls.buffers"):
        assert not buffers.release_buffers(obj)  # type: ignore[arg-type]
        assert buffers.mode(obj) is None  # type: ignore[arg-type]
    assert "record buffers stay allocated" in caplog.text


def test_pointer_that_does_not_match_is_not_written(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A pointer to another SSL_CTX (options differ) fails the cross-check:
    neither context is touched."""
    ours = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other.options |= ssl.OP_NO_TICKET
    clear_release_buffers(ours)
    clear_release_buffers(other)
    other_pointer = buffers.ssl_ctx_pointer(other)
    monkeypatch.setattr(buffers, "ssl_ctx_pointer", lambda ctx: other_pointer)
    with caplog.at_level(logging.DEBUG, logger="mssgw.tls.buffers"):
        assert not buffers.release_buffers(ours)
    assert "options cross-check failed" in caplog.text
    monkeypatch.undo()
    for ctx in (ours, other):
        assert not buffers.mode(ctx) & buffers.SSL_MODE_RELEASE_BUFFERS  # type: ignore[operator]
