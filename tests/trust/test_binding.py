"""Peer binding (TRUST-6): a decision table over dev-PKI certificates,
then the same over real TLS sockets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from mssgw.tls.context import client_context, server_context
from mssgw.trust.binding import check_peer
from mssgw.trust.listeblanche import ListeBlanche, load_verified
from tests.tls.pki import DevPki
from tests.tls.tlsutil import handshake, raw_client

NOW = datetime.now(UTC)
OP1, OP2 = "op1.mssante.test", "op2.mssante.test"


@pytest.fixture(scope="module")
def liste(dev_pki: DevPki) -> ListeBlanche:
    data = Path(dev_pki.manifest["liste_blanche"]).read_bytes()
    return load_verified(data, at=NOW, anchors=dev_pki.anchors, expected_signer=None)


def chain(dev_pki: DevPki, which: str) -> list[x509.Certificate]:
    m = dev_pki.manifest
    if which == "none":
        return []
    if which.startswith("op"):
        return dev_pki.certs(dev_pki.op(int(which[2:]))["certificate"])
    return dev_pki.certs(m["bad"][which]["certificate"])


TABLE = [
    # peer,        claimed domain,          kind,       code,  enhanced, reason fragment
    ("op1", OP1, "accept", 250, "2.0.0", "trusted for op1.mssante.test"),
    ("op2", OP2, "accept", 250, "2.0.0", "trusted"),
    ("op2", OP1, "reject", 550, "5.7.1", "is not listed for domain op1.mssante.test"),
    ("op1", "unknown.mssante.fr", "reject", 550, "5.7.1", "not on the MSSante liste blanche"),
    ("unlisted", OP1, "reject", 550, "5.7.1", "not listed for domain"),
    ("unknown_ca", OP1, "reject", 550, "5.7.1", "not among the configured anchors"),
    ("expired", OP1, "reject", 550, "5.7.1", "expired on"),
    ("revoked", OP1, "reject", 550, "5.7.1", "is revoked"),
    ("none", OP1, "reject", 530, "5.7.0", "certificate required"),
]


@pytest.mark.parametrize(("peer", "domain", "kind", "code", "enhanced", "reason"), TABLE)
def test_decision_table(
    dev_pki: DevPki,
    liste: ListeBlanche,
    peer: str,
    domain: str,
    kind: str,
    code: int,
    enhanced: str,
    reason: str,
) -> None:
    decision = check_peer(chain(dev_pki, peer), domain, liste, NOW, dev_pki.anchors, dev_pki.crls)
    assert (decision.kind, decision.smtp_code, decision.enhanced) == (kind, code, enhanced)
    assert reason in decision.reason
    assert decision.smtp_reply().isascii()  # RFC 5321: replies are ASCII


def test_second_listed_node_of_a_multi_dn_domain(dev_pki: DevPki, liste: ListeBlanche) -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Paris (75)"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "OPERATEUR DEV 1"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "99000000000001"),
            x509.NameAttribute(NameOID.COMMON_NAME, "mx2.op1.mssante.test"),
        ]
    )
    node2, _ = dev_pki.issue(name)
    crls = None  # this ad-hoc certificate is not in the dev CRL's scope question
    decision = check_peer([node2], OP1, liste, NOW, dev_pki.anchors, crls)
    assert decision.ok, decision


def test_transient_crl_problems_tempfail(dev_pki: DevPki, liste: ListeBlanche) -> None:
    missing = check_peer(chain(dev_pki, "op1"), OP1, liste, NOW, dev_pki.anchors, [])
    assert (missing.kind, missing.smtp_code, missing.enhanced) == ("tempfail", 454, "4.7.0")
    stale = check_peer(
        chain(dev_pki, "op1"), OP1, liste, NOW + timedelta(days=400), dev_pki.anchors, dev_pki.crls
    )
    assert stale.kind == "tempfail" and "next update" in stale.reason


def test_domain_case_and_trailing_dot(dev_pki: DevPki, liste: ListeBlanche) -> None:
    assert check_peer(
        chain(dev_pki, "op1"), "OP1.mssante.test.", liste, NOW, dev_pki.anchors, None
    ).ok


# ---------------------------------------------------------------- real TLS sockets


def mta_server(dev_pki: DevPki, client_cert: str) -> object:
    return dev_pki.server_ctx(client_cert=client_cert)


def pair(dev_pki: DevPki, which: str) -> tuple[str | None, str | None]:
    if which == "none":
        return None, None
    if which.startswith("op"):
        op = dev_pki.op(int(which[2:]))
        return op["certificate"], op["key"]
    bad = dev_pki.manifest["bad"][which]
    return bad["certificate"], bad["key"]


@pytest.mark.parametrize(
    ("peer", "domain", "handshake_ok", "code"),
    [
        ("op2", OP2, True, 250),
        ("op2", OP1, True, 550),  # another operator's certificate
        ("unlisted", OP1, True, 550),
        ("expired", OP1, False, None),
        ("unknown_ca", OP1, False, None),
        ("revoked", OP1, False, None),
        ("none", OP1, False, None),
    ],
)
def test_port25_listener(
    dev_pki: DevPki,
    liste: ListeBlanche,
    peer: str,
    domain: str,
    handshake_ok: bool,
    code: int | None,
) -> None:
    """Client certificate required: bad certificates die at the handshake,
    good ones reach peer binding, which decides on the DN."""
    cert, key = pair(dev_pki, peer)
    client = client_context(cert, key, dev_pki.manifest["anchors"]) if cert else raw_client()
    result = handshake(mta_server(dev_pki, "required"), client)  # type: ignore[arg-type]
    assert result.ok is handshake_ok, result
    if handshake_ok:
        decision = check_peer(
            result.client_chain, domain, liste, NOW, dev_pki.anchors, dev_pki.crls
        )
        assert decision.smtp_code == code


@pytest.mark.parametrize(
    ("peer", "code"),
    [("op1", 250), ("expired", 550), ("unknown_ca", 550), ("revoked", 550), ("none", 530)],
)
def test_relay_side_binding_over_tls(
    dev_pki: DevPki, liste: ListeBlanche, peer: str, code: int
) -> None:
    """Outbound: the relay sees the receiving server's chain and binds it to
    the recipient domain (here the server presents the certificate under test)."""
    cert, key = pair(dev_pki, peer)
    if cert is None or key is None:
        decision = check_peer([], OP1, liste, NOW, dev_pki.anchors, dev_pki.crls)
    else:
        srv = server_context(cert, key, None, client_cert="none")
        result = handshake(srv, raw_client())
        assert result.ok
        decision = check_peer(result.server_chain, OP1, liste, NOW, dev_pki.anchors, dev_pki.crls)
    assert decision.smtp_code == code
