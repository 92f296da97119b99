"""DN parsing and normalisation (TRUST-6), national ids from certificates."""

from __future__ import annotations

import re

import pytest
from cryptography import x509

from mssgw.tls.identity import (
    DNError,
    national_id,
    normalise_dn,
    parse_dn,
    rpps,
    same_dn,
    structure_id,
    subject_dn,
)
from tests.support.paths import SAMPLE_LISTE_BLANCHE
from tests.tls.pki import DevPki

SAMPLE = SAMPLE_LISTE_BLANCHE
REAL = "CN=mss.enovacom.fr,OU=344368557300034,O=ENOVACOM,ST=Bouches-du-Rhône (13),C=FR"


@pytest.mark.parametrize(
    "variant",
    [
        REAL,
        "cn=mss.enovacom.fr, ou=344368557300034, o=ENOVACOM, st=Bouches-du-Rhône (13), c=FR",
        "CN = mss.enovacom.fr ,OU= 344368557300034,O=ENOVACOM,S=Bouches-du-Rhône (13),C=FR",
        "2.5.4.3=mss.enovacom.fr,OU=344368557300034,O=ENOVACOM,ST=Bouches-du-Rhône (13),C=FR",
        # decomposed "ô" (NFD) is the same value
        "CN=mss.enovacom.fr,OU=344368557300034,O=ENOVACOM,ST=Bouches-du-Rho\u0302ne (13),C=FR",
    ],
)
def test_spacing_type_case_aliases_ignored(variant: str) -> None:
    assert same_dn(variant, REAL)


@pytest.mark.parametrize(
    "other",
    [
        # order is significant
        "OU=344368557300034,CN=mss.enovacom.fr,O=ENOVACOM,ST=Bouches-du-Rhône (13),C=FR",
        # value case is kept (SPEC asks only for type case)
        "CN=MSS.enovacom.fr,OU=344368557300034,O=ENOVACOM,ST=Bouches-du-Rhône (13),C=FR",
        # one attribute more or less
        "CN=mss.enovacom.fr,OU=344368557300034,O=ENOVACOM,C=FR",
        "CN=mss.enovacom.fr,OU=344368557300034,O=ENOVACOM,ST=Bouches-du-Rhône (13),C=FR,DC=x",
    ],
)
def test_different_dns_differ(other: str) -> None:
    assert not same_dn(other, REAL)


def test_rfc1779_quotes_and_inner_spaces() -> None:
    # Both forms occur in the real list for values with double spaces.
    quoted = 'CN=mss.ch-cadillac.fr,OU=1330781295,O="C.H. DE  CADILLAC",ST=Gironde (33),C=FR'
    assert normalise_dn(quoted) == (
        "CN=mss.ch-cadillac.fr,OU=1330781295,O=C.H. DE CADILLAC,ST=Gironde (33),C=FR"
    )
    inner = 'CN=a,O=CRLCC "PAUL STRAUSS",C=FR'
    assert parse_dn(inner)[1] == (("O", 'CRLCC "PAUL STRAUSS"'),)


def test_escapes_and_multivalued_rdns_round_trip() -> None:
    text = r"CN=Dupont\, Jean+UID=42,O=A\+B,OU=caf\C3\A9,C=FR"
    rdns = parse_dn(text)
    assert rdns[0] == (("CN", "Dupont, Jean"), ("UID", "42"))
    assert rdns[1] == (("O", "A+B"),)
    assert rdns[2] == (("OU", "café"),)
    canonical = normalise_dn(text)
    assert normalise_dn(canonical) == canonical


@pytest.mark.parametrize("bad", ["", "   ", "CN", "=x", "CN=a,", 'CN="open', "CN=a\\", "1x=y"])
def test_unparseable(bad: str) -> None:
    with pytest.raises(DNError):
        normalise_dn(bad)


def test_every_dn_of_the_real_list_is_canonical_and_stable() -> None:
    dns = set(re.findall(r"<DNCertificatOperateur>([^<]*)<", SAMPLE.read_text("utf-8")))
    assert len(dns) == 391
    for dn in dns:
        canonical = normalise_dn(dn)
        assert normalise_dn(canonical) == canonical


def test_certificate_dn_matches_list_form(dev_pki: DevPki) -> None:
    op = dev_pki.op(2)
    cert = dev_pki.certs(op["certificate"])[0]
    assert subject_dn(cert) == normalise_dn(op["dn"])
    assert subject_dn(cert).startswith("CN=mx.op2.mssante.test,OU=")
    assert subject_dn(cert).endswith(",ST=Rhône (69),C=FR")


def test_national_ids(dev_pki: DevPki) -> None:
    pro = dev_pki.certs(dev_pki.manifest["professional"]["certificate"])[0]
    assert national_id(pro) == "810012345678" == dev_pki.manifest["professional"]["national_id"]
    assert rpps(pro) == "10012345678"
    assert structure_id(pro) is None
    struct = dev_pki.certs(dev_pki.manifest["structure"]["certificate"])[0]
    assert structure_id(struct) == dev_pki.manifest["structure"]["structure_id"]
    assert national_id(struct) is None
    server = dev_pki.certs(dev_pki.op(1)["certificate"])[0]
    assert national_id(server) is None


def test_adeli_id_is_not_rpps() -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "0123456789")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    assert national_id(cert) == "0123456789"
    assert rpps(cert) is None
