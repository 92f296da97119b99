"""FETCH and UID FETCH (RFC 3501 §6.4.5, §7.4.2; RFC 7162 §3.1.4-3.2.4).

Three costs, paid only when asked for:

* FLAGS, UID, MODSEQ come from the session's view: ``UID FETCH 1:* (FLAGS)``
  on 100,000 messages never touches the database.
* INTERNALDATE, RFC822.SIZE, ENVELOPE, BODYSTRUCTURE come from the message
  rows (ENVELOPE/BODYSTRUCTURE cached as JSON at delivery).
* Sections read the blob; a header-only fetch (Thunderbird's
  ``BODY.PEEK[HEADER.FIELDS (...)]``) reads only the header octets.

Messages are read and answered in batches and the output drained between
batches, so memory stays bounded whatever the range.  Sections are slices of
the stored octets (``mime.section``), hence RFC822.SIZE == len(BODY[])
(SPEC STORE-1); ``BODY.PEEK[]<0.65536>`` is answered as ``BODY[]<0>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from mssgw.imap import cache, mime
from mssgw.imap.protocol import FetchAttribute, writer
from mssgw.imap.protocol import commands as c
from mssgw.imap.session import Session
from mssgw.imap.view import FolderView, flag_list
from mssgw.store.mail import SMALL_READ, MessageRow
from mssgw.store.models import Flag

_ROW_ITEMS = frozenset({"INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY"})
_BLOB_ITEMS = frozenset({"RFC822", "RFC822.HEADER", "RFC822.TEXT"})
_HEADER_TEXTS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"})
#: Octets of message data read per round before answering (bounds memory).
_BATCH_OCTETS = 4 * 1024 * 1024
#: Octets a FETCH may read in the event loop's thread (``Store.reading(small=)``).
_SMALL_OCTETS = 256 * 1024
_UID = FetchAttribute("UID")
_FLAGS = FetchAttribute("FLAGS")
_MODSEQ = FetchAttribute("MODSEQ")


@dataclass(frozen=True, slots=True)
class Plan:
    attributes: tuple[FetchAttribute, ...]
    #: ``attributes[i].response_name()``, rendered once per command.
    response_names: tuple[bytes, ...]
    rows: bool
    blob: bool
    header_only: bool
    sets_seen: bool


def plan(attributes: Sequence[FetchAttribute], *, uid: bool, modseq: bool, readonly: bool) -> Plan:
    attrs = list(attributes)
    if uid and _UID not in attrs:
        attrs.insert(0, _UID)  # RFC 3501 §6.4.8
    if modseq and _MODSEQ not in attrs:
        attrs.append(_MODSEQ)  # RFC 7162 §3.1.4.1 (CHANGEDSINCE)
    blob_attrs = [a for a in attrs if a.name in _BLOB_ITEMS or a.section is not None]
    header_only = all(
        (a.name == "RFC822.HEADER")
        or (a.section is not None and not a.section.part and a.section.text in _HEADER_TEXTS)
        for a in blob_attrs
    )
    return Plan(
        attributes=tuple(attrs),
        response_names=tuple(a.response_name() for a in attrs),
        rows=any(a.name in _ROW_ITEMS or a.name in _BLOB_ITEMS for a in attrs),
        blob=bool(blob_attrs),
        header_only=header_only,
        sets_seen=not readonly and any(a.sets_seen for a in attrs),
    )


async def fetch(session: Session, cmd: c.Fetch) -> None:
    view = session.selected()
    uses_modseq = cmd.changedsince is not None or any(a.name == "MODSEQ" for a in cmd.attributes)
    if uses_modseq:
        session.condstore = True  # RFC 7162 §3.1: CONDSTORE enabling command
    msns = view.resolve(cmd.sequence, uid=cmd.uid)
    if cmd.changedsince is not None:
        since = cmd.changedsince
        msns = [m for m in msns if view.modseqs[m - 1] > since]
    p = plan(
        cmd.attributes, uid=cmd.uid, modseq=cmd.changedsince is not None, readonly=view.readonly
    )
    if not p.rows and not p.sets_seen:
        await _from_view(session, view, msns, p)
    else:
        batch = session.service.limits.fetch_batch
        for i in range(0, len(msns), batch):
            await _batch(session, view, msns[i : i + batch], p)
    await session.catch_up(allow_expunge=cmd.uid)
    session.ok(cmd.tag, "FETCH completed")


async def _from_view(session: Session, view: FolderView, msns: list[int], p: Plan) -> None:
    """Only UID/FLAGS/MODSEQ: straight from memory, in bulk."""
    names = [a.name for a in p.attributes]
    if names == ["UID", "FLAGS"] or names == ["FLAGS", "UID"] or names == ["FLAGS"]:
        uid = "UID" in names
        for start in range(0, len(msns), 5000):
            session.send(
                b"".join(
                    view.flags_response(m, uid=uid, modseq=False)
                    for m in msns[start : start + 5000]
                )
            )
            await session.drain()
        return
    for n, msn in enumerate(msns, 1):
        session.send(*writer.fetch_data(msn, [_view_item(view, msn, a) for a in p.attributes]))
        if n % 5000 == 0:
            await session.drain()


def _view_item(view: FolderView, msn: int, attr: FetchAttribute) -> tuple[bytes, bytes]:
    i = msn - 1
    if attr.name == "UID":
        return b"UID", b"%d" % view.uids[i]
    if attr.name == "FLAGS":
        return b"FLAGS", flag_list(view.flags[i], view.keywords.get(view.uids[i], ""))
    return b"MODSEQ", b"(%d)" % view.modseqs[i]


async def _batch(session: Session, view: FolderView, msns: list[int], p: Plan) -> None:
    folder_id = view.folder.id
    uids = [view.uids[m - 1] for m in msns]
    rows: dict[int, MessageRow] = {}
    prefetched: dict[int, bytes] | None = None
    if p.rows or p.sets_seen:
        # One hop to the store for the rows and, when they are small enough to
        # be answered in one round, the message octets too.  A few messages with
        # little to read are read at once in the event loop (``small``); more
        # octets than that are left for a reader thread.
        small = len(uids) <= SMALL_READ
        limit = _SMALL_OCTETS if small else _BATCH_OCTETS

        def prefetch(conn: Connection, found: dict[int, MessageRow]) -> dict[int, bytes] | None:
            wanted = _wanted(uids, found, p)
            if sum(_cost(found.get(u), p) for u in uids) >= limit:
                return None
            return session.mail.read_octets(conn, wanted) if wanted else {}

        rows, prefetched = await session.mail.rows_then(folder_id, uids, prefetch, small=small)
    seen_now: set[int] = set()
    if p.sets_seen:
        unseen = [u for u in uids if u in rows and not rows[u].flags & Flag.SEEN]
        if unseen:
            result = await session.mail.store_flags(folder_id, unseen, "add", Flag.SEEN, [])
            view.apply_own(result.changed, result.modseq)
            seen_now = {m.uid for m in result.changed}
    pending: list[int] = []
    octets = 0
    for msn in msns:
        row = rows.get(view.uids[msn - 1])
        if row is None and p.rows:
            continue  # expunged meanwhile (RFC 3501 §7.4.1: its number stays valid)
        pending.append(msn)
        octets += _cost(row, p)
        if octets >= _BATCH_OCTETS:
            await _answer(session, view, pending, rows, p, seen_now)
            pending, octets = [], 0
    if pending:
        await _answer(session, view, pending, rows, p, seen_now, prefetched)


def _cost(row: MessageRow | None, p: Plan) -> int:
    if row is None or not (p.blob or row.envelope is None or row.bodystructure is None):
        return 0
    if p.header_only and row.header_size:
        return row.header_size
    return row.size


async def _answer(
    session: Session,
    view: FolderView,
    msns: list[int],
    rows: dict[int, MessageRow],
    p: Plan,
    seen_now: set[int],
    prefetched: dict[int, bytes] | None = None,
) -> None:
    if prefetched is not None:
        blobs = prefetched
    else:
        wanted = _wanted([view.uids[msn - 1] for msn in msns], rows, p)
        blobs = await session.mail.octets(wanted) if wanted else {}
    for msn in msns:
        uid = view.uids[msn - 1]
        row = rows.get(uid)
        raw = blobs.get(uid)
        items = await _items(session, view, msn, row, raw, p, uid in seen_now)
        session.send(*writer.fetch_data(msn, items))
    await session.drain()


def _wanted(
    uids: list[int], rows: dict[int, MessageRow], p: Plan
) -> dict[int, tuple[str, int | None]]:
    """Message files to read for ``uids``: (blob, octets to read or None for all)."""
    wants_structure = any(
        a.name in ("ENVELOPE", "BODYSTRUCTURE", "BODY") and a.section is None for a in p.attributes
    )
    wanted: dict[int, tuple[str, int | None]] = {}
    for uid in uids:
        row = rows.get(uid)
        if row is None:
            continue
        uncached = wants_structure and (row.envelope is None or row.bodystructure is None)
        if p.blob or uncached:
            limit = row.header_size if p.header_only and not uncached and row.header_size else None
            wanted[row.uid] = (row.blob_id, limit)
    return wanted


async def _items(
    session: Session,
    view: FolderView,
    msn: int,
    row: MessageRow | None,
    raw: bytes | None,
    p: Plan,
    seen_changed: bool,
) -> list[tuple[bytes, writer.FetchValue]]:
    items: list[tuple[bytes, writer.FetchValue]] = []
    root: mime.Part | None = None
    structure: tuple[mime.JSON, mime.JSON] | None = None
    names = {a.name for a in p.attributes}
    for attr, response_name in zip(p.attributes, p.response_names, strict=True):
        name = attr.name
        if name in ("UID", "FLAGS", "MODSEQ"):
            items.append(_view_item(view, msn, attr))
            continue
        assert row is not None
        if name == "INTERNALDATE":
            items.append((b"INTERNALDATE", writer.internal_date(row.internaldate)))
        elif name == "RFC822.SIZE":
            items.append((b"RFC822.SIZE", b"%d" % row.size))
        elif name in ("ENVELOPE", "BODYSTRUCTURE") or (name == "BODY" and attr.section is None):
            if structure is None:
                structure = await _structure(session, view, row, raw)
            if name == "ENVELOPE":
                items.append((b"ENVELOPE", mime.render_envelope(structure[0])))
            else:
                rendered = mime.render_bodystructure(
                    structure[1], extensible=name == "BODYSTRUCTURE"
                )
                items.append((name.encode("ascii"), rendered))
        else:
            assert raw is not None
            if name == "RFC822":
                items.append((b"RFC822", writer.section_value(raw)))
                continue
            if root is None:
                root = mime.parse_message(raw)
            if name == "RFC822.HEADER":
                items.append((b"RFC822.HEADER", writer.section_value(raw[: root.body_start])))
            elif name == "RFC822.TEXT":
                items.append((b"RFC822.TEXT", writer.section_value(raw[root.body_start :])))
            else:
                assert attr.section is not None
                data = mime.section(raw, attr.section, root)
                if data is not None and attr.partial is not None:
                    data = mime.partial(data, *attr.partial)
                items.append((response_name, writer.section_value(data)))
    if seen_changed and "FLAGS" not in names:
        # RFC 3501 §6.4.5: the implicit \Seen is reported with the data.
        items.append(_view_item(view, msn, _FLAGS))
    return items


async def _structure(
    session: Session, view: FolderView, row: MessageRow, raw: bytes | None
) -> tuple[mime.JSON, mime.JSON]:
    if row.envelope is not None and row.bodystructure is not None:
        return cache.loads(row.envelope), cache.loads(row.bodystructure)
    assert raw is not None
    meta = cache.annotate(raw)
    assert meta.envelope is not None and meta.bodystructure is not None
    await session.mail.cache_meta(view.folder.id, row.uid, meta.envelope, meta.bodystructure)
    return cache.loads(meta.envelope), cache.loads(meta.bodystructure)
