"""SEARCH criteria (RFC 3501 §6.4.4, RFC 7162 §3.1.5 MODSEQ).

The parser desugars the RFC 3501 vocabulary into a few node types so that
the evaluator has little to know: FROM/TO/CC/BCC/SUBJECT are
:class:`HeaderKey`, ANSWERED/UNSEEN/KEYWORD... are :class:`FlagKey`, NEW is
``And(Recent, Unseen)``, a parenthesised list or the top-level list is
:class:`And`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from .errors import BadCommand, ImapProtocolError
from .lexer import Cursor
from .sequence import SequenceSet

MAX_MODSEQ = (1 << 63) - 1  # RFC 7162 §7: mod-sequence-value is 63-bit
MAX_DEPTH = 64  # nesting of NOT/OR/parentheses, bounding recursion

SUPPORTED_CHARSETS = ("US-ASCII", "UTF-8")
BADCHARSET_CODE = "BADCHARSET (" + " ".join(SUPPORTED_CHARSETS) + ")"


@dataclass(frozen=True, slots=True)
class AllKey:
    """ALL: every message."""


@dataclass(frozen=True, slots=True)
class And:
    keys: tuple[SearchKey, ...]


@dataclass(frozen=True, slots=True)
class Or:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class Not:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class SequenceKey:
    """A sequence set (message numbers) or ``UID`` set (``uid=True``)."""

    sequence: SequenceSet
    uid: bool = False


@dataclass(frozen=True, slots=True)
class FlagKey:
    """Messages with (``present``) or without the flag; ``\\Recent`` too."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class HeaderKey:
    """Header ``field`` contains ``value`` (case-insensitive substring);
    an empty value matches every message having the field (RFC 3501)."""

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class TextKey:
    """``where`` is ``"BODY"`` (body only) or ``"TEXT"`` (header and body)."""

    where: str
    value: str


@dataclass(frozen=True, slots=True)
class DateKey:
    """``field`` is ``"INTERNAL"`` (BEFORE/ON/SINCE) or ``"SENT"`` (Date:
    header, SENTBEFORE/...); ``op`` is BEFORE, ON or SINCE.  Dates ignore
    time and timezone (RFC 3501 §6.4.4)."""

    field: str
    op: str
    date: date


@dataclass(frozen=True, slots=True)
class SizeKey:
    """``op`` is ``"LARGER"`` or ``"SMALLER"`` (RFC822.SIZE, strict)."""

    op: str
    size: int


@dataclass(frozen=True, slots=True)
class ModSeqKey:
    """RFC 7162 §3.1.5: MODSEQ >= ``modseq``; the optional entry (a flag's
    metadata name and priv/shared/all) is kept for completeness."""

    modseq: int
    entry: str | None = None
    entry_type: str | None = None


SearchKey = (
    AllKey
    | And
    | Or
    | Not
    | SequenceKey
    | FlagKey
    | HeaderKey
    | TextKey
    | DateKey
    | SizeKey
    | ModSeqKey
)

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "RECENT": ("\\Recent", True),
    "OLD": ("\\Recent", False),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_HEADER_KEYS = {"FROM": "From", "TO": "To", "CC": "Cc", "BCC": "Bcc", "SUBJECT": "Subject"}
_DATE_KEYS = {
    "BEFORE": ("INTERNAL", "BEFORE"),
    "ON": ("INTERNAL", "ON"),
    "SINCE": ("INTERNAL", "SINCE"),
    "SENTBEFORE": ("SENT", "BEFORE"),
    "SENTON": ("SENT", "ON"),
    "SENTSINCE": ("SENT", "SINCE"),
}
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DATE_RE = re.compile(rb"(\d{1,2})-([A-Za-z]{3})-(\d{4})")
_SEQ_RE = re.compile(rb"[0-9*:,$]+")


def parse_charset(value: bytes) -> str:
    """Check a SEARCH ``CHARSET`` argument (RFC 3501 §6.4.4)."""
    name = value.decode("ascii", "replace").upper()
    if name not in SUPPORTED_CHARSETS:
        raise ImapProtocolError(f"charset {name[:40]} is not supported", code=BADCHARSET_CODE)
    return name


def parse_search_criteria(cur: Cursor) -> SearchKey:
    """``1*(SP search-key)`` after the optional CHARSET; the caller has
    consumed the leading SP of the first key."""
    keys = [_key(cur, 0)]
    while not cur.at_end():
        cur.sp()
        keys.append(_key(cur, 0))
    return keys[0] if len(keys) == 1 else And(tuple(keys))


def parse_date(cur: Cursor) -> date:
    """``date = date-text / DQUOTE date-text DQUOTE`` (RFC 3501 §9)."""
    quoted = cur.skip(b'"')
    raw = cur.match(_DATE_RE, "a date like 1-Feb-2024")
    if quoted and not cur.skip(b'"'):
        raise BadCommand("unterminated quoted date")
    return date_from_match(raw)


def date_from_match(raw: bytes) -> date:
    m = _DATE_RE.fullmatch(raw)
    if m is None:
        raise BadCommand("bad date")
    month = m.group(2).decode("ascii").upper()
    if month not in MONTHS:
        raise BadCommand(f"bad month {month!r}")
    try:
        return date(int(m.group(3)), MONTHS.index(month) + 1, int(m.group(1)))
    except ValueError as exc:
        raise BadCommand("no such date") from exc


def _text(cur: Cursor) -> str:
    raw = cur.astring()
    try:
        # US-ASCII is a subset of UTF-8, so one decoder serves both.
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadCommand("search string is not valid in the given charset") from exc


def _key(cur: Cursor, depth: int) -> SearchKey:
    if depth > MAX_DEPTH:
        raise BadCommand("search criteria nested too deeply")
    c = cur.peek()
    if c == 0x28:  # "("
        cur.pos += 1
        keys = [_key(cur, depth + 1)]
        while not cur.skip(b")"):
            cur.sp()
            keys.append(_key(cur, depth + 1))
        return keys[0] if len(keys) == 1 else And(tuple(keys))
    if c is not None and (0x30 <= c <= 0x39 or c in (0x2A, 0x24)):  # digit, "*", "$"
        return SequenceKey(SequenceSet.parse(cur.match(_SEQ_RE, "a sequence set")))
    word = cur.keyword()
    if word in _FLAG_KEYS:
        flag, present = _FLAG_KEYS[word]
        return FlagKey(flag, present)
    if word == "ALL":
        return AllKey()
    if word == "NEW":
        return And((FlagKey("\\Recent"), FlagKey("\\Seen", False)))
    cur.sp()
    return _key_with_argument(cur, word, depth)


def _key_with_argument(cur: Cursor, word: str, depth: int) -> SearchKey:
    if word in _HEADER_KEYS:
        return HeaderKey(_HEADER_KEYS[word], _text(cur))
    if word in _DATE_KEYS:
        field, op = _DATE_KEYS[word]
        return DateKey(field, op, parse_date(cur))
    if word in ("BODY", "TEXT"):
        return TextKey(word, _text(cur))
    if word in ("KEYWORD", "UNKEYWORD"):
        return FlagKey(cur.atom().decode("ascii"), word == "KEYWORD")
    if word == "HEADER":
        field = cur.astring().decode("ascii", "replace")
        cur.sp()
        return HeaderKey(field, _text(cur))
    if word in ("LARGER", "SMALLER"):
        return SizeKey(word, cur.number())
    if word == "UID":
        return SequenceKey(SequenceSet.parse(cur.match(_SEQ_RE, "a sequence set")), uid=True)
    if word == "NOT":
        return Not(_key(cur, depth + 1))
    if word == "OR":
        left = _key(cur, depth + 1)
        cur.sp()
        return Or(left, _key(cur, depth + 1))
    if word == "MODSEQ":
        return _modseq(cur)
    raise BadCommand(f"unknown search key {word[:30]}")


def _modseq(cur: Cursor) -> ModSeqKey:
    """``MODSEQ [SP entry-name SP entry-type-req] SP mod-sequence-valzer``."""
    entry = entry_type = None
    if cur.peek() == 0x22:
        entry = cur.quoted().decode("ascii", "replace")
        cur.sp()
        entry_type = cur.keyword()
        if entry_type not in ("PRIV", "SHARED", "ALL"):
            raise BadCommand("MODSEQ entry type must be priv, shared or all")
        cur.sp()
    return ModSeqKey(cur.number(limit=MAX_MODSEQ), entry, entry_type)
