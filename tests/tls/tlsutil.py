"""Real TLS handshakes on 127.0.0.1 (ephemeral ports) for the tests."""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field

from cryptography import x509

from mssgw.tls.context import peer_chain


@dataclass
class Handshake:
    """Both sides' view of one connection attempt."""

    server_error: str = ""
    client_error: str = ""
    version: str = ""
    cipher: str = ""
    client_chain: list[x509.Certificate] = field(default_factory=list)
    server_chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.server_error and not self.client_error


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> Handshake:
    """Run one handshake and a 2-byte exchange; never raises for TLS errors."""
    result = Handshake()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        conn.settimeout(10)
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                result.client_chain = peer_chain(tls)
                result.version = tls.version() or ""
                result.cipher = (tls.cipher() or ("",))[0]
                tls.sendall(b"ok")
                tls.recv(1)
        except (ssl.SSLError, OSError) as exc:
            result.server_error = str(exc)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            result.server_chain = peer_chain(tls)
            if tls.recv(2) != b"ok":
                result.client_error = "no data"
            tls.sendall(b"x")
    except (ssl.SSLError, OSError) as exc:
        result.client_error = str(exc)
    thread.join(10)
    listener.close()
    return result


def raw_client(
    *,
    minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    maximum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
    ciphers: str | None = None,
    cert: str | None = None,
    key: str | None = None,
) -> ssl.SSLContext:
    """A permissive client (no verification) to probe what a server accepts."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = minimum
    ctx.maximum_version = maximum
    if ciphers:
        ctx.set_ciphers(ciphers)
    if cert and key:
        ctx.load_cert_chain(cert, key)
    return ctx
