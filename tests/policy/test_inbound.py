"""Inbound policy (FLOW-1, TRUST-6, FLOW-6) as tables over pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from mssgw.policy.inbound import (
    check_recipient,
    check_recipient_count,
    check_sender,
    delivered,
    store_unavailable,
)
from mssgw.policy.size import check_actual_size, check_declared_size, too_big
from mssgw.tls.context import load_certificates
from mssgw.tls.crl import load_crl_file
from mssgw.trust.listeblanche import ListeBlanche, load_verified

HOSTED = {"op1.mssante.test", "cabinet.op1.mssante.test"}


@pytest.fixture(scope="module")
def world(trust_space: dict[str, Any]) -> dict[str, Any]:
    anchors = load_certificates(trust_space["anchors"])
    liste = load_verified(
        Path(trust_space["liste_blanche"]).read_bytes(),
        at=datetime.now(UTC), anchors=anchors, expected_signer=None,
    )
    return {
        "anchors": anchors,
        "crls": load_crl_file(Path(trust_space["crl"])),
        "liste": liste,
        "op1": load_certificates(trust_space["operators"][0]["certificate"]),
        "op2": load_certificates(trust_space["operators"][1]["certificate"]),
        **{k: load_certificates(v["certificate"]) for k, v in trust_space["bad"].items()},
    }


@pytest.mark.parametrize(
    ("cert", "sender", "expected"),
    [
        ("op2", "dr.martin@op2.mssante.test", (250, "2.1.0")),
        ("op2", "Dr.Martin@OP2.MSSANTE.TEST", (250, "2.1.0")),
        ("op2", "", (250, "2.1.0")),  # null sender: op2 is listed for a domain
        ("op2", "x@op1.mssante.test", (550, "5.7.1")),  # not listed for op1's domain
        ("op1", "x@op1.mssante.test", (250, "2.1.0")),
        ("op2", "x@gmail.com", (550, "5.7.1")),  # domain not on the list
        ("unlisted", "x@op2.mssante.test", (550, "5.7.1")),
        ("unlisted", "", (550, "5.7.1")),
        ("expired", "x@op1.mssante.test", (550, "5.7.1")),
        ("expired", "", (550, "5.7.1")),
        ("revoked", "x@op1.mssante.test", (550, "5.7.1")),
        ("unknown_ca", "x@op1.mssante.test", (550, "5.7.1")),
        (None, "x@op2.mssante.test", (530, "5.7.0")),
    ],
)
def test_check_sender(
    world: dict[str, Any], cert: str | None, sender: str, expected: tuple[int, str]
) -> None:
    chain: list[x509.Certificate] = world[cert] if cert else []
    d = check_sender(sender, chain, world["liste"], datetime.now(UTC), world["anchors"],
                     world["crls"])
    assert (d.smtp_code, d.enhanced) == expected, d.reason
    assert d.reason


def test_revocation_reason_and_no_list(world: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    d = check_sender("x@op1.mssante.test", world["revoked"], world["liste"], now,
                     world["anchors"], world["crls"])
    assert "revoked" in d.reason
    d = check_sender("x@op2.mssante.test", world["op2"], None, now, world["anchors"], world["crls"])
    assert (d.kind, d.smtp_code, d.enhanced) == ("tempfail", 451, "4.7.0")
    # CRL past its nextUpdate: transient, the peer retries.
    later = now + timedelta(days=400)
    d = check_sender("x@op2.mssante.test", world["op2"], world["liste"], later,
                     world["anchors"], world["crls"])
    assert d.kind != "accept"


def test_null_sender_index_follows_the_list_in_use(world: dict[str, Any]) -> None:
    liste: ListeBlanche = world["liste"]
    empty = ListeBlanche(liste.generated_at, 0, 0, liste.signer, "0", {}, {})
    now = datetime.now(UTC)
    assert check_sender("", world["op2"], liste, now, world["anchors"], world["crls"]).ok
    d = check_sender("", world["op2"], empty, now, world["anchors"], world["crls"])
    assert (d.smtp_code, d.enhanced) == (550, "5.7.1")


@pytest.mark.parametrize(
    ("address", "state", "expected"),
    [
        ("a@op1.mssante.test", "active", (250, "2.1.5")),
        ("a@cabinet.op1.mssante.test", "active", (250, "2.1.5")),
        ("a@OP1.mssante.test", "active", (250, "2.1.5")),
        ("a@op1.mssante.test", None, (550, "5.1.1")),
        ("a@op1.mssante.test", "deleted", (550, "5.1.1")),
        ("a@op1.mssante.test", "suspended", (550, "5.2.1")),
        ("a@op2.mssante.test", None, (550, "5.1.2")),
        ("a@op2.mssante.test", "active", (550, "5.1.2")),  # hosted elsewhere wins
    ],
)
def test_check_recipient(address: str, state: str | None, expected: tuple[int, str]) -> None:
    d = check_recipient(address, HOSTED, state)
    assert (d.smtp_code, d.enhanced) == expected


@pytest.mark.parametrize(
    ("accepted", "limit", "ok"), [(0, 1, True), (99, 100, True), (100, 100, False), (5, 2, False)]
)
def test_recipient_count(accepted: int, limit: int, ok: bool) -> None:
    d = check_recipient_count(accepted, limit)
    assert d.ok is ok
    if not ok:
        assert (d.kind, d.smtp_code, d.enhanced) == ("tempfail", 452, "4.5.3")


@pytest.mark.parametrize(
    ("declared", "ok"), [(None, True), (0, True), (1000, True), (1001, False), (10**18, False)]
)
def test_declared_size(declared: int | None, ok: bool) -> None:
    d = check_declared_size(declared, 1000)
    assert d.ok is ok
    if not ok:
        assert d == too_big(1000) and (d.smtp_code, d.enhanced) == (552, "5.3.4")


def test_actual_size_and_fixed_decisions() -> None:
    assert check_actual_size(1000, 1000).ok
    assert check_actual_size(1001, 1000).smtp_reply().startswith("552 5.3.4")
    assert store_unavailable().smtp_reply().startswith("451 4.3.0")
    assert delivered("abc").smtp_reply() == "250 2.0.0 delivered as abc"
