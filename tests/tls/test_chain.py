"""Path validation and revocation at an instant (TRUST-4, TRUST-5)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from mssgw.tls.chain import ChainError, validate
from mssgw.tls.crl import CrlError, CrlSet, Revocation, parse_crls, revocation_status
from tests.tls.pki import DevPki

NOW = datetime.now(UTC)


def chain_of(dev_pki: DevPki, which: str) -> list[x509.Certificate]:
    m = dev_pki.manifest
    path = m["bad"][which]["certificate"] if which in m["bad"] else dev_pki.op(1)["certificate"]
    return dev_pki.certs(path)


def test_good_chain_to_root(dev_pki: DevPki) -> None:
    path = validate(chain_of(dev_pki, "op1"), dev_pki.anchors, NOW, dev_pki.crls)
    assert [c.subject.rfc4514_string().split(",")[0] for c in path] == [
        "CN=mx.op1.mssante.test",
        "CN=AC MSSGW DEVELOPPEMENT ORGANISATIONS",
    ]  # the intermediate is an anchor in anchors.pem: the path stops there


def test_leaf_alone_with_root_only_anchor(dev_pki: DevPki) -> None:
    leaf, inter = chain_of(dev_pki, "op1")
    path = validate([leaf, inter], [dev_pki.root], NOW, None)
    assert path[-1] == dev_pki.root
    with pytest.raises(ChainError) as err:
        validate([leaf], [dev_pki.root], NOW, None)  # intermediate missing
    assert err.value.problem == "unknown_ca"


@pytest.mark.parametrize(
    ("which", "problem", "transient"),
    [
        ("expired", "expired", False),
        ("unknown_ca", "unknown_ca", False),
        ("revoked", "revoked", False),
    ],
)
def test_bad_chains(dev_pki: DevPki, which: str, problem: str, transient: bool) -> None:
    with pytest.raises(ChainError) as err:
        validate(chain_of(dev_pki, which), dev_pki.anchors, NOW, dev_pki.crls)
    assert err.value.problem == problem
    assert err.value.transient is transient


def test_expired_message_names_the_day(dev_pki: DevPki) -> None:
    leaf = chain_of(dev_pki, "expired")[0]
    with pytest.raises(ChainError, match=f"expired on {leaf.not_valid_after_utc:%Y-%m-%d}"):
        validate([leaf], dev_pki.anchors, NOW, None)


def test_not_yet_valid(dev_pki: DevPki) -> None:
    with pytest.raises(ChainError) as err:
        validate(chain_of(dev_pki, "op1"), dev_pki.anchors, NOW - timedelta(days=30), None)
    assert err.value.problem == "not_yet_valid"


def test_revocation_needs_a_crl_when_configured(dev_pki: DevPki) -> None:
    with pytest.raises(ChainError) as err:
        validate(chain_of(dev_pki, "op1"), dev_pki.anchors, NOW, [])
    assert err.value.problem == "crl_unavailable" and err.value.transient
    validate(chain_of(dev_pki, "revoked"), dev_pki.anchors, NOW, None)  # not configured: skipped


def test_stale_crl_is_transient(dev_pki: DevPki) -> None:
    later = NOW + timedelta(days=400)  # past nextUpdate (365 d), certs still valid
    with pytest.raises(ChainError) as err:
        validate(chain_of(dev_pki, "op1"), dev_pki.anchors, later, dev_pki.crls)
    assert err.value.problem == "crl_stale" and err.value.transient


def test_forged_crl_is_ignored(dev_pki: DevPki) -> None:
    """A CRL with the intermediate's name but signed by another key does not count."""
    other = x509.load_pem_x509_certificate(
        Path(dev_pki.manifest["bad"]["unknown_ca"]["certificate"]).read_bytes()
    )
    stranger_key = serialization.load_pem_private_key(
        Path(dev_pki.manifest["bad"]["unlisted"]["key"]).read_bytes(), None
    )
    inter = dev_pki.certs(dev_pki.manifest["intermediate"])[0]
    forged = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(inter.subject)
        .last_update(NOW - timedelta(hours=1))
        .next_update(NOW + timedelta(days=1))
        .sign(stranger_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    leaf = chain_of(dev_pki, "revoked")[0]
    assert revocation_status(leaf, inter, [forged], NOW) is Revocation.UNAVAILABLE
    assert other.issuer != inter.subject


def test_parse_crls_pem_der_and_garbage(dev_pki: DevPki) -> None:
    pem = Path(dev_pki.manifest["crl"]).read_bytes()
    (crl,) = parse_crls(pem)
    assert parse_crls(crl.public_bytes(serialization.Encoding.DER))[0] == crl
    assert len(parse_crls(pem + Path(dev_pki.manifest["root_crl"]).read_bytes())) == 2
    with pytest.raises(CrlError):
        parse_crls(b"not a crl")


def test_crlset_keeps_last_valid_copy(dev_pki: DevPki, tmp_path: Path) -> None:
    path = tmp_path / "crl.pem"
    shutil.copy(dev_pki.manifest["crl"], path)
    crl_set = CrlSet([path])
    assert crl_set.refresh() == []
    first = crl_set.crls
    path.write_bytes(b"-----BEGIN X509 CRL-----\ntruncated")
    errors = crl_set.refresh()
    assert errors and "keeping the previous CRL" in errors[0]
    assert crl_set.crls == first
    path.unlink()
    assert crl_set.refresh() and crl_set.crls == first
    assert crl_set.missing() == []
    assert CrlSet([tmp_path / "none.pem"]).missing() == [tmp_path / "none.pem"]
