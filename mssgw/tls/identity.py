"""Certificate identities: subject DN parsing, normalisation, national ids.

SPEC TRUST-6 binds a peer to a domain by comparing the subject DN of its
certificate with the ``DNCertificatOperateur`` strings of the liste blanche,
"attribute by attribute, ignoring spacing and attribute-type case, order
significant".  Both sides are turned into one canonical string here so that
the comparison is a set membership (the liste blanche index stores canonical
strings; see ``mssgw.trust.listeblanche``).

Canonical form (our choice, documented in docs/trust.md):

* RDNs in RFC 4514 order (most specific first, as the liste blanche writes
  them: ``CN=...,OU=...,O=...,ST=...,C=FR``), order kept;
* attribute types upper case, aliases folded (``S``/``stateOrProvinceName``
  → ``ST``, ``2.5.4.3`` → ``CN`` ...), unknown types kept as dotted OIDs;
* values: surrounding quotes of the RFC 1779 form removed (the list has
  ``O="C.H. DE  CADILLAC"``), Unicode NFC, leading/trailing spaces removed,
  runs of white space collapsed to one space (RFC 4518 §2.6.1 "insignificant
  space handling"); the case of values is kept (SPEC does not ask to fold it);
* multi-valued RDNs sorted; values re-escaped per RFC 4514 §2.4.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

from cryptography import x509
from cryptography.x509.oid import NameOID

from mssgw.errors import MssgwError

RDN = tuple[tuple[str, str], ...]


class DNError(MssgwError):
    """A distinguished name string cannot be parsed."""


#: Attribute types by OID (RFC 4514 §3 plus the ones IGC-Santé uses).
_SHORT_BY_OID: dict[str, str] = {
    "2.5.4.3": "CN",
    "2.5.4.11": "OU",
    "2.5.4.10": "O",
    "2.5.4.8": "ST",
    "2.5.4.7": "L",
    "2.5.4.6": "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
    "2.5.4.5": "SERIALNUMBER",
    "2.5.4.4": "SN",
    "2.5.4.42": "GIVENNAME",
    "2.5.4.12": "T",
    "2.5.4.97": "ORGANIZATIONIDENTIFIER",
    "1.2.840.113549.1.9.1": "EMAILADDRESS",
}
_ALIASES: dict[str, str] = {
    "COMMONNAME": "CN",
    "ORGANIZATIONALUNITNAME": "OU",
    "ORGANIZATIONNAME": "O",
    "S": "ST",
    "STATEORPROVINCENAME": "ST",
    "LOCALITYNAME": "L",
    "COUNTRYNAME": "C",
    "STREETADDRESS": "STREET",
    "DOMAINCOMPONENT": "DC",
    "USERID": "UID",
    "SURNAME": "SN",
    "GN": "GIVENNAME",
    "G": "GIVENNAME",
    "TITLE": "T",
    "E": "EMAILADDRESS",
    "EMAIL": "EMAILADDRESS",
    **{short: short for short in _SHORT_BY_OID.values()},
}
_OID_RE = re.compile(r"^(OID\.)?([0-2](\.\d+)+)$", re.IGNORECASE)
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")


@functools.lru_cache(maxsize=256)
def canonical_type(name: str) -> str:
    """Fold an attribute type name or dotted OID to its canonical short name."""
    name = name.strip()
    oid = _OID_RE.match(name)
    if oid:
        return _SHORT_BY_OID.get(oid.group(2), oid.group(2))
    upper = name.upper()
    if not upper or not re.fullmatch(r"[A-Z][A-Z0-9-]*", upper):
        raise DNError(f"invalid attribute type {name!r}")
    return _ALIASES.get(upper, upper)


def canonical_value(value: str) -> str:
    """NFC, trimmed, inner white space runs collapsed (RFC 4518 §2.6.1).

    ``str.split()`` and ``\\s`` agree on what white space is (both use
    ``str.isspace``), and NFC leaves ASCII unchanged.
    """
    if not value.isascii():
        value = unicodedata.normalize("NFC", value)
    return " ".join(value.split())


_NEEDS_ESCAPE = re.compile(r'[,+"\\<>;\x00]|^[# ]| $')


def _escape(value: str) -> str:
    """Escape per RFC 4514 §2.4 so the canonical string parses back."""
    if not _NEEDS_ESCAPE.search(value):
        return value
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (i == 0 and ch in "# ") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        elif ch == "\x00":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


def _render(rdns: Sequence[RDN]) -> str:
    parts = []
    for rdn in rdns:
        if len(rdn) == 1:  # the common case, without sorting and joining
            kind, value = rdn[0]
            parts.append(f"{kind}={_escape(value)}")
        else:
            parts.append("+".join(f"{t}={_escape(v)}" for t, v in sorted(rdn)))
    return ",".join(parts)


# --------------------------------------------------------------------------- parsing


def parse_dn(text: str) -> list[RDN]:
    """Parse an RFC 4514 DN string, tolerating RFC 1779 quotes and spaces.

    Returns the RDNs in string order with canonical types and values.
    Raises ``DNError`` with the position of the first problem.
    """
    parser = _DNParser(text)
    return parser.parse()


class _DNParser:
    """A small hand-written scanner: the grammar is tiny, and cryptography's
    ``Name.from_rfc4514_string`` refuses the spacing and quoting the real
    liste blanche uses."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> DNError:
        return DNError(f"DN {self.text!r}: {what} at position {self.pos}")

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def parse(self) -> list[RDN]:
        if not self.text.strip():
            raise DNError("empty DN")
        rdns: list[RDN] = []
        attrs: list[tuple[str, str]] = []
        while True:
            attrs.append(self.attribute())
            self.skip_spaces()
            if self.pos >= len(self.text):
                rdns.append(tuple(attrs))
                return rdns
            sep = self.text[self.pos]
            self.pos += 1
            if sep in ",;":
                rdns.append(tuple(attrs))
                attrs = []
            elif sep != "+":
                raise self.fail(f"unexpected {sep!r}")

    def attribute(self) -> tuple[str, str]:
        self.skip_spaces()
        eq = self.text.find("=", self.pos)
        if eq < 0:
            raise self.fail("missing '='")
        kind = canonical_type(self.text[self.pos : eq]) if eq > self.pos else ""
        if not kind:
            raise self.fail("missing attribute type")
        self.pos = eq + 1
        self.skip_spaces()
        if self.pos < len(self.text) and self.text[self.pos] == '"':
            value = self.quoted()
        else:
            value = self.plain()
        return kind, canonical_value(value)

    def quoted(self) -> str:
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                out.append(self.escaped())
                continue
            out.append(ch)
            self.pos += 1
        raise self.fail("unterminated quoted value")

    def plain(self) -> str:
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in ",;+":
                break
            if ch == "\\":
                out.append(self.escaped())
                continue
            out.append(ch)
            self.pos += 1
        return "".join(out)

    def escaped(self) -> str:
        nxt = self.text[self.pos + 1 : self.pos + 3]
        if _HEX2.fullmatch(nxt):
            # \XX escapes are UTF-8 bytes; gather consecutive ones.
            raw = bytearray()
            while self.text[self.pos : self.pos + 1] == "\\" and _HEX2.fullmatch(
                self.text[self.pos + 1 : self.pos + 3]
            ):
                raw.append(int(self.text[self.pos + 1 : self.pos + 3], 16))
                self.pos += 3
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail("invalid UTF-8 in hex escape") from None
        if not nxt:
            raise self.fail("dangling backslash")
        self.pos += 2
        return nxt[0]


# --------------------------------------------------------------------------- public helpers


_SIMPLE_VALUE = re.compile(r"^[^\\\"+;<>#]*$")


def normalise_dn(text: str) -> str:
    """The canonical string of a DN written as text (liste blanche side)."""
    if _SIMPLE_VALUE.match(text):
        # Fast path (no escapes, quotes or multi-valued RDNs): most real DNs.
        rdns: list[RDN] = []
        for part in text.split(","):
            kind, eq, value = part.partition("=")
            if not eq:
                break
            rdns.append(((canonical_type(kind), canonical_value(value)),))
        else:
            return _render(rdns)
    return _render(parse_dn(text))


def name_to_dn(name: x509.Name) -> str:
    """The canonical string of an ``x509.Name`` (certificate side).

    ASN.1 order is least specific first; RFC 4514 strings are written the
    other way round, as the liste blanche does, hence ``reversed``.
    """
    rdns: list[RDN] = []
    for rdn in reversed(name.rdns):
        rdns.append(
            tuple(
                (
                    _SHORT_BY_OID.get(a.oid.dotted_string, a.oid.dotted_string),
                    canonical_value(a.value if isinstance(a.value, str) else a.value.hex()),
                )
                for a in rdn
            )
        )
    return _render(rdns)


def subject_dn(cert: x509.Certificate) -> str:
    """The canonical subject DN of a certificate."""
    return name_to_dn(cert.subject)


def same_dn(a: str, b: str) -> bool:
    """TRUST-6 comparison of two DN strings."""
    return normalise_dn(a) == normalise_dn(b)


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in name.get_attributes_for_oid(oid)]


#: Identifiant national of a person (RPPS "8" + 11 digits; ADELI "0" + 9).
_NATIONAL_ID_RE = re.compile(r"^(8\d{11}|0\d{9})$")


def national_id(cert: x509.Certificate) -> str | None:
    """The health professional's national id carried by a CPS-like certificate.

    IGC-Santé personal certificates put the "identifiant national" (type
    digit + RPPS or ADELI number) in the CN; some profiles carry it in
    ``serialNumber`` or ``UID``.  We look there in that order and accept
    only the documented shapes, so a server certificate never yields one.
    """
    for oid in (NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER, NameOID.USER_ID):
        for value in _attr(cert.subject, oid):
            if _NATIONAL_ID_RE.match(value):
                return value
    return None


def rpps(cert: x509.Certificate) -> str | None:
    """The 11-digit RPPS number, when the national id is an RPPS one."""
    nid = national_id(cert)
    return nid[1:] if nid is not None and nid.startswith("8") else None


#: Structure ids as the directory writes them: "1" + FINESS, "3" + SIRET, …
_STRUCTURE_ID_RE = re.compile(r"^\d{9,15}$")


def structure_id(cert: x509.Certificate) -> str | None:
    """The structure id of an organisation certificate (its ``OU``).

    Structure certificates (APP mailboxes, SPEC BAL-3) name the structure in
    ``OU`` (FINESS or SIRET based), as operator certificates do.  A personal
    certificate is not a structure certificate: ``None`` when a national id
    is present.
    """
    if national_id(cert) is not None:
        return None
    for value in _attr(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME):
        if _STRUCTURE_ID_RE.match(value):
            return value
    return None
