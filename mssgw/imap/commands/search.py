"""SEARCH and UID SEARCH with every RFC 3501 §6.4.4 key, and MODSEQ (RFC 7162 §3.1.5).

Evaluation happens here, over the view (flags, keywords, UIDs, MODSEQ: no
I/O), the message rows (INTERNALDATE, size: one query) and, only for keys
that need them, the message octets (headers, body text), read in batches.
Why not SQL: flags and MODSEQ are already in memory, and header/body
matching needs decoding (RFC 2047 encoded words, transfer encodings,
charsets) that SQL cannot do; a full-text index would be the next step.

Matching is case-insensitive substring matching on decoded text, as RFC
3501 asks; dates ignore time and time zone.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.header
import email.utils
import quopri
from dataclasses import dataclass, field
from datetime import date

from mssgw.imap import mime
from mssgw.imap.protocol import commands as c
from mssgw.imap.protocol import search as s
from mssgw.imap.protocol import writer
from mssgw.imap.session import Refusal, Session
from mssgw.imap.view import FolderView
from mssgw.store.mail import MessageRow
from mssgw.store.models import Flag

_FLAG_BITS = {
    "\\answered": Flag.ANSWERED,
    "\\deleted": Flag.DELETED,
    "\\draft": Flag.DRAFT,
    "\\flagged": Flag.FLAGGED,
    "\\seen": Flag.SEEN,
}
_BLOB_BATCH = 100


@dataclass
class Needs:
    rows: bool = False
    blob: bool = False
    modseq: bool = False


def needs(key: s.SearchKey, out: Needs | None = None) -> Needs:
    out = out or Needs()
    match key:
        case s.And(keys=keys):
            for k in keys:
                needs(k, out)
        case s.Or(left=left, right=right):
            needs(left, out)
            needs(right, out)
        case s.Not(key=inner):
            needs(inner, out)
        case s.DateKey(field="INTERNAL") | s.SizeKey():
            out.rows = True
        case s.DateKey() | s.HeaderKey() | s.TextKey():
            out.rows = out.blob = True
        case s.ModSeqKey():
            out.modseq = True
        case s.SequenceKey(sequence=seq) if seq.saved:
            raise Refusal("$ (SEARCHRES) is not supported", bad=True)
    return out


@dataclass
class Message:
    msn: int
    uid: int
    flags: int
    keywords: str
    modseq: int
    row: MessageRow | None = None
    raw: bytes | None = None
    _root: mime.Part | None = field(default=None, repr=False)
    _body: str | None = field(default=None, repr=False)
    _header: str | None = field(default=None, repr=False)

    def root(self) -> mime.Part | None:
        if self._root is None and self.raw is not None:
            self._root = mime.parse_message(self.raw)
        return self._root

    def header_values(self, name: str) -> list[str]:
        root = self.root()
        if root is None or self.raw is None:
            return []
        lower = name.lower()
        return [decode_words(mime.field_value(self.raw, f)) for f in root.fields if f.name == lower]

    def header_text(self) -> str:
        if self._header is None:
            root = self.root()
            if root is None or self.raw is None:
                self._header = ""
            else:
                self._header = "\n".join(
                    f"{f.name}: {decode_words(mime.field_value(self.raw, f))}" for f in root.fields
                ).casefold()
        return self._header

    def body_text(self) -> str:
        if self._body is None:
            root = self.root()
            self._body = "" if root is None or self.raw is None else _body_text(self.raw, root)
        return self._body


def decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded; anything undecodable kept as sent."""
    if "=?" not in value:
        return value
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        return value


def _body_text(raw: bytes, root: mime.Part) -> str:
    chunks: list[str] = []
    for _, part in mime.walk(root):
        if part.is_multipart or part.message is not None:
            continue
        if part.type.lower() not in ("text", "message") and part is not root:
            continue
        body = raw[part.body_start : part.end]
        encoding = ""
        charset = "utf-8"
        for f in part.fields:
            if f.name == "content-transfer-encoding":
                encoding = mime.field_value(raw, f).strip().lower()
        for k, v in part.params or ():
            if k.lower() == "charset":
                charset = v
        try:
            if encoding == "base64":
                body = base64.b64decode(body, validate=False)
            elif encoding == "quoted-printable":
                body = quopri.decodestring(body)
        except (binascii.Error, ValueError):
            pass
        try:
            chunks.append(body.decode(charset, "replace"))
        except LookupError:
            chunks.append(body.decode("utf-8", "replace"))
    return "\n".join(chunks).casefold()


def matches(key: s.SearchKey, m: Message, view: FolderView) -> bool:
    match key:
        case s.AllKey():
            return True
        case s.And(keys=keys):
            return all(matches(k, m, view) for k in keys)
        case s.Or(left=left, right=right):
            return matches(left, m, view) or matches(right, m, view)
        case s.Not(key=inner):
            return not matches(inner, m, view)
        case s.SequenceKey(sequence=seq, uid=True):
            return bool(view.uids) and seq.contains(m.uid, view.uids[-1])
        case s.SequenceKey(sequence=seq):
            return seq.contains(m.msn, len(view))
        case s.FlagKey(flag=flag, present=present):
            lower = flag.lower()
            if lower == "\\recent":
                has = False  # \Recent is never set here (see docs/imap.md)
            elif lower in _FLAG_BITS:
                has = bool(m.flags & _FLAG_BITS[lower])
            else:
                has = lower in (k.lower() for k in m.keywords.split())
            return has == present
        case s.SizeKey(op=op, size=size):
            assert m.row is not None
            return m.row.size > size if op == "LARGER" else m.row.size < size
        case s.DateKey(field=where, op=op, date=when):
            day = _day(m, where)
            if day is None:
                return False
            return day < when if op == "BEFORE" else day == when if op == "ON" else day >= when
        case s.HeaderKey(field=name, value=value):
            values = m.header_values(name)
            if not value:
                return bool(values)
            needle = value.casefold()
            return any(needle in v.casefold() for v in values)
        case s.TextKey(where=where, value=value):
            needle = value.casefold()
            if where == "TEXT" and needle in m.header_text():
                return True
            return needle in m.body_text()
        case s.ModSeqKey(modseq=modseq):
            return m.modseq >= modseq
    return False


def _day(m: Message, where: str) -> date | None:
    if where == "INTERNAL":
        assert m.row is not None
        return m.row.internaldate.date()
    values = m.header_values("Date")
    if not values:
        return None
    try:
        return email.utils.parsedate_to_datetime(values[0]).date()
    except (TypeError, ValueError, IndexError):
        return None


def _filter(key: s.SearchKey, messages: list[Message], view: FolderView) -> list[Message]:
    return [m for m in messages if matches(key, m, view)]


def _candidates(key: s.SearchKey, view: FolderView) -> list[int]:
    """Cheap pre-filter: a top-level sequence/UID key bounds the messages to look at."""
    keys = key.keys if isinstance(key, s.And) else (key,)
    for k in keys:
        if isinstance(k, s.SequenceKey) and not k.sequence.saved:
            return view.resolve(k.sequence, uid=k.uid)
    return list(range(1, len(view) + 1))


async def search(session: Session, cmd: c.Search) -> None:
    view = session.selected()
    need = needs(cmd.criteria)
    if need.modseq:
        session.condstore = True
    msns = [m for m in _candidates(cmd.criteria, view) if not view.is_expunged(view.uids[m - 1])]
    found: list[Message] = []
    for start in range(0, len(msns), 1000 if not need.blob else _BLOB_BATCH):
        chunk = msns[start : start + (1000 if not need.blob else _BLOB_BATCH)]
        messages = [
            Message(
                m,
                view.uids[m - 1],
                view.flags[m - 1],
                view.keywords.get(view.uids[m - 1], ""),
                view.modseqs[m - 1],
            )
            for m in chunk
        ]
        if need.rows:
            rows = await session.mail.rows(view.folder.id, [m.uid for m in messages])
            messages = [m for m in messages if m.uid in rows]
            for m in messages:
                m.row = rows[m.uid]
        if need.blob:
            blobs = await session.mail.read_blobs(m.row.blob_id for m in messages if m.row)
            for m in messages:
                if m.row is not None:
                    m.raw = blobs.get(m.row.blob_id)
            found.extend(await asyncio.to_thread(_filter, cmd.criteria, messages, view))
        else:
            found.extend(m for m in messages if matches(cmd.criteria, m, view))
    numbers = [m.uid if cmd.uid else m.msn for m in found]
    highest = max((m.modseq for m in found), default=None) if need.modseq else None
    session.send(writer.search_data(numbers, highest))
    await session.catch_up(allow_expunge=cmd.uid)
    session.ok(cmd.tag, "SEARCH completed")
