"""Response building (RFC 3501 §7): pure functions returning bytes.

Values are encoded the way the grammar requires: a string that can be quoted
is quoted, anything with CR, LF, NUL, 8-bit octets or over
:data:`MAX_QUOTED` octets becomes a literal; ``None`` is ``NIL``.  FETCH
responses are returned as a list of chunks so that a message body is written
to the transport without being copied into one big buffer.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from . import utf7
from .errors import ImapProtocolError
from .search import MONTHS
from .sequence import SequenceSet

CRLF = b"\r\n"
MAX_QUOTED = 1024
_QUOTABLE_RE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*")
_ATOM_RE = re.compile(rb'[^(){ \x00-\x1f\x7f-\xff%*"\\\]]+')
_ASTRING_RE = re.compile(rb'[^(){ \x00-\x1f\x7f-\xff%*"\\]+')
_TEXT_UNSAFE_RE = re.compile(r"[\x00-\x1f\x7f]+")

FetchValue = bytes | Sequence[bytes]


# -- strings ----------------------------------------------------------------


def _octets(value: bytes | str) -> bytes:
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value


def quoted(value: bytes | str) -> bytes:
    """A quoted string; the caller made sure the value is quotable."""
    data = _octets(value)
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def can_quote(data: bytes) -> bool:
    return len(data) <= MAX_QUOTED and _QUOTABLE_RE.fullmatch(data) is not None


def literal(value: bytes | str) -> bytes:
    """``{n}CRLF`` followed by the octets (RFC 3501 §4.3)."""
    data = _octets(value)
    return b"{%d}\r\n" % len(data) + data


def literal_chunks(data: bytes) -> tuple[bytes, bytes]:
    """A literal as (announcement, octets), to write without copying."""
    return (b"{%d}\r\n" % len(data), data)


def string(value: bytes | str) -> bytes:
    """``string``: quoted when possible, literal otherwise."""
    data = _octets(value)
    return quoted(data) if can_quote(data) else literal(data)


def nstring(value: bytes | str | None) -> bytes:
    return b"NIL" if value is None else string(value)


def astring(value: bytes | str) -> bytes:
    """``astring``: a bare atom when the grammar allows it."""
    data = _octets(value)
    if _ASTRING_RE.fullmatch(data) and data.upper() != b"NIL":
        return data
    return string(data)


def mailbox(name: str) -> bytes:
    """A folder name: modified UTF-7 (RFC 3501 §5.1.3), INBOX as an atom."""
    if name.upper() == "INBOX":
        return b"INBOX"
    return astring(utf7.encode(name))


def flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + " ".join(flags).encode("ascii") + b")"


def internal_date(value: datetime) -> bytes:
    """``date-time`` (RFC 3501 §9): ``"01-Feb-2024 10:11:12 +0200"``."""
    offset = value.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    text = (
        f'"{value.day:02d}-{MONTHS[value.month - 1].title()}-{value.year:04d} '
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} "
        f'{sign}{minutes // 60:02d}{minutes % 60:02d}"'
    )
    return text.encode("ascii")


def _text(text: str) -> bytes:
    """``text`` of a status response: one line, never empty."""
    clean = _TEXT_UNSAFE_RE.sub(" ", text).strip()
    return clean.encode("utf-8") if clean else b"done"


# -- status responses -------------------------------------------------------


def response(tag: str | None, status: str, text: str, code: str | bytes | None = None) -> bytes:
    """``tag OK [CODE] text`` (``tag=None`` gives an untagged ``*`` line).

    ``status`` is OK, NO, BAD, BYE or PREAUTH; ``code`` the response code
    without brackets, e.g. ``codes.uidvalidity(7)`` or ``"TRYCREATE"``.
    """
    head = (tag or "*").encode("ascii") + b" " + status.encode("ascii") + b" "
    if code:
        head += b"[" + _octets(code) + b"] "
    return head + _text(text) + CRLF


def ok(tag: str | None, text: str, code: str | bytes | None = None) -> bytes:
    return response(tag, "OK", text, code)


def no(tag: str | None, text: str, code: str | bytes | None = None) -> bytes:
    return response(tag, "NO", text, code)


def bad(tag: str | None, text: str, code: str | bytes | None = None) -> bytes:
    return response(tag, "BAD", text, code)


def bye(text: str, code: str | bytes | None = None) -> bytes:
    return response(None, "BYE", text, code)


def error_response(error: ImapProtocolError) -> bytes:
    """What to send for a reader/parser error (``BYE`` when fatal)."""
    if error.fatal:
        return bye(error.message, error.code)
    return response(error.tag, error.status, error.message, error.code)


def continuation(text: str = "Ready") -> bytes:
    """Command continuation request (RFC 3501 §7.5)."""
    return b"+ " + _text(text) + CRLF


def continuation_data(data: bytes) -> bytes:
    """A SASL challenge: ``+ <base64>`` (RFC 3501 §6.2.2)."""
    return b"+ " + base64.b64encode(data) + CRLF


class codes:
    """Response codes (RFC 3501 §7.1, RFC 4315, RFC 5530, RFC 7162...)."""

    ALERT = "ALERT"
    PARSE = "PARSE"
    READ_ONLY = "READ-ONLY"
    READ_WRITE = "READ-WRITE"
    TRYCREATE = "TRYCREATE"
    ALREADYEXISTS = "ALREADYEXISTS"
    NONEXISTENT = "NONEXISTENT"
    TOOBIG = "TOOBIG"
    CANNOT = "CANNOT"
    LIMIT = "LIMIT"
    INUSE = "INUSE"
    OVERQUOTA = "OVERQUOTA"
    NOPERM = "NOPERM"
    SERVERBUG = "SERVERBUG"
    UNAVAILABLE = "UNAVAILABLE"
    AUTHENTICATIONFAILED = "AUTHENTICATIONFAILED"
    AUTHORIZATIONFAILED = "AUTHORIZATIONFAILED"
    PRIVACYREQUIRED = "PRIVACYREQUIRED"
    EXPUNGEISSUED = "EXPUNGEISSUED"
    CLOSED = "CLOSED"  # RFC 7162 §3.2.11
    NOMODSEQ = "NOMODSEQ"  # RFC 7162 §3.1.2.2
    UIDNOTSTICKY = "UIDNOTSTICKY"  # RFC 4315

    @staticmethod
    def uidvalidity(value: int) -> bytes:
        return b"UIDVALIDITY %d" % value

    @staticmethod
    def uidnext(value: int) -> bytes:
        return b"UIDNEXT %d" % value

    @staticmethod
    def unseen(value: int) -> bytes:
        return b"UNSEEN %d" % value

    @staticmethod
    def highestmodseq(value: int) -> bytes:
        return b"HIGHESTMODSEQ %d" % value

    @staticmethod
    def permanentflags(flags: Iterable[str]) -> bytes:
        """Include ``\\*`` so clients may create keywords (SPEC STORE-3)."""
        return b"PERMANENTFLAGS " + flag_list(flags)

    @staticmethod
    def capability(capabilities: Iterable[str]) -> bytes:
        return b"CAPABILITY " + " ".join(capabilities).encode("ascii")

    @staticmethod
    def appenduid(uidvalidity: int, uids: Iterable[int]) -> bytes:
        """RFC 4315 §3: ``APPENDUID v uid-set``."""
        return b"APPENDUID %d " % uidvalidity + bytes(SequenceSet.from_ints(uids))

    @staticmethod
    def copyuid(uidvalidity: int, source: Sequence[int], target: Sequence[int]) -> bytes:
        """RFC 4315 §3: source and target UIDs pair up in order, so both are
        compressed without sorting away that pairing when it matters."""
        return b"COPYUID %d " % uidvalidity + _ordered_set(source) + b" " + _ordered_set(target)

    @staticmethod
    def modified(sequence: Iterable[int]) -> bytes:
        """RFC 7162 §3.1.3: messages that failed UNCHANGEDSINCE."""
        return b"MODIFIED " + bytes(SequenceSet.from_ints(sequence))

    @staticmethod
    def badcharset(charsets: Iterable[str] = ("US-ASCII", "UTF-8")) -> bytes:
        return b"BADCHARSET (" + " ".join(charsets).encode("ascii") + b")"

    @staticmethod
    def appendlimit(limit: int) -> bytes:
        return b"APPENDLIMIT %d" % limit


def _ordered_set(values: Sequence[int]) -> bytes:
    """Compress runs of consecutive ascending values, keeping the order.

    RFC 4315 pairs the n-th source UID with the n-th target UID, so a set
    given out of order must not be sorted.
    """
    if list(values) == sorted(set(values)):
        return bytes(SequenceSet.from_ints(values))
    parts: list[str] = []
    start = prev = None
    for v in values:
        if prev is not None and v == prev + 1:
            prev = v
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = v
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(parts).encode("ascii")


# -- data responses ---------------------------------------------------------


def capability_data(capabilities: Iterable[str]) -> bytes:
    return b"* CAPABILITY " + " ".join(capabilities).encode("ascii") + CRLF


def exists(count: int) -> bytes:
    return b"* %d EXISTS\r\n" % count


def recent(count: int) -> bytes:
    return b"* %d RECENT\r\n" % count


def expunge(msn: int) -> bytes:
    return b"* %d EXPUNGE\r\n" % msn


def flags_data(flags: Iterable[str]) -> bytes:
    return b"* FLAGS " + flag_list(flags) + CRLF


def list_data(
    name: str,
    delimiter: str | None,
    attributes: Iterable[str] = (),
    *,
    kind: str = "LIST",
    childinfo_subscribed: bool = False,
) -> bytes:
    """``* LIST (\\HasNoChildren \\Sent) "/" "Sent"`` (``kind="LSUB"`` too).

    ``childinfo_subscribed`` adds the RFC 5258 §3.5 extended item
    ``("CHILDINFO" ("SUBSCRIBED"))``.
    """
    delim = b"NIL" if delimiter is None else quoted(delimiter)
    line = (
        b"* "
        + kind.encode("ascii")
        + b" "
        + flag_list(attributes)
        + b" "
        + delim
        + b" "
        + mailbox(name)
    )
    if childinfo_subscribed:
        line += b' ("CHILDINFO" ("SUBSCRIBED"))'
    return line + CRLF


def status_data(name: str, items: Mapping[str, int]) -> bytes:
    """``* STATUS name (MESSAGES 3 UNSEEN 1)`` in the order given."""
    body = " ".join(f"{k} {v}" for k, v in items.items()).encode("ascii")
    return b"* STATUS " + mailbox(name) + b" (" + body + b")" + CRLF


def search_data(numbers: Iterable[int], highest_modseq: int | None = None) -> bytes:
    """``* SEARCH 2 5`` (RFC 3501 §7.2.5) with the RFC 7162 §3.1.5 MODSEQ."""
    line = b"* SEARCH"
    for n in numbers:
        line += b" %d" % n
    if highest_modseq is not None:
        line += b" (MODSEQ %d)" % highest_modseq
    return line + CRLF


def enabled_data(capabilities: Iterable[str]) -> bytes:
    """RFC 5161 §3.2 (the line exists even when nothing was enabled)."""
    caps = " ".join(capabilities).encode("ascii")
    return b"* ENABLED" + (b" " + caps if caps else b"") + CRLF


def id_data(params: Mapping[str, str | None] | None) -> bytes:
    """RFC 2971 §3.2: ``* ID ("name" "mssgw" ...)`` or ``* ID NIL``."""
    if not params:
        return b"* ID NIL\r\n"
    body = b" ".join(string(k) + b" " + nstring(v) for k, v in params.items())
    return b"* ID (" + body + b")" + CRLF


Namespaces = Sequence[tuple[str, str | None]] | None


def namespace_data(
    personal: Namespaces, other: Namespaces = None, shared: Namespaces = None
) -> bytes:
    """RFC 2342 §5: ``* NAMESPACE (("" "/")) NIL NIL``."""

    def one(spaces: Namespaces) -> bytes:
        if not spaces:
            return b"NIL"
        return (
            b"("
            + b"".join(
                b"("
                + string(utf7.encode(prefix))
                + b" "
                + (b"NIL" if d is None else quoted(d))
                + b")"
                for prefix, d in spaces
            )
            + b")"
        )

    return b"* NAMESPACE " + one(personal) + b" " + one(other) + b" " + one(shared) + CRLF


def fetch_data(msn: int, items: Sequence[tuple[bytes, FetchValue]]) -> list[bytes]:
    """``* n FETCH (name value ...)`` as chunks (write them in order).

    A value is encoded bytes (``b"(\\\\Seen)"``, ``b"12"``) or a sequence of
    chunks such as :func:`section_value` returns, which are passed through
    unjoined so a large body is never copied.
    """
    out: list[bytes] = []
    head = b"* %d FETCH (" % msn
    for i, (name, value) in enumerate(items):
        head += (b" " if i else b"") + name + b" "
        if isinstance(value, bytes):
            head += value
        else:
            out.append(head)
            out.extend(value)
            head = b""
    out.append(head + b")" + CRLF)
    return out


def section_value(data: bytes | None) -> tuple[bytes, ...]:
    """A ``BODY[...]`` value: always a literal (bodies may hold CR/LF and
    8-bit octets), ``NIL`` for a section that does not exist."""
    if data is None:
        return (b"NIL",)
    return literal_chunks(data)
