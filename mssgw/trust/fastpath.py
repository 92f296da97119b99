"""Read a liste blanche whose bytes already are its canonical form.

Why: the digest of the liste blanche covers the exclusive C14N of the whole
document minus its signature (XML-DSig enveloped transform).  The general
path parses the 3.7 MB file into a tree, canonicalises the tree back into
bytes and reads the entries from those bytes: three passes over the data,
the last two about as costly as the parse itself.  The ANS writes the list
so that the bytes between the document element's start tag and the
``Signature`` are, byte for byte, already canonical (no attributes, no
comments, no CDATA, no character references, only ``&amp; &lt; &gt;``).
When -- and only when -- that can be *proved* from the raw bytes with one
strict grammar, the canonical form is a plain slice of the file, and one
pass both checks the grammar and splits out the fields.

The grammar accepted here is a tiny subset of XML on which "well-formed"
and "canonical" are checked by the same regular expressions:

* an optional ``<?xml version="1.0" encoding="UTF-8"?>`` declaration;
* ``<ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema">``
  (exclusive C14N renders exactly this start tag);
* ``DateDeGeneration`` then ``ListeDomaines`` holding only ``Domaine``
  elements with the six schema fields in schema order;
* one ``<Signature xmlns="http://www.w3.org/2000/09/xmldsig#">`` element,
  parsed on its own by lxml (its SignedInfo canonicalises the same alone,
  since it declares its own namespace), then the end tag;
* text made only of XML characters other than ``< > &`` and CR, plus the
  three entity references canonical form itself writes; whitespace between
  elements made of space, tab and LF only (a parser turns CR LF into LF,
  so CR would make the file differ from its canonical form).

Anything else -- a comment, an attribute, another order, a ``&#13;`` in a
field, a namespace prefix -- returns ``None`` and the caller takes the
general path, which remains the reference for every document.  This path
never *accepts* a document on its own: the signature and the digest over
the slice are checked exactly as on the general path, and a document the
grammar accepts has exactly one reading, the one lxml would give.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import threading
from dataclasses import dataclass

from lxml import etree  # type: ignore[import-untyped]

#: Field text: anything but "<" (sre scans a negated literal fastest); the
#: other characters canonical text cannot hold as such (">", "&" outside the
#: entities canonical form writes, CR, C0 controls) are refused by
#: ``_characters_ok`` over all fields at once, in a few C-level passes.
_TEXT = rb"[^<]*"
_CONTROLS = bytes(c for c in range(0x20) if c not in (0x09, 0x0A))
_BAD_AMPERSAND = re.compile(rb"&(?!amp;|lt;|gt;)")
#: White space a field may start or end with (XML 1.0 §2.3 S, CR excluded).
_XML_SPACES = " \t\n"
_WS = rb"[ \t\n]*"

_HEAD = re.compile(
    rb'(?:<\?xml version="1\.0" encoding="UTF-8"\?>)?'
    + _WS
    + rb'(<ListeBlancheMSSante xmlns="https://listeblanche\.mssante\.fr/schema">)'
    + _WS
    + rb"<DateDeGeneration>("
    + _TEXT
    + rb")</DateDeGeneration>"
    + _WS
    + rb"<ListeDomaines>"
)


def _field(name: bytes) -> bytes:
    return _WS + b"<" + name + b">(" + _TEXT + b")</" + name + b">"


_FIELD_NAMES = (
    b"Nom",
    b"Description",
    b"DNCertificatOperateur",
    b"ResponsableContact",
    b"SupportContact",
    b"DateMAJ",
)
#: One Domaine, leading whitespace included so that matches are contiguous.
_DOMAINE = re.compile(
    _WS + rb"<Domaine>" + b"".join(_field(name) for name in _FIELD_NAMES) + _WS + rb"</Domaine>"
)
_GROUPS = 6
_STRIDE = _GROUPS + 1

_TAIL = re.compile(
    rb"</ListeDomaines>"
    + _WS
    + rb'(<Signature xmlns="http://www\.w3\.org/2000/09/xmldsig#">.*</Signature>)'
    + rb"("
    + _WS
    + rb")</ListeBlancheMSSante>"
    + _WS,
    re.DOTALL,
)
_ONLY_WS = re.compile(_WS)
#: U+FFFE and U+FFFF are valid UTF-8 but not XML characters (XML 1.0 §2.2).
_NON_CHARACTERS = ("\ufffe", "\uffff")


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the parts of a liste blanche are in its bytes (nothing verified yet)."""

    data: bytes
    #: ``DateDeGeneration`` as written.
    generated: bytes
    #: The document element's start tag; the ListeDomaines content; its end.
    root_start: int
    domaines_start: int
    domaines_end: int
    #: The ListeDomaines content (see ``expand_empty``).
    domaines: bytes
    #: The ``Signature`` element; the whitespace after it, up to the end tag.
    signature_start: int
    signature_end: int
    after_signature_end: int

    def canonical_parts(self) -> tuple[memoryview | bytes, ...]:
        """The bytes the digest covers (exclusive C14N, signature removed),
        in pieces so that they need not be copied into one."""
        view = memoryview(self.data)
        return (
            view[self.root_start : self.domaines_start],
            self.domaines,
            view[self.domaines_end : self.signature_start],
            view[self.signature_end : self.after_signature_end],
            b"</ListeBlancheMSSante>",
        )

    def canonical(self) -> bytes:
        return b"".join(self.canonical_parts())


def locate(data: bytes) -> Layout | None:
    """The layout of ``data`` if it can be in the fast grammar, else None.

    Cheap (the head and the tail only): the ListeDomaines content is checked
    by ``read_fields``, which must also succeed before anything is used.
    """
    head = _HEAD.match(data)
    if head is None:
        return None
    end = data.rfind(b"</ListeDomaines>")
    tail = _TAIL.fullmatch(data, end) if end >= head.end() else None
    if tail is None:
        return None
    return Layout(
        data=data,
        generated=head.group(2),
        root_start=head.start(1),
        domaines_start=head.end(),
        domaines_end=end,
        domaines=data[head.end() : end],
        signature_start=tail.start(1),
        signature_end=tail.end(1),
        after_signature_end=tail.end(2),
    )


def expand_empty(layout: Layout) -> Layout | None:
    """The layout with empty fields written ``<X></X>``, as canonical form
    writes them (C14N §2.3), when the file writes some ``<X/>`` (lxml does);
    None when it has none.  Only tried once ``read_fields`` failed: looking
    for "/>" costs 3 ms on the real list, as much as the rest of ``locate``
    ("/>" cannot occur in field text, which has no ">")."""
    region = layout.domaines
    if b"/>" not in region:
        return None
    for name in _FIELD_NAMES:
        region = region.replace(b"<" + name + b"/>", b"<" + name + b"></" + name + b">")
    return dataclasses.replace(layout, domaines=region)


def read_fields(layout: Layout) -> tuple[list[str], list[str], list[bytes]] | None:
    """(Nom values, DNCertificatOperateur values, every field) of the
    Domaine elements, or None when the ListeDomaines content is not
    back-to-back Domaine elements of the schema in canonical form.

    Nom and DN are decoded, unescaped and stripped (they are indexed); every field is
    also returned raw, six per Domaine in schema order, still in canonical
    form (display fields are decoded on demand).  ``split`` keeps the text
    between matches: every gap but the last must be empty (the pattern eats
    leading whitespace) and the last whitespace only.
    """
    parts = _DOMAINE.split(layout.domaines)
    gaps = parts[::_STRIDE]
    if any(gaps[:-1]) or not _ONLY_WS.fullmatch(gaps[-1]):
        return None
    fields = [b""] * (len(parts) - len(gaps))
    for group in range(_GROUPS):
        fields[group::_GROUPS] = parts[group + 1 :: _STRIDE]
    if not _characters_ok(b"<".join([layout.generated, *fields])):
        return None
    return _decoded(parts[1::_STRIDE]), _decoded(parts[3::_STRIDE]), fields


def _characters_ok(joined: bytes) -> bool:
    """Every field is canonical text: UTF-8, XML characters (§2.2) but CR,
    no ">" and "&" only in ``&amp; &lt; &gt;`` (exclusive C14N §2.3 writes
    text so).  Markup and whitespace are ASCII and checked by the patterns;
    "<" joins the fields (the pattern keeps it out of them)."""
    if b">" in joined or len(joined.translate(None, _CONTROLS)) != len(joined):
        return False
    if b"&" in joined and _BAD_AMPERSAND.search(joined):
        return False
    try:
        text = joined.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(bad in text for bad in _NON_CHARACTERS)


def _decoded(values: list[bytes]) -> list[str]:
    """Values decoded (already known to be UTF-8), unescaped and stripped,
    in a few passes over all of them at once (the common case)."""
    if not values:
        return []
    text = b"<".join(values).decode("utf-8")
    texts = text.split("<")
    if "&" in text:
        texts = [_unescape(t) if "&" in t else t for t in texts]
    if any(space in text for space in _XML_SPACES):
        texts = [t.strip(_XML_SPACES) for t in texts]
    return texts


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class Digests:
    """SHA-256 of the whole file and of the canonical content, in a thread.

    hashlib releases the GIL on large inputs, so both hashes (~3.5 ms for
    the real list) run beside the field reading instead of after it.
    """

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._result: tuple[str, bytes] | None = None
        self._thread = threading.Thread(target=self._run, name="liste-digest", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        whole = hashlib.sha256(self._layout.data).hexdigest()
        canonical = hashlib.sha256()
        for part in self._layout.canonical_parts():
            canonical.update(part)
        self._result = (whole, canonical.digest())

    def result(self) -> tuple[str, bytes]:
        """(hex SHA-256 of the file, SHA-256 digest of the canonical content)."""
        self._thread.join()
        if self._result is None:  # the thread died (MemoryError): hash here
            self._run()
        assert self._result is not None
        return self._result


def parse_signature(layout: Layout, parser: etree.XMLParser) -> etree._Element | None:
    """The ``Signature`` element parsed on its own (it declares its namespace)."""
    try:
        return etree.fromstring(layout.data[layout.signature_start : layout.signature_end], parser)
    except etree.XMLSyntaxError:
        return None
