"""TLS profiles and client-certificate modes over real sockets (TLS-1…3)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from mssgw.tls.context import TlsConfigError, client_context, server_context, verified_peer
from mssgw.tls.profiles import MSSANTE_CIPHERS
from tests.tls.pki import DevPki
from tests.tls.tlsutil import handshake, raw_client


def server(
    dev_pki: DevPki, *, profile: str = "mssante", client_cert: str = "none"
) -> ssl.SSLContext:
    return dev_pki.server_ctx(profile=profile, client_cert=client_cert)


def pair(dev_pki: DevPki, which: str) -> tuple[str | None, str | None]:
    m = dev_pki.manifest
    if which == "none":
        return None, None
    if which.startswith("op"):
        op = dev_pki.op(int(which[2:]))
        return op["certificate"], op["key"]
    if which in ("professional", "structure"):
        return m[which]["certificate"], m[which]["key"]
    return m["bad"][which]["certificate"], m["bad"][which]["key"]


# ---------------------------------------------------------------- profile mssante


@pytest.mark.parametrize("suite", MSSANTE_CIPHERS)
def test_each_listed_suite_negotiates(dev_pki: DevPki, suite: str) -> None:
    result = handshake(server(dev_pki), raw_client(maximum=ssl.TLSVersion.TLSv1_2, ciphers=suite))
    assert result.ok, result
    assert (result.version, result.cipher) == ("TLSv1.2", suite)


@pytest.mark.parametrize(
    "suite",
    [
        "AES128-GCM-SHA256",  # RSA key exchange, no forward secrecy
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-RSA-AES128-SHA",  # SHA-1 MAC
        "DHE-RSA-AES256-GCM-SHA384",
    ],
)
def test_unlisted_suites_refused_at_handshake(dev_pki: DevPki, suite: str) -> None:
    result = handshake(server(dev_pki), raw_client(maximum=ssl.TLSVersion.TLSv1_2, ciphers=suite))
    assert not result.ok
    assert "handshake failure" in result.client_error or "no shared cipher" in result.server_error


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_tls11_refused(dev_pki: DevPki) -> None:
    client = raw_client(
        minimum=ssl.TLSVersion.TLSv1_1, maximum=ssl.TLSVersion.TLSv1_1, ciphers="ALL:@SECLEVEL=0"
    )
    result = handshake(server(dev_pki), client)
    assert not result.ok
    # The client did offer TLS 1.1; the server answered with a protocol_version alert.
    assert "alert protocol version" in result.client_error
    assert "unsupported protocol" in result.server_error


def test_tls13_refused_under_mssante(dev_pki: DevPki) -> None:
    client = raw_client(minimum=ssl.TLSVersion.TLSv1_3, maximum=ssl.TLSVersion.TLSv1_3)
    assert not handshake(server(dev_pki), client).ok


def test_tls13_with_modern(dev_pki: DevPki) -> None:
    result = handshake(server(dev_pki, profile="modern"), raw_client())
    assert result.ok and result.version == "TLSv1.3"
    tls12 = handshake(
        server(dev_pki, profile="modern"),
        raw_client(maximum=ssl.TLSVersion.TLSv1_2, ciphers="AES128-GCM-SHA256"),
    )
    assert not tls12.ok  # the TLS 1.2 suites stay restricted under modern


def test_no_system_trust_store(dev_pki: DevPki) -> None:
    ctx = server(dev_pki, client_cert="required")
    subjects = sorted(c["subject"][-1][0][1] for c in ctx.get_ca_certs())  # type: ignore[index]
    assert subjects == ["AC MSSGW DEVELOPPEMENT ORGANISATIONS", "AC RACINE MSSGW DEVELOPPEMENT"]
    assert (
        client_context(None, None, dev_pki.manifest["anchors"]).cert_store_stats()["x509_ca"] == 2
    )


def test_missing_anchors_refused(dev_pki: DevPki) -> None:
    op = dev_pki.op(1)
    with pytest.raises(TlsConfigError, match="anchors"):
        server_context(op["certificate"], op["key"], None, client_cert="required")


def test_bad_key_pair_is_a_one_line_error(dev_pki: DevPki, tmp_path: Path) -> None:
    op1, op2 = dev_pki.op(1), dev_pki.op(2)
    with pytest.raises(TlsConfigError, match="cannot load certificate and key"):
        server_context(op1["certificate"], op2["key"], None, client_cert="none")
    with pytest.raises(TlsConfigError, match="not found"):
        server_context(tmp_path / "x.pem", op1["key"], None, client_cert="none")


# ---------------------------------------------------------------- client certificates


@pytest.mark.parametrize("which", ["op2", "professional"])
def test_required_accepts_good_client(dev_pki: DevPki, which: str) -> None:
    cert, key = pair(dev_pki, which)
    result = handshake(
        server(dev_pki, client_cert="required"),
        client_context(cert, key, dev_pki.manifest["anchors"]),
    )
    assert result.ok, result
    assert result.client_chain[0].subject == dev_pki.certs(cert or "")[0].subject
    # and the client verified our server chain against the anchors
    assert result.server_chain[0].subject.rfc4514_string() == dev_pki.op(1)["dn"]


@pytest.mark.parametrize("which", ["none", "expired", "unknown_ca", "revoked"])
def test_required_refuses_at_handshake(dev_pki: DevPki, which: str) -> None:
    cert, key = pair(dev_pki, which)
    result = handshake(server(dev_pki, client_cert="required"), raw_client(cert=cert, key=key))
    assert not result.ok
    assert result.server_error


@pytest.mark.parametrize("which", ["none", "expired", "unknown_ca", "revoked", "op2"])
def test_optional_never_aborts(dev_pki: DevPki, which: str) -> None:
    """TLS-3: an unknown or absent certificate must not abort the handshake."""
    cert, key = pair(dev_pki, which)
    result = handshake(server(dev_pki, client_cert="optional"), raw_client(cert=cert, key=key))
    assert result.ok, result
    assert len(result.client_chain) == (0 if which == "none" else 2)


def test_client_refuses_server_outside_anchors(dev_pki: DevPki) -> None:
    cert, key = pair(dev_pki, "unknown_ca")
    srv = server_context(cert or "", key or "", None, client_cert="none")
    result = handshake(srv, client_context(None, None, dev_pki.manifest["anchors"]))
    assert not result.ok and "certificate verify failed" in result.client_error


def test_verified_peer_after_optional_handshake(dev_pki: DevPki) -> None:
    import socket
    import threading

    from mssgw.tls.chain import ChainError

    ctx = server(dev_pki, client_cert="optional")
    outcomes: dict[str, object] = {}
    for which in ("professional", "unknown_ca", "none"):
        listener = socket.create_server(("127.0.0.1", 0))
        cert, key = pair(dev_pki, which)

        def serve(listener: socket.socket = listener, which: str = which) -> None:
            conn, _ = listener.accept()
            with ctx.wrap_socket(conn, server_side=True) as tls:
                try:
                    outcomes[which] = verified_peer(tls, dev_pki.anchors, dev_pki.crls)
                except ChainError as exc:
                    outcomes[which] = exc.problem
                tls.sendall(b"k")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client = raw_client(cert=cert, key=key)
        with (
            socket.create_connection(listener.getsockname(), timeout=10) as raw,
            client.wrap_socket(raw) as tls,
        ):
            tls.recv(1)
        thread.join(10)
        listener.close()
    path = outcomes["professional"]
    assert isinstance(path, list) and len(path) == 2
    assert outcomes["unknown_ca"] == "unknown_ca"
    assert outcomes["none"] is None


def test_load_der_keeps_good_certificates_and_never_failures(dev_pki: DevPki) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from mssgw.tls.context import load_der

    der = dev_pki.root.public_bytes(Encoding.DER)
    first = load_der(der)
    assert load_der(bytes(der)) is first  # equal bytes, not the same object: still kept
    assert first.public_bytes(Encoding.DER) == der
    damaged = der[:-40]
    for _ in range(2):  # refused every time, not remembered as anything
        with pytest.raises(ValueError):
            load_der(damaged)
