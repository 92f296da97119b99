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

import functools
import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree  # type: ignore[import-untyped]

from mssgw.errors import MssgwError
from mssgw.tls import chain as chainmod
from mssgw.tls.identity import DNError, normalise_dn, subject_dn
from mssgw.trust import fastpath
from mssgw.trust.xmldsig import (
    DS,
    SignatureError,
    check_digest,
    verify_enveloped,
    verify_signed_info,
)

NS = "https://listeblanche.mssante.fr/schema"
ROOT_TAG = f"{{{NS}}}ListeBlancheMSSante"
#: The real list is 3.7 MB for 6,500 entries; 64 MiB leaves room for growth
#: and still bounds memory against a hostile or runaway download.
MAX_BYTES = 64 * 1024 * 1024
_FIELDS = (
    "Nom",
    "Description",
    "DNCertificatOperateur",
    "ResponsableContact",
    "SupportContact",
    "DateMAJ",
)

#: Display-only fields (Description, ResponsableContact, SupportContact,
#: DateMAJ), kept as read (canonical bytes on the fast path) and decoded on
#: demand by ``info``: most lists are loaded to be looked up, not shown.
Extra = tuple[str | bytes, str | bytes, str | bytes, str | bytes]
#: One Domaine: (lower-case domain, DN as written, display fields).
RawEntry = tuple[str, str, Extra]
#: The same by column, one value per Domaine: domain, DN, then the display
#: fields.  The fast path gets columns by slicing; nothing per entry is built
#: until ``info`` is first asked.
Columns = tuple[
    Sequence[str],
    Sequence[str],
    Sequence[str | bytes],
    Sequence[str | bytes],
    Sequence[str | bytes],
    Sequence[str | bytes],
]


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
    _rows: Columns = field(repr=False)
    #: Entries skipped because their DN could not be parsed (fail closed for
    #: that DN only; a signed list is otherwise taken whole).
    skipped: tuple[str, ...] = ()

    def dns_for(self, domain: str) -> frozenset[str]:
        """Canonical DNs allowed for ``domain`` (empty when not listed)."""
        return self._index.get(domain, _EMPTY) or self._index.get(domain.lower(), _EMPTY)

    def is_listed(self, domain: str) -> bool:
        return domain in self._index or domain.lower() in self._index

    @functools.cached_property
    def _info(self) -> dict[str, list[RawEntry]]:
        """domain → entries, built on first use (display only)."""
        domains, dns, *extra = self._rows
        by_domain: dict[str, list[RawEntry]] = {}
        for entry in zip(domains, dns, zip(*extra, strict=True), strict=True):
            by_domain.setdefault(entry[0], []).append(entry)
        return by_domain

    def info(self, domain: str) -> DomainInfo | None:
        raw = self._info.get(domain.lower())
        if not raw:
            return None
        entries = []
        for name, dn, extra in raw:
            description, responsable, support, updated = (_text(v) for v in extra)
            entries.append(Entry(name, dn, description, responsable, support, updated))
        return DomainInfo(domain.lower(), tuple(entries))

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


def _check_size(data: bytes) -> None:
    """Refusals that need no reading: too big, empty."""
    if len(data) > MAX_BYTES:
        raise ListeBlancheError(f"liste blanche larger than {MAX_BYTES} bytes: refused")
    if not data or data.isspace():
        raise ListeBlancheError("liste blanche is empty")


def parse_document(data: bytes) -> etree._Element:
    """Parse bytes into the root element, refusing DTDs and entities (XXE)."""
    _check_size(data)
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


_FIELD_TAGS = {f"{{{NS}}}{name}": i for i, name in enumerate(_FIELDS)}
_DOMAINE_TAG = f"{{{NS}}}Domaine"
_UNESCAPE = (
    (b"&lt;", b"<"),
    (b"&gt;", b">"),
    (b"&#xD;", b"\r"),
    (b"&quot;", b'"'),
    (b"&amp;", b"&"),
)


def _text(value: str | bytes) -> str:
    """Text of a canonical-form field (bytes) or of a tree field (str)."""
    if isinstance(value, str):
        return value.strip()
    if b"&" in value:
        for entity, char in _UNESCAPE:
            value = value.replace(entity, char)
    return value.decode("utf-8").strip()


def _check_structure(root: etree._Element) -> tuple[datetime, etree._Element]:
    kids = [c for c in root if isinstance(c.tag, str)]
    tags = [etree.QName(c).localname for c in kids]
    if tags != ["DateDeGeneration", "ListeDomaines"] or any(
        etree.QName(c).namespace != NS for c in kids
    ):
        raise ListeBlancheError(
            f"unexpected document structure {tags}: "
            "expected DateDeGeneration, ListeDomaines, Signature"
        )
    return _parse_time(kids[0].text, "DateDeGeneration"), kids[1]


def _columns_from_fields(names: list[str], subjects: list[str], fields: list[bytes]) -> Columns:
    """Columns from the fast path's fields (six per Domaine, schema order)."""
    if not (all(names) and all(subjects)):  # checked in C; the loop finds which
        for position, (name, subject) in enumerate(zip(names, subjects, strict=True), 1):
            if not name or not subject:
                raise ListeBlancheError(
                    f"Domaine #{position}: Nom and DNCertificatOperateur are required"
                )
    joined = "<".join(names).lower()  # "<" is in no name (fastpath)
    domains = joined.split("<") if names else []
    if ".<" in joined or joined.endswith("."):
        domains = [name.rstrip(".") for name in domains]
    return domains, subjects, fields[1::6], fields[3::6], fields[4::6], fields[5::6]


def _load_fast(
    data: bytes,
    *,
    at: datetime,
    anchors: Sequence[x509.Certificate] | None,
    expected_signer: str | None,
) -> tuple[datetime, x509.Certificate, Columns, str] | None:
    """``load_verified`` for a file whose bytes are already canonical
    (``fastpath``); None sends the caller to the general path.

    The same checks in the same order as the general path: signature and
    digest, then the signer, then the entries.
    """
    layout = fastpath.locate(data)
    if layout is None:
        return None
    digests = fastpath.Digests(layout)
    read = fastpath.read_fields(layout)
    if read is None and (expanded := fastpath.expand_empty(layout)) is not None:
        layout, digests = expanded, fastpath.Digests(expanded)
        read = fastpath.read_fields(layout)
    signature = fastpath.parse_signature(layout, _parser()) if read is not None else None
    whole, actual = digests.result()
    if read is None or signature is None:
        return None
    try:
        chain, digest = verify_signed_info(signature)
        check_digest(actual, digest)
    except SignatureError as exc:
        raise ListeBlancheError(f"liste blanche signature refused: {exc}") from None
    check_signer(chain, at=at, anchors=anchors, expected_signer=expected_signer)
    generated = _parse_time(layout.generated.decode("utf-8", "replace"), "DateDeGeneration")
    return generated, chain[0], _columns_from_fields(*read), whole


def _read_entries_generic(liste: etree._Element) -> list[RawEntry]:
    """Strict tree reader for any other layout (optional fields, other order).

    An unknown or nested element, or a repeated field, refuses the whole
    list (the last good copy stays in use) rather than guessing.
    """
    entries: list[RawEntry] = []
    for position, domaine in enumerate(liste, 1):
        if domaine.tag != _DOMAINE_TAG:
            raise ListeBlancheError("ListeDomaines may contain Domaine elements only")
        current = ["", "", "", "", "", ""]
        seen: set[int] = set()
        for el in domaine:
            index = _FIELD_TAGS.get(el.tag)
            if index is None or len(el):
                raise ListeBlancheError(f"Domaine #{position}: unexpected element {el.tag!r}")
            if index in seen:
                raise ListeBlancheError(f"Domaine #{position}: {_FIELDS[index]} appears twice")
            seen.add(index)
            current[index] = el.text or ""
        nom, description, dn, responsable, support, updated = current
        entries.append(
            _finish(nom.strip(), dn.strip(), (description, responsable, support, updated), position)
        )
    return entries


def _finish(nom: str, dn: str, extra: Extra, position: int) -> RawEntry:
    if not nom or not dn:
        raise ListeBlancheError(f"Domaine #{position}: Nom and DNCertificatOperateur are required")
    return (nom.lower().rstrip("."), dn, extra)


def _parse_time(text: str | None, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat((text or "").strip().replace("Z", "+00:00"))
    except ValueError:
        raise ListeBlancheError(f"{what} {text!r} is not an ISO 8601 date-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _columns(entries: Sequence[RawEntry]) -> Columns:
    domains = [entry[0] for entry in entries]
    dns = [entry[1] for entry in entries]
    extra = [[entry[2][i] for entry in entries] for i in range(4)]
    return domains, dns, extra[0], extra[1], extra[2], extra[3]


def _index(
    domains: Sequence[str], subjects: Sequence[str]
) -> tuple[dict[str, frozenset[str]], list[str]]:
    """domain → canonical DNs, and the entries skipped.

    Each distinct DN is normalised once (391 DNs for 6,494 entries in the
    real list); an unparsable DN is skipped (fail closed for that DN only)
    and reported once, with the first domain that uses it.  Most domains
    have one entry: their sets are shared per DN and the dict is built by
    ``zip`` in C; only domains with several entries are grouped in Python.
    """
    first_domain = dict(zip(reversed(subjects), reversed(domains), strict=True))
    canonical: dict[str, str | None] = {}
    alone: dict[str, frozenset[str]] = {}  # the set of a one-entry domain, shared
    skipped = []
    for dn in dict.fromkeys(subjects):  # first-occurrence order
        try:
            canonical[dn] = normal = normalise_dn(dn)
            alone[dn] = frozenset((normal,))
        except DNError as exc:
            canonical[dn] = None
            alone[dn] = _EMPTY
            skipped.append(f"{first_domain[dn]}: {exc}")
    index = dict(zip(domains, map(alone.__getitem__, subjects), strict=True))
    if len(index) < len(domains):  # some domains have several entries
        several = {d for d, n in Counter(domains).items() if n > 1}
        grouped: dict[str, set[str]] = {}
        for domain, dn in zip(domains, subjects, strict=True):
            if domain in several and (normal_dn := canonical[dn]) is not None:
                grouped.setdefault(domain, set()).add(normal_dn)
        for domain in several:
            index[domain] = frozenset(grouped.get(domain, ()))
    return index, skipped


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
    _check_size(data)  # the fast grammar has no room for a DTD (parse_document checks)
    fast = _load_fast(data, at=at, anchors=anchors, expected_signer=expected_signer)
    if fast is not None:
        generated, signer, rows, sha256 = fast
    else:
        root = parse_document(data)
        try:
            chain, _signed = verify_enveloped(root)
        except SignatureError as exc:
            raise ListeBlancheError(f"liste blanche signature refused: {exc}") from None
        check_signer(chain, at=at, anchors=anchors, expected_signer=expected_signer)
        generated, liste = _check_structure(root)
        entries = _read_entries_generic(liste)
        rows = _columns(entries)
        signer, sha256 = chain[0], hashlib.sha256(data).hexdigest()
    index, skipped = _index(rows[0], rows[1])
    return ListeBlanche(
        generated_at=generated,
        entries=len(rows[0]),
        domains=len(index),
        signer=signer,
        sha256=sha256,
        _index=index,
        _rows=rows,
        skipped=tuple(skipped),
    )


# --------------------------------------------------------------------------- signing


def _fmt_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_document(entries: Iterable[Entry], generated_at: datetime) -> etree._Element:
    """The unsigned tree, indented like the ANS file (4 spaces)."""

    def q(name: str) -> str:
        return f"{{{NS}}}{name}"

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
    return sign_document(
        build_document(entries, generated_at), signer_cert, signer_key, chain=chain
    )


def sign_document(
    root: etree._Element,
    signer_cert: x509.Certificate,
    signer_key: rsa.RSAPrivateKey,
    *,
    chain: Sequence[x509.Certificate] = (),
) -> bytes:
    """Sign any tree with the liste blanche profile (tests build odd ones)."""
    # Local import: only development and tests sign.
    from signxml.algorithms import (
        CanonicalizationMethod,
        DigestAlgorithm,
        SignatureConstructionMethod,
        SignatureMethod,
    )
    from signxml.signer import XMLSigner

    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signer.namespaces = {None: DS}  # type: ignore[dict-item]  # default ns, as ANS
    signed = signer.sign(
        root, key=signer_key, cert=[signer_cert, *chain], always_add_key_value=False
    )
    body: bytes = etree.tostring(signed, encoding="UTF-8")
    return b'<?xml version="1.0" encoding="UTF-8"?>' + body
