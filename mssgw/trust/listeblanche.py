"""The ANS liste blanche: parse safely, verify, index (SPEC TRUST-1, TRUST-2).

``load_verified`` is the only way to get a ``ListeBlanche``: nothing from a
file is trusted before its signature, its signer certificate (validity at
the chosen instant, chain to the configured anchors, expected subject) and
its structure have been checked.  The result is an immutable index
domain → canonical operator DNs, a plain dict for ≥ 1M lookups/s.

``sign_liste_blanche`` writes a list in exactly the ANS format; the
development PKI and the tests use it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

from mssgw.errors import MssgwError
from mssgw.tls import chain as chainmod
from mssgw.tls.identity import DNError, normalise_dn, subject_dn
from mssgw.trust.xmldsig import DS, SignatureError, verify_enveloped

NS = "https://listeblanche.mssante.fr/schema"
ROOT_TAG = f"{{{NS}}}ListeBlancheMSSante"
#: The real list is 3.7 MB for 6,500 entries; 64 MiB leaves room for growth
#: and still bounds memory against a hostile or runaway download.
MAX_BYTES = 64 * 1024 * 1024
_FIELDS = ("Nom", "Description", "DNCertificatOperateur", "ResponsableContact", "SupportContact", "DateMAJ")


class ListeBlancheError(MssgwError):
    """The liste blanche was refused; the message says precisely why."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One ``Domaine`` element: one allowed operator certificate for a domain."""

    domain: str
    dn: str
    description: str = ""
    responsable_contact: str = ""
    support_contact: str = ""
    updated: str = ""

    @property
    def normalised_dn(self) -> str:
        return normalise_dn(self.dn)


@dataclass(frozen=True, slots=True)
class DomainInfo:
    """Everything the list says about one domain, for display."""

    domain: str
    entries: tuple[Entry, ...]

    @property
    def dns(self) -> frozenset[str]:
        return frozenset(e.normalised_dn for e in self.entries)


_EMPTY: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ListeBlanche:
    """A verified liste blanche, indexed by domain."""

    generated_at: datetime
    entries: int
    domains: int
    signer: x509.Certificate
    sha256: str
    _index: dict[str, frozenset[str]] = field(repr=False)
    _info: dict[str, tuple[Entry, ...]] = field(repr=False)
    #: Entries skipped because their DN could not be parsed (fail closed for
    #: that DN only; a signed list is otherwise taken whole).
    skipped: tuple[str, ...] = ()

    def dns_for(self, domain: str) -> frozenset[str]:
        """Canonical DNs allowed for ``domain`` (empty when not listed)."""
        return self._index.get(domain, _EMPTY) or self._index.get(domain.lower(), _EMPTY)

    def is_listed(self, domain: str) -> bool:
        return domain in self._index or domain.lower() in self._index

    def info(self, domain: str) -> DomainInfo | None:
        entries = self._info.get(domain.lower())
        return DomainInfo(domain.lower(), entries) if entries else None

    def domain_names(self) -> Iterable[str]:
        return self._index.keys()


# --------------------------------------------------------------------------- parsing


def _parser() -> etree.XMLParser:
    """A parser that cannot be made to fetch, expand or blow up anything.

    Comments and PIs are removed: they are outside the signed content
    (exclusive C14N without comments), and a comment inside ``<Nom>`` would
    otherwise split the text we read from the text that was signed.
    """
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )


def parse_document(data: bytes) -> etree._Element:
    """Parse bytes into the root element, refusing DTDs and entities (XXE)."""
    if len(data) > MAX_BYTES:
        raise ListeBlancheError(f"liste blanche larger than {MAX_BYTES} bytes: refused")
    if not data.strip():
        raise ListeBlancheError("liste blanche is empty")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ListeBlancheError("liste blanche contains a DTD or entity declaration: refused (XXE)")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise ListeBlancheError(f"liste blanche is not well-formed XML: {exc}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise ListeBlancheError("liste blanche contains a DTD: refused (XXE)")
    if root.tag != ROOT_TAG:
        raise ListeBlancheError(
            f"document element is {root.tag!r}, expected ListeBlancheMSSante in namespace {NS}"
        )
    return root


def _text(element: etree._Element, name: str, position: int) -> str:
    if len(element):
        raise ListeBlancheError(f"Domaine #{position}: {name} must contain text only")
    return (element.text or "").strip()


def _read_entries(root: etree._Element) -> tuple[datetime, list[Entry]]:
    kids = [c for c in root if isinstance(c.tag, str)]
    tags = [etree.QName(c).localname for c in kids]
    if tags != ["DateDeGeneration", "ListeDomaines"] or any(
        etree.QName(c).namespace != NS for c in kids
    ):
        raise ListeBlancheError(
            f"unexpected document structure {tags}: expected DateDeGeneration, ListeDomaines, Signature"
        )
    generated = _parse_time(kids[0].text, "DateDeGeneration")
    entries = []
    tag_names = {f"{{{NS}}}{name}": name for name in _FIELDS}
    domaine_tag = f"{{{NS}}}Domaine"
    for position, domaine in enumerate(kids[1], 1):
        if domaine.tag != domaine_tag:
            raise ListeBlancheError(f"ListeDomaines child #{position} is {domaine.tag!r}, not Domaine")
        values: dict[str, str] = {}
        for child in domaine:
            name = tag_names.get(child.tag)
            if name is None:
                continue  # unknown fields: tolerated (forward compatible), not used
            if name in values:
                raise ListeBlancheError(f"Domaine #{position}: {name} appears twice")
            values[name] = _text(child, name, position)
        if not values.get("Nom") or not values.get("DNCertificatOperateur"):
            raise ListeBlancheError(f"Domaine #{position}: Nom and DNCertificatOperateur are required")
        entries.append(
            Entry(
                domain=values["Nom"].lower().rstrip("."),
                dn=values["DNCertificatOperateur"],
                description=values.get("Description", ""),
                responsable_contact=values.get("ResponsableContact", ""),
                support_contact=values.get("SupportContact", ""),
                updated=values.get("DateMAJ", ""),
            )
        )
    return generated, entries


def _parse_time(text: str | None, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat((text or "").strip().replace("Z", "+00:00"))
    except ValueError:
        raise ListeBlancheError(f"{what} {text!r} is not an ISO 8601 date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _index(entries: Sequence[Entry]) -> tuple[dict[str, frozenset[str]], dict[str, tuple[Entry, ...]], list[str]]:
    by_domain: dict[str, list[Entry]] = {}
    dns: dict[str, set[str]] = {}
    cache: dict[str, str | None] = {}  # 391 distinct DNs for 6,494 entries
    skipped = []
    for entry in entries:
        by_domain.setdefault(entry.domain, []).append(entry)
        if entry.dn not in cache:
            try:
                cache[entry.dn] = normalise_dn(entry.dn)
            except DNError as exc:
                cache[entry.dn] = None
                skipped.append(f"{entry.domain}: {exc}")
        canonical = cache[entry.dn]
        if canonical is not None:
            dns.setdefault(entry.domain, set()).add(canonical)
    index = {domain: frozenset(dns.get(domain, ())) for domain in by_domain}
    return index, {d: tuple(e) for d, e in by_domain.items()}, skipped


# --------------------------------------------------------------------------- verification


def check_signer(
    chain: Sequence[x509.Certificate],
    *,
    at: datetime,
    anchors: Sequence[x509.Certificate] | None,
    expected_signer: str | None,
) -> None:
    """TRUST-2: the signer is valid at ``at``, chains to anchors, is expected.

    The leaf is never pinned: the ANS rotates it (the sample's expired on
    2026-08-23); trust comes from the anchors and, optionally, the subject.
    """
    signer = chain[0]
    try:
        chainmod.check_validity(signer, at, "liste blanche signer certificate")
        if anchors:
            chainmod.build_path(signer, chain[1:], anchors, at)
    except chainmod.ChainError as exc:
        raise ListeBlancheError(str(exc)) from None
    if expected_signer:
        try:
            expected = normalise_dn(expected_signer)
        except DNError as exc:
            raise ListeBlancheError(f"expected signer: {exc}") from None
        if subject_dn(signer) != expected:
            raise ListeBlancheError(
                f"liste blanche signed by {signer.subject.rfc4514_string()}, "
                f"expected {expected_signer}"
            )


def load_verified(
    data: bytes,
    *,
    at: datetime,
    anchors: Sequence[x509.Certificate] | None,
    expected_signer: str | None,
) -> ListeBlanche:
    """Parse, verify and index ``data``; raise ``ListeBlancheError`` otherwise.

    ``anchors=None`` (or empty) skips the chain check: only for offline
    inspection; the daemon always passes the configured IGC-Santé anchors.
    """
    root = parse_document(data)
    try:
        signer_chain = verify_enveloped(root)
    except SignatureError as exc:
        raise ListeBlancheError(f"liste blanche signature refused: {exc}") from None
    check_signer(signer_chain, at=at, anchors=anchors, expected_signer=expected_signer)
    generated, entries = _read_entries(root)
    index, info, skipped = _index(entries)
    return ListeBlanche(
        generated_at=generated,
        entries=len(entries),
        domains=len(index),
        signer=signer_chain[0],
        sha256=hashlib.sha256(data).hexdigest(),
        _index=index,
        _info=info,
        skipped=tuple(skipped),
    )


# --------------------------------------------------------------------------- signing


def _fmt_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_document(entries: Iterable[Entry], generated_at: datetime) -> etree._Element:
    """The unsigned tree, indented like the ANS file (4 spaces)."""
    q = lambda name: f"{{{NS}}}{name}"  # noqa: E731 - tiny local helper
    root = etree.Element(q("ListeBlancheMSSante"), nsmap={None: NS})
    root.text = "\n    "
    date = etree.SubElement(root, q("DateDeGeneration"))
    date.text = _fmt_time(generated_at)
    date.tail = "\n    "
    domaines = etree.SubElement(root, q("ListeDomaines"))
    domaines.text = "\n        "
    domaine = None
    for entry in entries:
        domaine = etree.SubElement(domaines, q("Domaine"))
        domaine.text = "\n            "
        domaine.tail = "\n        "
        values = (
            entry.domain,
            entry.description,
            entry.dn,
            entry.responsable_contact,
            entry.support_contact,
            entry.updated or _fmt_time(generated_at),
        )
        child = None
        for name, value in zip(_FIELDS, values, strict=True):
            child = etree.SubElement(domaine, q(name))
            child.text = value
            child.tail = "\n            "
        if child is not None:
            child.tail = "\n        "
    if domaine is not None:
        domaine.tail = "\n    "
    domaines.tail = "\n"
    return root


def sign_liste_blanche(
    entries: Iterable[Entry],
    generated_at: datetime,
    signer_cert: x509.Certificate,
    signer_key: rsa.RSAPrivateKey,
    *,
    chain: Sequence[x509.Certificate] = (),
) -> bytes:
    """A signed liste blanche in the ANS format (signxml does the signing).

    Same profile as the real file: enveloped, exclusive C14N, SHA-256,
    RSA-SHA256, ``Signature`` in the default xmldsig namespace as the last
    child, signer certificate (then ``chain``) in ``KeyInfo/X509Data``.
    """
    from signxml import (  # local: only development and tests sign
        CanonicalizationMethod,
        DigestAlgorithm,
        SignatureMethod,
        XMLSigner,
        methods,
    )

    signer = XMLSigner(
        method=methods.enveloped,
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signer.namespaces = {None: DS}
    signed = signer.sign(
        build_document(entries, generated_at),
        key=signer_key,
        cert=[signer_cert, *chain],
        always_add_key_value=False,
    )
    body: bytes = etree.tostring(signed, encoding="UTF-8")
    return b'<?xml version="1.0" encoding="UTF-8"?>' + body
