"""Command grammar (RFC 3501 §9 and the extensions listed in the docs).

:func:`parse_command` turns one framed command (line segments + literals,
see :mod:`.lexer`) into a :mod:`.commands` dataclass or raises
:class:`~.errors.ImapProtocolError` carrying the tag.  The reader calls it;
tests and tools may call :func:`parse_line` on a complete command.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from . import utf7
from .commands import (
    Append,
    Authenticate,
    Capability,
    Check,
    Close,
    Command,
    Copy,
    Create,
    Delete,
    Enable,
    Examine,
    Expunge,
    Fetch,
    FetchAttribute,
    Id,
    Idle,
    List,
    Login,
    Logout,
    Lsub,
    MailboxName,
    Move,
    Namespace,
    Noop,
    Rename,
    Search,
    Section,
    Select,
    StartTLS,
    Status,
    Store,
    Subscribe,
    Unselect,
    Unsubscribe,
)
from .errors import BadCommand, ImapProtocolError
from .lexer import LITERAL_PREFIX_RE, Cursor, LiteralValue
from .search import MAX_MODSEQ, MONTHS, parse_charset, parse_search_criteria
from .sequence import SequenceSet

STATUS_ITEMS = frozenset(
    {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "SIZE"}
)
SYSTEM_FLAGS = {
    f.upper(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
}
LIST_SELECT_OPTIONS = frozenset({"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"})
SPECIAL_USE = {
    f.upper(): f
    for f in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
}
ID_MAX_PAIRS = 30  # RFC 2971 §3.3

_FETCH_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_SIMPLE_FETCH = frozenset(
    {
        "ENVELOPE",
        "FLAGS",
        "INTERNALDATE",
        "RFC822",
        "RFC822.HEADER",
        "RFC822.SIZE",
        "RFC822.TEXT",
        "BODY",
        "BODYSTRUCTURE",
        "UID",
        "MODSEQ",
    }
)
_FETCH_WORD_RE = re.compile(rb"[A-Za-z0-9.]+")
_SEQ_RE = re.compile(rb"[0-9*:,$]+")
_DATE_TIME_RE = re.compile(
    rb'"([ \d]\d|\d)-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})"'
)
_BASE64_RE = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


def parse_line(line: bytes) -> Command:
    """Parse a command given as one buffer, literals included.

    Convenience for tests and tools: splits ``{n}``/``{n+}`` literals the way
    the reader does (line terminators included), then parses.
    """
    lines: list[bytes] = []
    literals: list[LiteralValue] = []
    pos = 0
    while True:
        end = line.find(b"\n", pos)
        if end < 0:
            lines.append(line[pos:])
            break
        segment = line[pos:end].removesuffix(b"\r")
        m = LITERAL_PREFIX_RE.search(segment)
        if m is None:
            lines.append(segment)
            if line[end + 1 :]:
                raise BadCommand("data after the end of the command")
            break
        size = int(m.group(1))
        lines.append(segment)
        literals.append(line[end + 1 : end + 1 + size])
        pos = end + 1 + size
    return parse_command(lines, literals)


def parse_command(lines: list[bytes], literals: list[LiteralValue]) -> Command:
    """Parse a framed command; errors carry the tag once it is known."""
    cur = Cursor(lines, literals)
    tag: str | None = None
    try:
        tag = cur.tag()
        cur.sp()
        word = cur.keyword()
        handler = _HANDLERS.get(word)
        if handler is None:
            raise BadCommand(f"unknown command {word[:30]}")
        command = handler(cur, tag)
        cur.expect_end()
        return command
    except ImapProtocolError as exc:
        raise exc.with_tag(tag) from None


def command_head(line: bytes) -> tuple[str | None, str | None]:
    """Tag and command word of a first line segment, without raising.

    The reader uses it to refuse an unknown command before inviting its
    literal, and to label streamed literals.
    """
    cur = Cursor([line], [])
    try:
        tag = cur.tag()
    except ImapProtocolError:
        return None, None
    try:
        cur.sp()
        word = cur.keyword()
        if word == "UID":
            cur.sp()
            word = "UID " + cur.keyword()
    except ImapProtocolError:
        return tag, None
    return tag, word


def is_known_command(word: str) -> bool:
    if word.startswith("UID "):
        return word[4:] in _UID_HANDLERS
    return word in _HANDLERS


# -- shared pieces ----------------------------------------------------------


def mailbox_name(raw: bytes) -> MailboxName:
    """Decode a wire folder name (RFC 3501 §5.1: INBOX is case-insensitive)."""
    if raw.upper() == b"INBOX":
        return MailboxName(raw, "INBOX")
    return MailboxName(raw, utf7.decode(raw))


def _mailbox(cur: Cursor) -> MailboxName:
    return mailbox_name(cur.astring())


def _flag(cur: Cursor) -> str:
    """``flag`` (RFC 3501 §9): system flags normalised, keywords kept."""
    if cur.skip(b"\\"):
        name = "\\" + cur.atom().decode("ascii")
        return SYSTEM_FLAGS.get(name.upper(), name)
    return cur.atom().decode("ascii")


def _flag_list(cur: Cursor) -> tuple[str, ...]:
    """``flag-list = "(" [flag *(SP flag)] ")"``."""
    cur.expect(b"(")
    flags: list[str] = []
    while not cur.skip(b")"):
        if flags:
            cur.sp()
        flags.append(_flag(cur))
    return tuple(flags)


def _paren_words(cur: Cursor, *, allow_empty: bool = False) -> list[str]:
    cur.expect(b"(")
    words: list[str] = []
    while not cur.skip(b")"):
        if words:
            cur.sp()
        words.append(cur.keyword())
    if not words and not allow_empty:
        raise BadCommand("empty list")
    return words


def _sequence(cur: Cursor) -> SequenceSet:
    return SequenceSet.parse(cur.match(_SEQ_RE, "a sequence set"))


def _date_time(cur: Cursor) -> datetime:
    """``date-time`` of APPEND: ``"dd-Mon-yyyy hh:mm:ss +zzzz"``."""
    m = _DATE_TIME_RE.match(cur.line, cur.pos)
    if m is None:
        raise BadCommand("bad date-time")
    cur.pos = m.end()
    day, mon, year, hh, mm, ss, sign, zh, zm = (g.decode("ascii") for g in m.groups())
    if mon.upper() not in MONTHS:
        raise BadCommand("bad month")
    offset = timedelta(hours=int(zh), minutes=int(zm))
    try:
        return datetime(
            int(year),
            MONTHS.index(mon.upper()) + 1,
            int(day),
            int(hh),
            int(mm),
            int(ss),
            tzinfo=timezone(-offset if sign == "-" else offset),
        )
    except ValueError as exc:
        raise BadCommand("no such date-time") from exc


# -- commands ---------------------------------------------------------------

Handler = Callable[[Cursor, str], Command]


def _no_args(cls: type[Command]) -> Handler:
    def handler(cur: Cursor, tag: str) -> Command:
        return cls(tag)

    return handler


def _authenticate(cur: Cursor, tag: str) -> Command:
    """RFC 3501 §6.2.2 with the RFC 4959 initial response (``=`` is empty)."""
    cur.sp()
    mechanism = cur.keyword()
    initial: bytes | None = None
    if cur.skip(b" "):
        raw = cur.match(_BASE64_RE, "base64")
        if not raw:
            raise BadCommand("empty initial response (send '=')")
        initial = b"" if raw == b"=" else decode_base64(raw)
    return Authenticate(tag, mechanism, initial)


def decode_base64(raw: bytes) -> bytes:
    """Strict base64 (a SASL response); raise :class:`BadCommand`."""
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadCommand("invalid base64") from exc


def _login(cur: Cursor, tag: str) -> Command:
    cur.sp()
    user = cur.astring()
    cur.sp()
    return Login(tag, user, cur.astring())


def _enable(cur: Cursor, tag: str) -> Command:
    caps = []
    while cur.skip(b" "):
        caps.append(cur.keyword())
    if not caps:
        raise BadCommand("ENABLE needs at least one capability")
    return Enable(tag, tuple(caps))


def _select(cls: type[Select] | type[Examine]) -> Handler:
    def handler(cur: Cursor, tag: str) -> Command:
        cur.sp()
        mailbox = _mailbox(cur)
        condstore = False
        if cur.skip(b" "):
            # RFC 4466 select-params; only RFC 7162 CONDSTORE is known.
            for word in _paren_words(cur):
                if word != "CONDSTORE":
                    raise BadCommand(f"unknown select parameter {word[:30]}")
                condstore = True
        return cls(tag, mailbox, condstore)

    return handler


def _create(cur: Cursor, tag: str) -> Command:
    cur.sp()
    mailbox = _mailbox(cur)
    uses: list[str] = []
    if cur.skip(b" "):
        # RFC 6154 §3: CREATE name (USE (\Sent))
        cur.expect(b"(")
        cur.expect(b"USE (")
        while not cur.skip(b")"):
            if uses:
                cur.sp()
            cur.expect(b"\\")
            name = "\\" + cur.atom().decode("ascii")
            if name.upper() not in SPECIAL_USE:
                raise ImapProtocolError(f"unknown special use {name[:30]}", code="USEATTR")
            uses.append(SPECIAL_USE[name.upper()])
        cur.expect(b")")
    return Create(tag, mailbox, tuple(uses))


def _one_mailbox(cls: type[Delete] | type[Subscribe] | type[Unsubscribe]) -> Handler:
    def handler(cur: Cursor, tag: str) -> Command:
        cur.sp()
        return cls(tag, _mailbox(cur))

    return handler


def _rename(cur: Cursor, tag: str) -> Command:
    cur.sp()
    source = _mailbox(cur)
    cur.sp()
    return Rename(tag, source, _mailbox(cur))


def _status_items(cur: Cursor) -> tuple[str, ...]:
    items = _paren_words(cur)
    for item in items:
        if item not in STATUS_ITEMS:
            raise BadCommand(f"unknown status item {item[:30]}")
    return tuple(items)


def _list(cur: Cursor, tag: str) -> Command:
    """RFC 3501 §6.3.8 with RFC 5258 LIST-EXTENDED, RFC 6154, RFC 5819."""
    cur.sp()
    extended = False
    selection: frozenset[str] = frozenset()
    if cur.peek() == 0x28:
        extended = True
        selection = frozenset(_paren_words(cur, allow_empty=True))
        unknown = selection - LIST_SELECT_OPTIONS
        if unknown:
            raise BadCommand(f"unknown LIST selection option {sorted(unknown)[0][:30]}")
        if "RECURSIVEMATCH" in selection and selection <= {"RECURSIVEMATCH", "REMOTE"}:
            raise BadCommand("RECURSIVEMATCH needs another selection option")  # RFC 5258 §3
        cur.sp()
    reference = _mailbox(cur)
    cur.sp()
    patterns: list[MailboxName] = []
    if cur.peek() == 0x28:
        extended = True
        cur.pos += 1
        while not cur.skip(b")"):
            if patterns:
                cur.sp()
            patterns.append(mailbox_name(cur.list_mailbox()))
        if not patterns:
            raise BadCommand("empty pattern list")
    else:
        patterns.append(mailbox_name(cur.list_mailbox()))
    ret: dict[str, bool] = {}
    status: tuple[str, ...] | None = None
    if cur.skip(b" "):
        extended = True
        cur.expect(b"RETURN (")
        while not cur.skip(b")"):
            if ret or status is not None:
                cur.sp()
            word = cur.keyword()
            if word == "STATUS":
                cur.sp()
                status = _status_items(cur)
            elif word in ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE"):
                ret[word] = True
            else:
                raise BadCommand(f"unknown LIST return option {word[:30]}")
    return List(
        tag,
        reference,
        tuple(patterns),
        selection,
        return_subscribed=ret.get("SUBSCRIBED", False),
        return_children=ret.get("CHILDREN", False),
        return_special_use=ret.get("SPECIAL-USE", False),
        return_status=status,
        extended=extended,
    )


def _lsub(cur: Cursor, tag: str) -> Command:
    cur.sp()
    reference = _mailbox(cur)
    cur.sp()
    return Lsub(tag, reference, mailbox_name(cur.list_mailbox()))


def _status(cur: Cursor, tag: str) -> Command:
    cur.sp()
    mailbox = _mailbox(cur)
    cur.sp()
    return Status(tag, mailbox, _status_items(cur))


def _append(cur: Cursor, tag: str) -> Command:
    """``APPEND mailbox [SP flag-list] [SP date-time] SP literal``."""
    cur.sp()
    mailbox = _mailbox(cur)
    cur.sp()
    flags: tuple[str, ...] = ()
    when: datetime | None = None
    if cur.peek() == 0x28:
        flags = _flag_list(cur)
        cur.sp()
    if cur.peek() == 0x22:
        when = _date_time(cur)
        cur.sp()
    if cur.peek() != 0x7B:
        raise BadCommand("APPEND needs the message as a literal")
    return Append(tag, mailbox, cur.literal(), flags, when)


def _expunge(cur: Cursor, tag: str) -> Command:
    return Expunge(tag)


def _search(cur: Cursor, tag: str, uid: bool = False) -> Command:
    cur.sp()
    charset = None
    if cur.startswith(b"CHARSET "):
        cur.pos += 8
        charset = parse_charset(cur.astring())
        cur.sp()
    if cur.startswith(b"RETURN"):
        raise BadCommand("ESEARCH is not supported")
    return Search(tag, parse_search_criteria(cur), charset, uid)


def _section(cur: Cursor) -> Section:
    """``section = "[" [section-spec] "]"`` (RFC 3501 §9)."""
    cur.expect(b"[")
    part: list[int] = []
    text: str | None = None
    fields: tuple[str, ...] = ()
    if _digit_next(cur):
        part.append(cur.number(nonzero=True))
        while cur.skip(b"."):
            if _digit_next(cur):
                part.append(cur.number(nonzero=True))
            else:
                text, fields = _section_text(cur, bool(part))
                break
    elif cur.peek() != 0x5D:  # "]"
        text, fields = _section_text(cur, False)
    cur.expect(b"]")
    return Section(tuple(part), text, fields)


def _digit_next(cur: Cursor) -> bool:
    c = cur.peek()
    return c is not None and 0x30 <= c <= 0x39


def _section_text(cur: Cursor, has_part: bool) -> tuple[str, tuple[str, ...]]:
    word = cur.match(_FETCH_WORD_RE, "a section").decode("ascii").upper()
    if word not in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"):
        raise BadCommand(f"bad section {word[:30]}")
    if word == "MIME" and not has_part:
        raise BadCommand("MIME needs a part number")
    if not word.startswith("HEADER.FIELDS"):
        return word, ()
    cur.sp()
    return word, _header_list(cur)


def _header_list(cur: Cursor) -> tuple[str, ...]:
    cur.expect(b"(")
    names: list[str] = []
    while not cur.skip(b")"):
        if names:
            cur.sp()
        names.append(cur.astring().decode("ascii", "replace"))
    if not names:
        raise BadCommand("empty header list")
    return tuple(names)


def _fetch_att(cur: Cursor) -> FetchAttribute:
    word = cur.match(_FETCH_WORD_RE, "a fetch item").decode("ascii").upper()
    if word in ("BODY", "BODY.PEEK") and cur.peek() == 0x5B:
        section = _section(cur)
        partial = None
        if cur.skip(b"<"):
            origin = cur.number()
            cur.expect(b".")
            partial = (origin, cur.number(nonzero=True))
            cur.expect(b">")
        return FetchAttribute("BODY", section, partial, peek=word == "BODY.PEEK")
    if word not in _SIMPLE_FETCH:
        raise BadCommand(f"unknown fetch item {word[:30]}")
    return FetchAttribute(word)


def _fetch(cur: Cursor, tag: str, uid: bool = False) -> Command:
    cur.sp()
    sequence = _sequence(cur)
    cur.sp()
    macro = None
    atts: list[FetchAttribute] = []
    if cur.skip(b"("):
        while not cur.skip(b")"):
            if atts:
                cur.sp()
            atts.append(_fetch_att(cur))
        if not atts:
            raise BadCommand("empty fetch list")
    else:
        m = _FETCH_WORD_RE.match(cur.line, cur.pos)
        word = m.group(0).decode("ascii").upper() if m else ""
        if word in _FETCH_MACROS:
            cur.pos += len(word)
            macro = word
            atts = [FetchAttribute(name) for name in _FETCH_MACROS[word]]
        else:
            atts.append(_fetch_att(cur))
    changedsince = None
    if cur.skip(b" "):
        # RFC 7162 §3.1.4 fetch-modifiers: "(" CHANGEDSINCE n ")"
        cur.expect(b"(CHANGEDSINCE ")
        changedsince = cur.number(limit=MAX_MODSEQ, nonzero=True)
        cur.expect(b")")
    return Fetch(tag, sequence, tuple(atts), uid, changedsince, macro)


def _store(cur: Cursor, tag: str, uid: bool = False) -> Command:
    cur.sp()
    sequence = _sequence(cur)
    cur.sp()
    unchangedsince = None
    if cur.skip(b"("):
        # RFC 7162 §3.1.3 store-modifier
        cur.expect(b"UNCHANGEDSINCE ")
        unchangedsince = cur.number(limit=MAX_MODSEQ)
        cur.expect(b") ")
    mode = "replace"
    if cur.skip(b"+"):
        mode = "add"
    elif cur.skip(b"-"):
        mode = "remove"
    word = cur.match(_FETCH_WORD_RE, "FLAGS").decode("ascii").upper()
    if word not in ("FLAGS", "FLAGS.SILENT"):
        raise BadCommand("STORE needs FLAGS or FLAGS.SILENT")
    cur.sp()
    if cur.peek() == 0x28:
        flags = _flag_list(cur)
    else:
        items = [_flag(cur)]
        while cur.skip(b" "):
            items.append(_flag(cur))
        flags = tuple(items)
    return Store(tag, sequence, mode, flags, word == "FLAGS.SILENT", uid, unchangedsince)


UidHandler = Callable[[Cursor, str, bool], Command]


def _copy_or_move(cls: type[Copy] | type[Move]) -> UidHandler:
    def handler(cur: Cursor, tag: str, uid: bool = False) -> Command:
        cur.sp()
        sequence = _sequence(cur)
        cur.sp()
        return cls(tag, sequence, _mailbox(cur), uid)

    return handler


def _copy_or_move_plain(cls: type[Copy] | type[Move]) -> Handler:
    handler = _copy_or_move(cls)
    return lambda cur, tag: handler(cur, tag, False)


def _uid(cur: Cursor, tag: str) -> Command:
    """``UID`` prefix (RFC 3501 §6.4.8, RFC 4315 UID EXPUNGE, RFC 6851)."""
    cur.sp()
    word = cur.keyword()
    if word == "EXPUNGE":
        cur.sp()
        return Expunge(tag, _sequence(cur))
    handler = _UID_HANDLERS.get(word)
    if handler is None:
        raise BadCommand(f"unknown UID command {word[:30]}")
    return handler(cur, tag, True)


def _id(cur: Cursor, tag: str) -> Command:
    """RFC 2971: ``ID ("name" "value" ...)`` or ``ID NIL``."""
    cur.sp()
    if cur.startswith(b"NIL"):
        cur.pos += 3
        return Id(tag, None)
    cur.expect(b"(")
    pairs: list[tuple[str, str | None]] = []
    while not cur.skip(b")"):
        if pairs:
            cur.sp()
        key = cur.string().decode("utf-8", "replace")
        cur.sp()
        value = cur.nstring()
        pairs.append((key, None if value is None else value.decode("utf-8", "replace")))
        if len(pairs) > ID_MAX_PAIRS:
            raise BadCommand("too many ID parameters")
    return Id(tag, tuple(pairs))


_UID_HANDLERS: dict[str, UidHandler] = {
    "FETCH": _fetch,
    "SEARCH": _search,
    "STORE": _store,
    "COPY": _copy_or_move(Copy),
    "MOVE": _copy_or_move(Move),
    "EXPUNGE": lambda cur, tag, uid: Expunge(tag),  # handled in _uid
}

_HANDLERS: dict[str, Handler] = {
    "CAPABILITY": _no_args(Capability),
    "NOOP": _no_args(Noop),
    "LOGOUT": _no_args(Logout),
    "STARTTLS": _no_args(StartTLS),
    "AUTHENTICATE": _authenticate,
    "LOGIN": _login,
    "ENABLE": _enable,
    "SELECT": _select(Select),
    "EXAMINE": _select(Examine),
    "CREATE": _create,
    "DELETE": _one_mailbox(Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox(Subscribe),
    "UNSUBSCRIBE": _one_mailbox(Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "APPEND": _append,
    "CHECK": _no_args(Check),
    "CLOSE": _no_args(Close),
    "UNSELECT": _no_args(Unselect),
    "EXPUNGE": _expunge,
    "SEARCH": _search,
    "FETCH": _fetch,
    "STORE": _store,
    "COPY": _copy_or_move_plain(Copy),
    "MOVE": _copy_or_move_plain(Move),
    "UID": _uid,
    "IDLE": _no_args(Idle),
    "NAMESPACE": _no_args(Namespace),
    "ID": _id,
}
