"""The liste blanche: real signed sample, tampering, hostile XML (TRUST-1, TRUST-2)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from signxml import XMLVerifier
from signxml.exceptions import InvalidSignature

from mssgw.trust import listeblanche
from mssgw.trust.listeblanche import (
    Entry,
    ListeBlancheError,
    build_document,
    load_verified,
    sign_document,
    sign_liste_blanche,
)
from tests.support.paths import SAMPLE_LISTE_BLANCHE
from tests.tls.pki import DevPki

SAMPLE = SAMPLE_LISTE_BLANCHE
AS_OF = datetime(2025, 3, 1, tzinfo=UTC)
CNAM = {
    "CN=smtps1.ens.atos-infogerance.fr,OU=318003502400041,O=CNAM,ST=Paris (75),C=FR",
    "CN=smtps2.ens.atos-infogerance.fr,OU=318003502400041,O=CNAM,ST=Paris (75),C=FR",
}


@pytest.fixture(scope="module")
def sample() -> bytes:
    return SAMPLE.read_bytes()


def verify(data: bytes, at: datetime = AS_OF) -> listeblanche.ListeBlanche:
    return load_verified(data, at=at, anchors=None, expected_signer=None)


# ---------------------------------------------------------------- the real list


def test_real_list_verifies_as_of_2025_03_01(sample: bytes) -> None:
    liste = verify(sample)
    assert (liste.entries, liste.domains) == (6494, 4944)
    assert liste.generated_at == datetime(2025, 2, 28, 15, 42, 7, tzinfo=UTC)
    assert liste.dns_for("patient.mssante.fr") == CNAM
    assert liste.is_listed("PATIENT.mssante.fr")
    assert not liste.is_listed("example.org")
    assert liste.dns_for("example.org") == frozenset()
    info = liste.info("15-20.mssante.fr")
    assert info is not None and len(info.entries) >= 3
    assert info.entries[0].description == "Domaine MSSanté du 15-20"
    assert liste.signer.subject.rfc4514_string().startswith("CN=alb.mssante.fr,")
    assert liste.skipped == ()


def test_one_changed_character_is_a_digest_mismatch(sample: bytes) -> None:
    tampered = sample.replace(b"<Nom>patient.mssante.fr<", b"<Nom>patient.mssante.fx<", 1)
    assert tampered != sample
    with pytest.raises(ListeBlancheError, match="digest mismatch"):
        verify(tampered)


def test_real_list_refused_today_because_its_signer_expired(sample: bytes) -> None:
    with pytest.raises(ListeBlancheError) as err:
        verify(sample, at=datetime(2026, 11, 26, tzinfo=UTC))
    message = str(err.value)
    assert "signer certificate" in message
    assert "expired on 2026-08-23" in message
    with pytest.raises(ListeBlancheError, match="expired on 2026-08-23"):
        verify(sample, at=datetime.now(UTC))


def test_expected_signer_and_foreign_anchors(sample: bytes, dev_pki: DevPki) -> None:
    subject = (
        "CN=alb.mssante.fr,OU=347976684200724,O=CAPGEMINI TECHNOLOGY SERVICES,"
        "ST=Hauts-de-Seine (92),C=FR"
    )
    liste = load_verified(sample, at=AS_OF, anchors=None, expected_signer=subject)
    assert liste.entries == 6494
    with pytest.raises(ListeBlancheError, match="expected CN=someone"):
        load_verified(sample, at=AS_OF, anchors=None, expected_signer="CN=someone,C=FR")
    with pytest.raises(ListeBlancheError, match="not among the configured anchors"):
        load_verified(sample, at=AS_OF, anchors=dev_pki.anchors, expected_signer=None)


def test_signxml_agrees_on_the_sample(sample: bytes) -> None:
    """Differential check of our strict verifier against signxml."""
    from signxml import SignatureConfiguration

    signer = verify(sample).signer
    config = SignatureConfiguration(verification_time=AS_OF)
    XMLVerifier().verify(sample, x509_cert=signer, expect_config=config)
    tampered = sample.replace(b"<Nom>patient.mssante.fr<", b"<Nom>patient.mssante.fx<", 1)
    with pytest.raises(InvalidSignature):
        XMLVerifier().verify(tampered, x509_cert=signer, expect_config=config)


# ---------------------------------------------------------------- hostile input (dev list)


@pytest.fixture(scope="module")
def dev_list(dev_pki: DevPki) -> bytes:
    return Path(dev_pki.manifest["liste_blanche"]).read_bytes()


def verify_dev(data: bytes, dev_pki: DevPki) -> listeblanche.ListeBlanche:
    return load_verified(data, at=datetime.now(UTC), anchors=dev_pki.anchors, expected_signer=None)


DECL = b'<?xml version="1.0" encoding="UTF-8"?>'


def with_doctype(data: bytes, doctype: bytes) -> bytes:
    return DECL + doctype + data[len(DECL) :]


@pytest.mark.parametrize(
    "doctype",
    [
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
        b'<!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>',
        b'<!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd">',
    ],
)
def test_dtd_and_entities_refused(dev_list: bytes, dev_pki: DevPki, doctype: bytes) -> None:
    with pytest.raises(ListeBlancheError, match="DTD"):
        verify_dev(with_doctype(dev_list, doctype), dev_pki)


def test_xxe_in_content_cannot_resolve(dev_list: bytes, dev_pki: DevPki) -> None:
    data = with_doctype(dev_list, b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>')
    data = data.replace(b"<Description>", b"<Description>&x;", 1)
    with pytest.raises(ListeBlancheError, match="DTD"):
        verify_dev(data, dev_pki)


def test_wrong_namespace(dev_list: bytes, dev_pki: DevPki) -> None:
    data = dev_list.replace(
        b"https://listeblanche.mssante.fr/schema", b"https://evil.example/schema"
    )
    with pytest.raises(ListeBlancheError, match="namespace"):
        verify_dev(data, dev_pki)


@pytest.mark.parametrize("cut", [0.5, 0.99])
def test_truncated(dev_list: bytes, dev_pki: DevPki, cut: float) -> None:
    with pytest.raises(ListeBlancheError, match="well-formed"):
        verify_dev(dev_list[: int(len(dev_list) * cut)], dev_pki)


def test_empty_and_huge(dev_pki: DevPki, monkeypatch: pytest.MonkeyPatch, dev_list: bytes) -> None:
    with pytest.raises(ListeBlancheError, match="empty"):
        verify_dev(b"  ", dev_pki)
    monkeypatch.setattr(listeblanche, "MAX_BYTES", len(dev_list) - 1)
    with pytest.raises(ListeBlancheError, match="larger than"):
        verify_dev(dev_list, dev_pki)


def test_missing_signature(dev_list: bytes, dev_pki: DevPki) -> None:
    unsigned = re.sub(rb"<Signature .*</Signature>", b"", dev_list, flags=re.S)
    with pytest.raises(ListeBlancheError, match="not signed"):
        verify_dev(unsigned, dev_pki)


def test_duplicate_signature(dev_list: bytes, dev_pki: DevPki) -> None:
    sig = re.search(rb"<Signature .*</Signature>", dev_list, flags=re.S)
    assert sig
    doubled = dev_list.replace(sig.group(0), sig.group(0) * 2)
    with pytest.raises(ListeBlancheError, match="2 ds:Signature elements"):
        verify_dev(doubled, dev_pki)


EVIL = (
    b"<Domaine><Nom>evil.example</Nom><Description>x</Description>"
    b"<DNCertificatOperateur>CN=evil,C=FR</DNCertificatOperateur><ResponsableContact>x"
    b"</ResponsableContact><SupportContact>x</SupportContact><DateMAJ>x</DateMAJ></Domaine>"
)


def test_wrapping_added_entry(dev_list: bytes, dev_pki: DevPki) -> None:
    data = dev_list.replace(b"<ListeDomaines>", b"<ListeDomaines>" + EVIL, 1)
    with pytest.raises(ListeBlancheError, match="digest mismatch"):
        verify_dev(data, dev_pki)


def test_wrapping_signed_copy_hidden_in_object(dev_list: bytes, dev_pki: DevPki) -> None:
    """Classic XSW: the signed content moved into ds:Object, evil content outside."""
    body = re.search(rb"<ListeDomaines>.*</ListeDomaines>", dev_list, flags=re.S)
    assert body
    evil_list = b"<ListeDomaines>" + EVIL + b"</ListeDomaines>"
    data = dev_list.replace(body.group(0), evil_list).replace(
        b"</KeyInfo>", b"</KeyInfo><Object>" + body.group(0) + b"</Object>"
    )
    with pytest.raises(ListeBlancheError, match="ds:Signature: expected elements"):
        verify_dev(data, dev_pki)


def test_wrapping_signature_not_enveloping_the_document(dev_list: bytes, dev_pki: DevPki) -> None:
    """The signed document nested inside an evil one: signature no longer a root child."""
    inner = dev_list[len(DECL) :]
    outer = DECL + (
        b'<ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema">'
        b"<DateDeGeneration>2030-01-01T00:00:00Z</DateDeGeneration><ListeDomaines>"
        + EVIL
        + b"</ListeDomaines><Extra>"
        + inner
        + b"</Extra></ListeBlancheMSSante>"
    )
    with pytest.raises(ListeBlancheError, match="last child of the document element"):
        verify_dev(outer, dev_pki)


def test_wrapping_partial_reference(dev_list: bytes, dev_pki: DevPki) -> None:
    data = dev_list.replace(b'<Reference URI="">', b'<Reference URI="#part">')
    with pytest.raises(ListeBlancheError, match="whole document"):
        verify_dev(data, dev_pki)


def test_comment_injection_does_not_truncate_names(dev_list: bytes, dev_pki: DevPki) -> None:
    """Comments are outside exclusive C14N: inserting one keeps the signature
    valid, and must not change what we read (the SAML comment attack)."""
    data = dev_list.replace(b"<Nom>op2.mssante", b"<Nom>op2<!-- x -->.mssante", 1)
    liste = verify_dev(data, dev_pki)
    assert liste.is_listed("op2.mssante.test")
    assert not liste.is_listed("op2")


def test_wrong_algorithm_refused(dev_list: bytes, dev_pki: DevPki) -> None:
    data = dev_list.replace(b"xmldsig-more#rsa-sha256", b"xmldsig#rsa-sha1")
    with pytest.raises(ListeBlancheError, match="signature method"):
        verify_dev(data, dev_pki)


def _signed(dev_pki: DevPki, mutate: Callable[[Any], None]) -> bytes:
    cert, key = dev_pki.signer()
    entries = [Entry("a.test", "CN=a,C=FR", "A"), Entry("b.test", "CN=b,C=FR", "B")]
    root = build_document(entries, datetime.now(UTC))
    mutate(root)
    return sign_document(root, cert, key)


def _domaines(root: Any) -> Any:
    return root[1]


def test_optional_fields_missing_use_the_generic_reader(dev_pki: DevPki) -> None:
    def drop_description(root: Any) -> None:
        first = _domaines(root)[0]
        first.remove(first[1])

    liste = verify_dev(_signed(dev_pki, drop_description), dev_pki)
    assert liste.entries == 2 and liste.dns_for("a.test") == {"CN=a,C=FR"}
    info = liste.info("a.test")
    assert info is not None and info.entries[0].description == ""


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        ("nested", "unexpected element"),
        ("repeated", "appears twice"),
        ("foreign", "Domaine elements only"),
        ("no_dn", "required"),
    ],
)
def test_strict_schema(dev_pki: DevPki, mutation: str, message: str) -> None:
    from lxml import etree

    ns = "{https://listeblanche.mssante.fr/schema}"

    def mutate(root: Any) -> None:
        first = _domaines(root)[0]
        if mutation == "nested":
            etree.SubElement(first[0], ns + "Nom").text = "evil.test"
        elif mutation == "repeated":
            etree.SubElement(first, ns + "Nom").text = "evil.test"
        elif mutation == "foreign":
            etree.SubElement(_domaines(root), ns + "Nom").text = "evil.test"
        else:
            first.remove(first[2])

    with pytest.raises(ListeBlancheError, match=message):
        verify_dev(_signed(dev_pki, mutate), dev_pki)


def test_unparseable_dn_skips_that_entry_only(dev_pki: DevPki) -> None:
    cert, key = dev_pki.signer()
    data = sign_liste_blanche(
        [Entry("a.test", 'CN="unterminated,C=FR'), Entry("b.test", "CN=b,C=FR")],
        datetime.now(UTC),
        cert,
        key,
    )
    liste = verify_dev(data, dev_pki)
    assert liste.entries == 2 and liste.is_listed("a.test")
    assert liste.dns_for("a.test") == frozenset()  # fail closed for that DN
    assert len(liste.skipped) == 1 and "a.test" in liste.skipped[0]


def test_non_canonical_layout_falls_back(dev_pki: DevPki) -> None:
    from mssgw.trust import fastpath

    def extra_text(root: Any) -> None:
        _domaines(root)[0].tail = "\n  stray text  \n"

    data = _signed(dev_pki, extra_text)
    layout = fastpath.locate(data)
    assert layout is not None and fastpath.read_fields(layout) is None  # not the fast grammar
    assert verify_dev(data, dev_pki).entries == 2
