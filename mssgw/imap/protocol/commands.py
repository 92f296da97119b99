"""Typed commands the reader produces (one frozen dataclass per command).

A session dispatches on the class (``match command: case Fetch(): ...``).
Every command carries its ``tag``; ``UID`` forms set ``uid=True`` on the
command they prefix.  Folder names arrive as :class:`MailboxName`, keeping the
wire form next to the decoded one.  Values the grammar leaves as opaque bytes
(LOGIN credentials, APPEND message) stay ``bytes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from .lexer import LiteralValue, SpooledLiteral
from .search import SearchKey
from .sequence import SequenceSet

__all__ = [
    "Append",
    "Authenticate",
    "Capability",
    "Check",
    "Close",
    "Command",
    "Copy",
    "Create",
    "Delete",
    "Enable",
    "Examine",
    "Expunge",
    "Fetch",
    "FetchAttribute",
    "Id",
    "Idle",
    "List",
    "Login",
    "Logout",
    "Lsub",
    "MailboxName",
    "Move",
    "Namespace",
    "Noop",
    "Rename",
    "Search",
    "Section",
    "Select",
    "SpooledLiteral",
    "StartTLS",
    "Status",
    "Store",
    "Subscribe",
    "Unselect",
    "Unsubscribe",
]


@dataclass(frozen=True, slots=True)
class MailboxName:
    """A folder name: ``raw`` as sent (modified UTF-7), ``name`` decoded.

    ``INBOX`` is case-insensitive (RFC 3501 §5.1), so any spelling of it is
    normalised to ``"INBOX"`` in ``name``.
    """

    raw: bytes
    name: str


@dataclass(frozen=True, slots=True)
class Section:
    """``section-spec`` of ``BODY[...]`` (RFC 3501 §6.4.5).

    ``part`` is the numeric path (``(1, 2)`` for ``1.2``), ``text`` one of
    ``HEADER``, ``HEADER.FIELDS``, ``HEADER.FIELDS.NOT``, ``TEXT``, ``MIME`` or
    ``None``, ``fields`` the header names for the ``HEADER.FIELDS`` forms.
    """

    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        items = [str(n) for n in self.part]
        if self.text:
            items.append(self.text)
        spec = ".".join(items)
        if self.fields:
            spec += " (" + " ".join(_astring_text(f) for f in self.fields) + ")"
        return spec


def _astring_text(value: str) -> str:
    """Header names echoed in a FETCH response: atom if possible, else quoted."""
    if value and all(c.isascii() and c.isprintable() and c not in ' (){%*"\\]' for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class FetchAttribute:
    """One ``fetch-att`` (RFC 3501 §6.4.5, RFC 7162 §3.1.4 for MODSEQ).

    ``name`` is one of ENVELOPE, FLAGS, INTERNALDATE, RFC822, RFC822.HEADER,
    RFC822.SIZE, RFC822.TEXT, BODY, BODYSTRUCTURE, UID, MODSEQ.  ``BODY`` with
    a ``section`` is ``BODY[section]`` (``peek`` for ``BODY.PEEK``), without
    it the non-extensible structure.  ``partial`` is ``(origin, length)``.
    """

    name: str
    section: Section | None = None
    partial: tuple[int, int] | None = None
    peek: bool = False

    @property
    def sets_seen(self) -> bool:
        """Fetching it sets ``\\Seen`` (RFC 3501 §6.4.5)."""
        if self.name == "BODY":
            return self.section is not None and not self.peek
        return self.name in ("RFC822", "RFC822.TEXT")

    def response_name(self) -> bytes:
        """How the item is named in the FETCH response (RFC 3501 §7.4.2).

        ``BODY.PEEK[]<0.65536>`` is answered as ``BODY[]<0>``: no PEEK, and
        only the origin octet of a partial.
        """
        if self.section is None:
            return self.name.encode("ascii")
        name = f"BODY[{self.section}]"
        if self.partial is not None:
            name += f"<{self.partial[0]}>"
        return name.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class Command:
    """Base of every command; ``name`` is the IMAP command word."""

    tag: str
    name: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Capability(Command):
    name: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True, slots=True)
class Noop(Command):
    name: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True)
class Logout(Command):
    name: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True, slots=True)
class StartTLS(Command):
    name: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    """``initial_response`` is the SASL-IR value (RFC 4959) already base64
    decoded; ``b""`` when the client sent ``=``, ``None`` when absent."""

    mechanism: str
    initial_response: bytes | None = None
    name: ClassVar[str] = "AUTHENTICATE"

    def __repr__(self) -> str:  # SASL responses carry credentials
        hidden = None if self.initial_response is None else "<hidden>"
        return f"Authenticate(tag={self.tag!r}, mechanism={self.mechanism!r}, initial={hidden})"


@dataclass(frozen=True, slots=True)
class Login(Command):
    """Credentials as raw octets: the auth layer decides on their charset."""

    username: bytes
    password: bytes = b""
    name: ClassVar[str] = "LOGIN"

    def __repr__(self) -> str:  # never log a password
        return f"Login(tag={self.tag!r}, username={self.username!r}, password=<hidden>)"


@dataclass(frozen=True, slots=True)
class Enable(Command):
    """RFC 5161; capability names upper-cased."""

    capabilities: tuple[str, ...]
    name: ClassVar[str] = "ENABLE"


@dataclass(frozen=True, slots=True)
class Select(Command):
    """``condstore`` is the RFC 7162 ``(CONDSTORE)`` select parameter."""

    mailbox: MailboxName
    condstore: bool = False
    name: ClassVar[str] = "SELECT"


@dataclass(frozen=True, slots=True)
class Examine(Command):
    mailbox: MailboxName
    condstore: bool = False
    name: ClassVar[str] = "EXAMINE"


@dataclass(frozen=True, slots=True)
class Create(Command):
    """``special_use`` holds RFC 6154 ``USE (\\Sent ...)`` attributes."""

    mailbox: MailboxName
    special_use: tuple[str, ...] = ()
    name: ClassVar[str] = "CREATE"


@dataclass(frozen=True, slots=True)
class Delete(Command):
    mailbox: MailboxName
    name: ClassVar[str] = "DELETE"


@dataclass(frozen=True, slots=True)
class Rename(Command):
    source: MailboxName
    target: MailboxName
    name: ClassVar[str] = "RENAME"


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    mailbox: MailboxName
    name: ClassVar[str] = "SUBSCRIBE"


@dataclass(frozen=True, slots=True)
class Unsubscribe(Command):
    mailbox: MailboxName
    name: ClassVar[str] = "UNSUBSCRIBE"


@dataclass(frozen=True, slots=True)
class List(Command):
    """LIST, with RFC 5258 LIST-EXTENDED options.

    ``selection`` holds selection options (``SUBSCRIBED``, ``REMOTE``,
    ``RECURSIVEMATCH``, ``SPECIAL-USE``); the ``return_*`` fields the
    ``RETURN (...)`` options, ``return_status`` the RFC 5819 STATUS items
    (``None`` when not asked).  ``extended`` tells that the extended syntax
    was used, which changes what the server must answer (RFC 5258 §3).
    """

    reference: MailboxName
    patterns: tuple[MailboxName, ...]
    selection: frozenset[str] = frozenset()
    return_subscribed: bool = False
    return_children: bool = False
    return_special_use: bool = False
    return_status: tuple[str, ...] | None = None
    extended: bool = False
    name: ClassVar[str] = "LIST"


@dataclass(frozen=True, slots=True)
class Lsub(Command):
    reference: MailboxName
    pattern: MailboxName
    name: ClassVar[str] = "LSUB"


@dataclass(frozen=True, slots=True)
class Status(Command):
    """``items`` upper-cased: MESSAGES, RECENT, UIDNEXT, UIDVALIDITY, UNSEEN,
    HIGHESTMODSEQ (RFC 7162), SIZE (RFC 8438)."""

    mailbox: MailboxName
    items: tuple[str, ...]
    name: ClassVar[str] = "STATUS"


@dataclass(frozen=True, slots=True)
class Append(Command):
    """``message`` is the literal: ``bytes`` or the :class:`SpooledLiteral`
    placeholder when the reader streamed it out (see ``spool_threshold``)."""

    mailbox: MailboxName
    message: LiteralValue
    flags: tuple[str, ...] = ()
    internal_date: datetime | None = None
    name: ClassVar[str] = "APPEND"

    def __repr__(self) -> str:
        size = self.message.size if isinstance(self.message, SpooledLiteral) else len(self.message)
        return (
            f"Append(tag={self.tag!r}, mailbox={self.mailbox!r}, flags={self.flags!r}, "
            f"internal_date={self.internal_date!r}, message=<{size} octets>)"
        )


@dataclass(frozen=True, slots=True)
class Check(Command):
    name: ClassVar[str] = "CHECK"


@dataclass(frozen=True, slots=True)
class Close(Command):
    name: ClassVar[str] = "CLOSE"


@dataclass(frozen=True, slots=True)
class Unselect(Command):
    name: ClassVar[str] = "UNSELECT"


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    """``uids`` is set for ``UID EXPUNGE`` (RFC 4315 §2.1)."""

    uids: SequenceSet | None = None
    name: ClassVar[str] = "EXPUNGE"

    @property
    def uid(self) -> bool:
        return self.uids is not None


@dataclass(frozen=True, slots=True)
class Search(Command):
    """Criteria are one :data:`SearchKey` (a top-level list is an ``And``).

    String arguments are already decoded with ``charset`` (US-ASCII or
    UTF-8; anything else was refused with ``NO [BADCHARSET ...]``).
    """

    criteria: SearchKey
    charset: str | None = None
    uid: bool = False
    name: ClassVar[str] = "SEARCH"


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    """Macros (ALL, FAST, FULL) are expanded into ``attributes``; ``macro``
    keeps the word.  ``changedsince`` is the RFC 7162 modifier.  A ``UID
    FETCH`` answers with UID even if not asked (RFC 3501 §6.4.8): the session
    adds it."""

    sequence: SequenceSet
    attributes: tuple[FetchAttribute, ...]
    uid: bool = False
    changedsince: int | None = None
    macro: str | None = None
    name: ClassVar[str] = "FETCH"


@dataclass(frozen=True, slots=True)
class Store(Command):
    """``mode`` is ``"replace"`` (FLAGS), ``"add"`` (+FLAGS) or ``"remove"``
    (-FLAGS); ``unchangedsince`` is the RFC 7162 modifier."""

    sequence: SequenceSet
    mode: str
    flags: tuple[str, ...]
    silent: bool = False
    uid: bool = False
    unchangedsince: int | None = None
    name: ClassVar[str] = "STORE"


@dataclass(frozen=True, slots=True)
class Copy(Command):
    sequence: SequenceSet
    mailbox: MailboxName
    uid: bool = False
    name: ClassVar[str] = "COPY"


@dataclass(frozen=True, slots=True)
class Move(Command):
    """RFC 6851."""

    sequence: SequenceSet
    mailbox: MailboxName
    uid: bool = False
    name: ClassVar[str] = "MOVE"


@dataclass(frozen=True, slots=True)
class Idle(Command):
    """RFC 2177: the server answers ``+ idling`` and calls
    :meth:`CommandReader.start_idle`, which makes the reader wait for DONE."""

    name: ClassVar[str] = "IDLE"


@dataclass(frozen=True, slots=True)
class Namespace(Command):
    name: ClassVar[str] = "NAMESPACE"


@dataclass(frozen=True, slots=True)
class Id(Command):
    """RFC 2971: ``params`` is ``None`` for ``ID NIL``."""

    params: tuple[tuple[str, str | None], ...] | None = None
    name: ClassVar[str] = "ID"
