"""IMAP-facing folder and message operations (RFC 3501, UIDPLUS, CONDSTORE).

This is the store side of the IMAP server: it speaks folders, UIDs, flag
bits and MODSEQ values, never protocol syntax.  Every change goes through
the group committer as one unit, allocates one new MODSEQ in the folder it
touches (``folders.allocate``) and is reported to ``observers`` after the
commit, so that other sessions on the folder (in this process, or on other
nodes through the notification channel) can catch up.

How a session catches up: it remembers the folder's HIGHESTMODSEQ when it
last looked and asks :meth:`Mail.changes` for the messages with a higher
MODSEQ (new ones, and ones whose flags changed) and the UIDs expunged with a
higher MODSEQ (the ``expunged`` table).  Reading the folder row *before* the
messages makes this safe under READ COMMITTED too: a change committed in
between is seen now and seen again next time, and applying a change twice
is harmless.

Why flag changes share one MODSEQ per command: RFC 7162 §3.1 only asks
that every change gets a MODSEQ higher than every earlier one in the folder;
messages changed by the same STORE may share it, which keeps a STORE on
100,000 messages one counter update.

Which changes wait for an fsync: APPEND (a message, SPEC STORE-2) and COPY
or MOVE (filing mail) are durable before ``OK``.  Flag changes, expunges
and folder changes are committed with ``durable=False`` (see
``store.committer``): after a power cut the last of them may be undone --
a flag unset again, an expunged message back -- but never half done and
never a message lost; the next durable commit makes them durable too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)

from mssgw.errors import Conflict, NotFound
from mssgw.store import content
from mssgw.store.delivery import NO_FLAGS, LocalTarget, StoredCopy, hot_sql
from mssgw.store.folders import INBOX, allocate
from mssgw.store.models import ExpungedMessage, Flag, Folder, Mailbox, Message, table
from mssgw.store.timeutil import now
from mssgw.store.traces import TraceRecord, defer_trace

if TYPE_CHECKING:
    from mssgw.store import Store

_FOLDERS = table(Folder)
_MESSAGES = table(Message)
_EXPUNGED = table(ExpungedMessage)
_MAILBOXES = table(Mailbox)

#: Hierarchy delimiter of folder names (RFC 3501 §5.1.1), as Thunderbird expects it.
DELIMITER = "/"
#: UIDs per ``IN (...)`` list: well under SQLite's bound-parameter limit.
CHUNK = 500
#: Above this many ranges a UID set is sent as ``IN`` lists rather than ``OR``ed
#: ``BETWEEN``s (SQLite bounds expression depth at 1000).
MAX_RANGES = 32

Observer = Callable[[int, int], None]
R = TypeVar("R")
#: Messages a read may cover and still be ``small`` (``Store.reading``).
SMALL_READ = 64
#: A folder of at most this many messages is opened (SELECT) in the event
#: loop's thread: its snapshot is a few integers per message.
SMALL_FOLDER = 256
K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class FolderInfo:
    """A folder and its RFC 3501/7162 counters, as read at one moment."""

    id: int
    mailbox_id: int
    name: str
    special_use: str | None
    subscribed: bool
    uidvalidity: int
    uidnext: int
    highestmodseq: int


@dataclass(frozen=True, slots=True)
class MessageState:
    """What a selected folder's view keeps per message."""

    uid: int
    flags: int
    keywords: str
    modseq: int


@dataclass(frozen=True, slots=True)
class MessageRow:
    """What FETCH and SEARCH may need beyond the view."""

    uid: int
    flags: int
    keywords: str
    modseq: int
    internaldate: datetime
    size: int
    blob_id: str
    envelope: str | None
    bodystructure: str | None
    header_size: int | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    folder: FolderInfo
    messages: list[MessageState]


@dataclass(frozen=True, slots=True)
class Changes:
    """What happened in a folder after some MODSEQ; ``folder`` is None once deleted."""

    folder: FolderInfo | None
    messages: list[MessageState] = field(default_factory=list)
    expunged: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StoreResult:
    """Outcome of a flag change (RFC 3501 §6.4.6, RFC 7162 §3.1.3).

    ``changed`` got the new ``modseq``; ``unchanged`` already had the flags
    asked for; ``modified`` are the UIDs refused by UNCHANGEDSINCE.
    """

    changed: list[MessageState]
    unchanged: list[MessageState]
    modified: list[int]
    modseq: int | None


@dataclass(frozen=True, slots=True)
class CopyResult:
    """UIDPLUS COPYUID data (RFC 4315 §3): ``source[i]`` became ``target[i]``."""

    uidvalidity: int
    source: list[int]
    target: list[int]


@dataclass(frozen=True, slots=True)
class FolderStatus:
    messages: int
    unseen: int
    size: int
    uidnext: int
    uidvalidity: int
    highestmodseq: int


class Mail:
    """IMAP operations on the folders of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        #: Called with ``(folder_id, modseq)`` after each committed change.
        self.observers: list[Observer] = []

    # -- folders ------------------------------------------------------------------

    async def folders(self, mailbox_id: int) -> list[FolderInfo]:
        def work(conn: Connection) -> list[FolderInfo]:
            return [_folder(r) for r in conn.execute(_FOLDERS_OF, {"mailbox_id": mailbox_id})]

        return await self.store.reading(work)

    async def folder(self, mailbox_id: int, name: str) -> FolderInfo | None:
        name = canonical_name(name)
        return await self.store.reading(
            lambda conn: _folder_by_name(conn, mailbox_id, name), small=True
        )

    async def create_folder(
        self, mailbox_id: int, name: str, special_use: str | None = None
    ) -> FolderInfo:
        """Create ``name`` and any missing parent (RFC 3501 §6.3.3)."""
        name = canonical_name(name).rstrip(DELIMITER)
        if not name or DELIMITER * 2 in name or name.startswith(DELIMITER):
            raise Conflict(f"invalid folder name {name!r}")
        if name == INBOX:
            raise Conflict("INBOX already exists")
        parts = name.split(DELIMITER)
        wanted = [DELIMITER.join(parts[: i + 1]) for i in range(len(parts))]

        def work(conn: Connection) -> int:
            existing = set(
                conn.execute(
                    select(_FOLDERS.c.name).where(
                        _FOLDERS.c.mailbox_id == mailbox_id, _FOLDERS.c.name.in_(wanted)
                    )
                ).scalars()
            )
            if name in existing:
                raise Conflict(f"folder {name!r} already exists")
            used = conn.execute(
                select(func.max(_FOLDERS.c.uidvalidity)).where(_FOLDERS.c.mailbox_id == mailbox_id)
            ).scalar()
            uidvalidity = max(int(now().timestamp()), int(used or 0) + 1) & 0xFFFFFFFF
            folder_id = 0
            for path in wanted:
                if path in existing:
                    continue
                folder_id = int(
                    conn.execute(
                        _FOLDERS.insert()
                        .values(
                            mailbox_id=mailbox_id,
                            name=path,
                            special_use=special_use if path == name else None,
                            uidvalidity=uidvalidity,
                            uidnext=1,
                            highestmodseq=1,
                            subscribed=True,
                            created_at=now(),
                        )
                        .returning(_FOLDERS.c.id)
                    ).scalar_one()
                )
                uidvalidity = (uidvalidity + 1) & 0xFFFFFFFF
            return folder_id

        await self.store.committer.run(work, durable=False)
        created = await self.folder(mailbox_id, name)
        assert created is not None
        return created

    async def delete_folder(self, folder: FolderInfo) -> None:
        """RFC 3501 §6.3.4: messages go with it; INBOX cannot be deleted."""
        if folder.name == INBOX:
            raise Conflict("INBOX cannot be deleted")

        def work(conn: Connection) -> None:
            conn.execute(delete(_MESSAGES).where(_MESSAGES.c.folder_id == folder.id))
            conn.execute(delete(_EXPUNGED).where(_EXPUNGED.c.folder_id == folder.id))
            gone = conn.execute(delete(_FOLDERS).where(_FOLDERS.c.id == folder.id))
            if not gone.rowcount:
                raise NotFound(f"folder {folder.name!r} does not exist")

        await self.store.committer.run(work, durable=False)
        self._notify(folder.id, folder.highestmodseq + 1)

    async def rename_folder(self, mailbox_id: int, old: str, new: str) -> None:
        """RFC 3501 §6.3.5: children follow; renaming INBOX moves its messages."""
        old, new = canonical_name(old), canonical_name(new).rstrip(DELIMITER)
        if not new or new == INBOX or DELIMITER * 2 in new or new.startswith(DELIMITER):
            raise Conflict(f"invalid folder name {new!r}")
        if old == INBOX:
            target = await self.create_folder(mailbox_id, new)
            source = await self.folder(mailbox_id, INBOX)
            assert source is not None
            uids = [m.uid for m in (await self.snapshot(source.id)).messages]
            if uids:
                await self.copy(source, uids, target, move=True)
            return

        def work(conn: Connection) -> None:
            names: dict[str, int] = {
                name: folder_id
                for name, folder_id in conn.execute(
                    select(_FOLDERS.c.name, _FOLDERS.c.id).where(
                        _FOLDERS.c.mailbox_id == mailbox_id
                    )
                )
            }
            if old not in names:
                raise NotFound(f"folder {old!r} does not exist")
            if new in names:
                raise Conflict(f"folder {new!r} already exists")
            if new.startswith(old + DELIMITER):
                raise Conflict(f"cannot move {old!r} into itself")
            prefix = old + DELIMITER
            for name, folder_id in names.items():
                if name == old or name.startswith(prefix):
                    conn.execute(
                        update(_FOLDERS)
                        .where(_FOLDERS.c.id == folder_id)
                        .values(name=new + name[len(old) :])
                    )
            parents = new.split(DELIMITER)[:-1]
            for i in range(len(parents)):
                path = DELIMITER.join(parents[: i + 1])
                if path not in names:
                    conn.execute(
                        _FOLDERS.insert().values(
                            mailbox_id=mailbox_id,
                            name=path,
                            special_use=None,
                            uidvalidity=int(now().timestamp()) & 0xFFFFFFFF,
                            uidnext=1,
                            highestmodseq=1,
                            subscribed=True,
                            created_at=now(),
                        )
                    )
                    names[path] = -1

        await self.store.committer.run(work, durable=False)

    async def subscribe(self, mailbox_id: int, name: str, subscribed: bool) -> None:
        name = canonical_name(name)

        def work(conn: Connection) -> None:
            result = conn.execute(
                update(_FOLDERS)
                .where(_FOLDERS.c.mailbox_id == mailbox_id, _FOLDERS.c.name == name)
                .values(subscribed=subscribed)
            )
            if not result.rowcount:
                raise NotFound(f"folder {name!r} does not exist")

        await self.store.committer.run(work, durable=False)

    async def status(self, folder_id: int) -> FolderStatus:
        """STATUS counters (RFC 3501 §6.3.10, RFC 7162 §3.1.6, RFC 8438)."""

        def work(conn: Connection) -> tuple[FolderInfo | None, Any]:
            folder = _folder_by_id(conn, folder_id)
            if folder is None:
                return None, None
            return folder, conn.execute(_STATUS, {"folder_id": folder_id}).one()

        folder, counts = await self.store.reading(work)
        if folder is None:
            raise NotFound("folder does not exist")
        count, unseen_count, size = counts
        return FolderStatus(
            int(count),
            int(unseen_count or 0),
            int(size or 0),
            folder.uidnext,
            folder.uidvalidity,
            folder.highestmodseq,
        )

    # -- reading messages ---------------------------------------------------------------

    async def snapshot(self, folder_id: int) -> Snapshot:
        """Everything SELECT needs: the folder, then every (uid, flags, keywords, modseq)."""

        def work(conn: Connection) -> Snapshot | None:
            folder = _folder_by_id(conn, folder_id)
            if folder is None:
                return None
            return Snapshot(folder, _snapshot_states(conn, folder_id))

        snapshot = await self.store.reading(work)
        if snapshot is None:
            raise NotFound("folder does not exist")
        return snapshot

    async def open_folder(self, mailbox_id: int, name: str) -> Snapshot | None:
        """:meth:`folder` then :meth:`snapshot` in one read (SELECT/EXAMINE);
        ``None`` when there is no such folder.

        Most folders are small: the first read, in the event loop's thread,
        takes at most ``SMALL_FOLDER`` + 1 messages and is the answer when there
        are no more (no hop to a reader thread and back); a larger folder is
        then read again whole, folder and messages in one transaction, by a
        reader thread (a 100,000-message snapshot must not hold up the loop)."""
        name = canonical_name(name)

        def first(conn: Connection) -> Snapshot | bool | None:
            folder = _folder_by_name(conn, mailbox_id, name)
            if folder is None:
                return None
            states = _snapshot_states(conn, folder.id, limit=SMALL_FOLDER + 1)
            return Snapshot(folder, states) if len(states) <= SMALL_FOLDER else True

        found = await self.store.reading(first, small=True)
        if found is not True:
            return found if isinstance(found, Snapshot) else None

        def work(conn: Connection) -> Snapshot | None:
            folder = _folder_by_name(conn, mailbox_id, name)
            if folder is None:
                return None
            return Snapshot(folder, _snapshot_states(conn, folder.id))

        return await self.store.reading(work)

    async def changes(self, folder_id: int, since: int) -> Changes:
        """Messages changed or added, and UIDs expunged, with MODSEQ > ``since``."""

        def work(conn: Connection) -> Changes:
            folder = _folder_by_id(conn, folder_id)
            if folder is None:
                return Changes(None)
            if folder.highestmodseq <= since:
                return Changes(folder)
            params = {"folder_id": folder_id, "since": since}
            messages = [MessageState(*row) for row in conn.execute(_CHANGED, params)]
            expunged = list(conn.execute(_EXPUNGED_SINCE, params).scalars())
            return Changes(folder, messages, expunged)

        return await self.store.reading(work)

    async def rows(self, folder_id: int, uids: Sequence[int]) -> dict[int, MessageRow]:
        """Full rows of ``uids`` (missing ones were expunged meanwhile)."""
        if not uids:
            return {}
        rows, _ = await self.rows_then(folder_id, uids, lambda _conn, _rows: None)
        return rows

    async def rows_then(
        self,
        folder_id: int,
        uids: Sequence[int],
        then: Callable[[Connection, dict[int, MessageRow]], R],
        *,
        small: bool = False,
    ) -> tuple[dict[int, MessageRow], R]:
        """:meth:`rows`, and ``then(rows)`` run right after in the same worker
        thread, over the same connection (FETCH reads the message octets it needs
        there: one hop for both).  ``then`` must only read.  ``small``: see
        ``Store.reading`` (the caller bounds what ``then`` reads too)."""
        if not uids:
            return {}, await self.store.reading(lambda conn: then(conn, {}))

        def work(conn: Connection) -> tuple[dict[int, MessageRow], R]:
            out: dict[int, MessageRow] = {}
            for row in _message_rows(conn, folder_id, uids):
                out[row.uid] = row
            return out, then(conn, out)

        return await self.store.reading(work, small=small and len(uids) <= SMALL_READ)

    async def cache_meta(self, folder_id: int, uid: int, envelope: str, bodystructure: str) -> None:
        """Fill the MIME cache of a message delivered without it (no MODSEQ change:
        the message did not change, only what we know about it)."""

        def work(conn: Connection) -> None:
            conn.execute(
                update(_MESSAGES)
                .where(_MESSAGES.c.folder_id == folder_id, _MESSAGES.c.uid == uid)
                .values(envelope=envelope, bodystructure=bodystructure)
            )

        await self.store.committer.run(work, durable=False)

    def read_octets(
        self, conn: Connection, wanted: dict[K, tuple[str, int | None]]
    ) -> dict[K, bytes]:
        """Blocking read of messages' octets, whole or their first ``limit``
        (inside ``reading`` work: see ``mssgw.store.content``)."""
        return content.read_many(conn, self.store.blobs, wanted)

    async def octets(self, wanted: dict[K, tuple[str, int | None]]) -> dict[K, bytes]:
        """:meth:`read_octets` in one hop to the store."""
        return await self.store.reading(lambda conn: self.read_octets(conn, wanted))

    async def read_blobs(self, blob_ids: Iterable[str]) -> dict[str, bytes]:
        return await self.store.contents.read(blob_ids)

    # -- changing messages ----------------------------------------------------------------

    async def store_flags(
        self,
        folder_id: int,
        uids: Sequence[int],
        mode: str,
        flags: Flag,
        keywords: Sequence[str],
        unchangedsince: int | None = None,
        *,
        read_first: bool = False,
    ) -> StoreResult:
        """STORE (RFC 3501 §6.4.6): ``mode`` is ``replace``, ``add`` or ``remove``.

        Keywords are kept in the order they were first set and compared
        case-insensitively (RFC 3501 §2.3.2: flag names are not case
        sensitive), keeping the first spelling.  ``read_first``: the caller
        expects no change (the client sets flags the messages already have):
        check with a read, and go through the write path only if needed.
        """
        wanted_kw = list(dict.fromkeys(keywords))

        def decide(conn: Connection) -> tuple[list[tuple[int, int, str]], StoreResult]:
            current: list[tuple[int, int, str, int]] = _message_states(conn, folder_id, uids)
            current.sort()
            modified: list[int] = []
            todo: list[tuple[int, int, str]] = []
            unchanged: list[MessageState] = []
            for uid, old_flags, old_kw, modseq in current:
                if unchangedsince is not None and modseq > unchangedsince:
                    modified.append(uid)
                    continue
                new_flags, new_kw = apply_flags(old_flags, old_kw, mode, int(flags), wanted_kw)
                if new_flags == old_flags and new_kw == old_kw:
                    unchanged.append(MessageState(uid, old_flags, old_kw, modseq))
                else:
                    todo.append((uid, new_flags, new_kw))
            return todo, StoreResult([], unchanged, modified, None)

        def work(conn: Connection) -> StoreResult:
            todo, nothing = decide(conn)
            if not todo:
                return nothing
            alloc = allocate(conn, folder_id, 0)
            hot = hot_sql(conn.dialect)
            hot.executemany(
                conn,
                hot.sql(_SET_FLAGS_SQL),
                [(f, k, alloc.modseq, folder_id, u) for u, f, k in todo],
            )
            changed = [MessageState(u, f, k, alloc.modseq) for u, f, k in todo]
            return StoreResult(changed, nothing.unchanged, nothing.modified, alloc.modseq)

        if read_first:
            # Probably nothing to change: a read (which never waits for writers)
            # confirms it; the answer is that snapshot's, as for any STORE.
            todo, nothing = await self.store.reading(decide, small=len(uids) <= SMALL_READ)
            if not todo:
                return nothing
        result = await self.store.committer.run(work, durable=False)
        if result.modseq is not None:
            self._notify(folder_id, result.modseq)
        return result

    async def expunge(self, folder_id: int, uids: Sequence[int] | None = None) -> list[int]:
        """Remove the ``\\Deleted`` messages (of ``uids`` only: UID EXPUNGE, RFC 4315 §2.1)."""
        gone, _ = await self.expunge_modseq(folder_id, uids)
        return gone

    async def expunge_modseq(
        self,
        folder_id: int,
        uids: Sequence[int] | None = None,
        *,
        trace: Callable[[int], TraceRecord] | None = None,
    ) -> tuple[list[int], int | None]:
        """:meth:`expunge`, also giving the MODSEQ of the change (``None``: nothing gone).

        ``trace(count)`` builds the TRACE-1 record of a removal, written in the
        same transaction (no commit of its own); nothing is traced when
        nothing was removed."""
        stamp = now()

        def work(conn: Connection) -> tuple[list[int], int | None]:
            params = {"folder_id": folder_id}
            if uids is None:
                found = list(conn.execute(_DELETED, params).scalars())
            elif len(spans := ranges_of(uids)) == 1:
                hot = hot_sql(conn.dialect)
                sql = hot.sql(_DELETED_SPAN_SQL)
                found = [r[0] for r in hot.execute(conn, sql, (folder_id, *spans[0])).fetchall()]
            else:
                found = [row[0] for row in _by_uids(conn, _DELETED, params, uids)]
            if not found:
                return [], None
            found.sort()
            alloc = allocate(conn, folder_id, 0)
            _remove(conn, folder_id, found, alloc.modseq)
            if trace is not None:
                defer_trace(conn, trace(len(found)), stamp)
            return found, alloc.modseq

        gone, modseq = await self.store.committer.run(
            work, defers=trace is not None, durable=False
        )
        if modseq is not None:
            self._notify(folder_id, modseq)
        return gone, modseq

    async def expunged_mark(self) -> int:
        """The newest expunge record so far (0 when none): a mark for
        :meth:`forget_expunged` at the next housekeeping."""

        def work(conn: Connection) -> int:
            return int(conn.execute(select(func.max(_EXPUNGED.c.id))).scalar() or 0)

        return await self.store.reading(work)

    async def forget_expunged(self, through: int) -> int:
        """Delete the expunge records up to the mark ``through``; return how many.

        A session reads the expunges newer than its view's MODSEQ (``changes``),
        and its view is brought up to date at every command and, in IDLE, at
        every change of the folder; a session that sends nothing is logged out
        after ``[imap] idle_timeout`` (30 min; RFC 3501 §5.4).  So a record older
        than one housekeeping period (a day: the mark was taken at the previous
        one) is needed by no session, and without this the table grows by one
        row per expunged message for ever.
        """

        def work(conn: Connection) -> int:
            return int(conn.execute(delete(_EXPUNGED).where(_EXPUNGED.c.id <= through)).rowcount)

        return int(await self.store.committer.run(work, durable=False))

    async def copy(
        self, source: FolderInfo, uids: Sequence[int], target: FolderInfo, *, move: bool = False
    ) -> CopyResult:
        """COPY / MOVE (RFC 3501 §6.4.7, RFC 6851): new UIDs in ``target``, same blobs.

        A MOVE is one transaction: the copies appear and the originals
        disappear together, so no session ever sees both or neither.
        """

        def work(conn: Connection) -> tuple[CopyResult, int, int | None]:
            rows: list[Any] = []
            for where in _uid_conditions(uids):
                rows.extend(
                    conn.execute(
                        select(_MESSAGES).where(_MESSAGES.c.folder_id == source.id, where)
                    ).mappings()
                )
            rows.sort(key=lambda r: r["uid"])
            exists = conn.execute(
                select(_FOLDERS.c.uidvalidity).where(_FOLDERS.c.id == target.id)
            ).scalar()
            if exists is None:
                raise NotFound(f"folder {target.name!r} does not exist")
            if not rows:
                return CopyResult(int(exists), [], []), 0, None
            alloc = allocate(conn, target.id, len(rows))
            new_uids = list(range(alloc.uid, alloc.uid + len(rows)))
            conn.execute(
                _MESSAGES.insert(),
                [
                    {
                        **{k: v for k, v in r.items() if k != "id"},
                        "folder_id": target.id,
                        "uid": uid,
                        "modseq": alloc.modseq,
                    }
                    for r, uid in zip(rows, new_uids, strict=True)
                ],
            )
            moved_modseq = None
            if move:
                moved_modseq = allocate(conn, source.id, 0).modseq
                _remove(conn, source.id, [r["uid"] for r in rows], moved_modseq)
            result = CopyResult(int(exists), [r["uid"] for r in rows], new_uids)
            return result, alloc.modseq, moved_modseq

        result, target_modseq, source_modseq = await self.store.committer.run(work)
        if result.target:
            self._notify(target.id, target_modseq)
        if source_modseq is not None:
            self._notify(source.id, source_modseq)
        return result

    async def append(
        self,
        address: str,
        folder: FolderInfo | str,
        data: bytes | BinaryIO,
        *,
        flags: Flag = NO_FLAGS,
        keywords: Sequence[str] = (),
        internaldate: datetime | None = None,
        trace: TraceRecord | None = None,
    ) -> StoredCopy:
        """APPEND (RFC 3501 §6.3.11): through the delivery path, so the blob is
        fsynced and the row committed before this returns (SPEC STORE-2);
        ``trace`` (TRACE-1) is written in the same transaction.  ``folder`` may be
        given by name only: the delivery finds it (``NoSuchFolder`` if absent) in
        the transaction that files the message, so no read is needed first."""
        name = canonical_name(folder) if isinstance(folder, str) else folder.name
        result = await self.store.messages.deliver(
            data,
            [LocalTarget(address, name, flags, tuple(dict.fromkeys(keywords)))],
            internaldate=internaldate,
            trace=trace,
        )
        # Delivery observers have already announced it.
        return result.copies[0]

    @staticmethod
    def appended(stored: StoredCopy, flags: Flag, keywords: Sequence[str]) -> MessageState:
        """The state :meth:`append` gave the new message (as ``changes`` would read it)."""
        return MessageState(
            stored.uid, int(flags), " ".join(dict.fromkeys(keywords)), stored.modseq
        )

    def _notify(self, folder_id: int, modseq: int) -> None:
        for observer in self.observers:
            observer(folder_id, modseq)


# -- helpers ---------------------------------------------------------------------------


def canonical_name(name: str) -> str:
    """INBOX is case-insensitive (RFC 3501 §5.1), everything else is kept."""
    if name.upper() == INBOX:
        return INBOX
    if name.upper().startswith(INBOX + DELIMITER):
        return INBOX + name[len(INBOX) :]
    return name


def apply_flags(
    old_flags: int, old_keywords: str, mode: str, flags: int, keywords: Sequence[str]
) -> tuple[int, str]:
    """New (flags, keywords) after a STORE in ``mode`` (replace/add/remove)."""
    current = old_keywords.split() if old_keywords else []
    if mode == "replace":
        return flags, " ".join(keywords)
    if mode == "add":
        known = {k.lower() for k in current}
        added = [k for k in keywords if k.lower() not in known]
        return old_flags | flags, " ".join(current + added)
    if mode == "remove":
        drop = {k.lower() for k in keywords}
        return old_flags & ~flags, " ".join(k for k in current if k.lower() not in drop)
    raise ValueError(f"unknown STORE mode {mode!r}")


def ranges_of(uids: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for uid in sorted(set(uids)):
        if out and out[-1][1] == uid - 1:
            out[-1] = (out[-1][0], uid)
        else:
            out.append((uid, uid))
    return out


def _uid_conditions(uids: Sequence[int]) -> list[ColumnElement[bool]]:
    """Conditions selecting exactly ``uids``: a few BETWEENs, or IN chunks."""
    spans = ranges_of(uids)
    if not spans:
        return [_MESSAGES.c.uid.in_([])]
    if len(spans) <= MAX_RANGES:
        return [or_(*(_MESSAGES.c.uid.between(lo, hi) for lo, hi in spans))]
    ordered = sorted(set(uids))
    return [_MESSAGES.c.uid.in_(chunk) for chunk in _chunks(ordered, CHUNK)]


def _chunks(values: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _by_uids(
    conn: Connection, query: Select[Any], params: dict[str, Any], uids: Sequence[int]
) -> Iterator[Any]:
    """Rows of ``query`` (a module constant, run with ``params``) among ``uids``.

    One range of UIDs (the usual case: ``1:*``, one message, a span) runs a
    statement built once; other sets build their conditions."""
    spans = ranges_of(uids)
    if len(spans) == 1:
        key = id(query)
        statement = _SPAN_QUERIES.get(key)
        if statement is None:
            statement = _SPAN_QUERIES[key] = query.where(_UID_SPAN)
        lo, hi = spans[0]
        yield from conn.execute(statement, {**params, "uid_lo": lo, "uid_hi": hi})
        return
    for where in _uid_conditions(uids):
        yield from conn.execute(query.where(where), params)


def _remove(conn: Connection, folder_id: int, uids: Sequence[int], modseq: int) -> None:
    hot = hot_sql(conn.dialect)
    if len(uids) == 1:  # the usual UID EXPUNGE of one message, on the DBAPI cursor
        hot.execute(conn, hot.sql(_DELETE_ONE_SQL), (folder_id, uids[0]))
    else:
        for chunk in _chunks(list(uids), CHUNK):
            conn.execute(_DELETE_UIDS, {"folder_id": folder_id, "uids": list(chunk)})
    hot.executemany(
        conn, hot.sql(_INSERT_EXPUNGED_SQL), [(folder_id, uid, modseq) for uid in uids]
    )


def _folder_select() -> Any:
    c = _FOLDERS.c
    return select(
        c.id,
        c.mailbox_id,
        c.name,
        c.special_use,
        c.subscribed,
        c.uidvalidity,
        c.uidnext,
        c.highestmodseq,
    )


def _folder(row: Any) -> FolderInfo:
    return FolderInfo(
        int(row[0]),
        int(row[1]),
        row[2],
        row[3],
        bool(row[4]),
        int(row[5]),
        int(row[6]),
        int(row[7]),
    )


# Read statements built once (bound parameters): building a statement costs more
# Python than running it on SQLite, and the compiled form is cached by its shape.
_FOLDER_BY_ID = _folder_select().where(_FOLDERS.c.id == bindparam("folder_id"))
_FOLDERS_OF = (
    _folder_select()
    .where(_FOLDERS.c.mailbox_id == bindparam("mailbox_id"))
    .order_by(_FOLDERS.c.name)
)
_STATE_COLUMNS = (_MESSAGES.c.uid, _MESSAGES.c.flags, _MESSAGES.c.keywords, _MESSAGES.c.modseq)
_CHANGED = (
    select(*_STATE_COLUMNS)
    .where(_MESSAGES.c.folder_id == bindparam("folder_id"), _MESSAGES.c.modseq > bindparam("since"))
    .order_by(_MESSAGES.c.uid)
)
_EXPUNGED_SINCE = (
    select(_EXPUNGED.c.uid)
    .where(_EXPUNGED.c.folder_id == bindparam("folder_id"), _EXPUNGED.c.modseq > bindparam("since"))
    .order_by(_EXPUNGED.c.uid)
)
_ROWS = select(
    *_STATE_COLUMNS,
    _MESSAGES.c.internaldate,
    _MESSAGES.c.size,
    _MESSAGES.c.blob_id,
    _MESSAGES.c.envelope,
    _MESSAGES.c.bodystructure,
    _MESSAGES.c.header_size,
).where(_MESSAGES.c.folder_id == bindparam("folder_id"))
_STATES = select(*_STATE_COLUMNS).where(_MESSAGES.c.folder_id == bindparam("folder_id"))
_DELETED = select(_MESSAGES.c.uid).where(
    _MESSAGES.c.folder_id == bindparam("folder_id"),
    _MESSAGES.c.flags.op("&")(int(Flag.DELETED)) != 0,
)
_UID_SPAN = _MESSAGES.c.uid.between(bindparam("uid_lo"), bindparam("uid_hi"))
#: ``query.where(_UID_SPAN)`` of the module's queries, by ``id(query)``.
_SPAN_QUERIES: dict[int, Select[Any]] = {}
_DELETE_UIDS = delete(_MESSAGES).where(
    _MESSAGES.c.folder_id == bindparam("folder_id"),
    _MESSAGES.c.uid.in_(bindparam("uids", expanding=True)),
)
_STATUS = select(
    func.count(),
    func.sum(case((_MESSAGES.c.flags.op("&")(int(Flag.SEEN)) == 0, 1), else_=0)),
    func.sum(_MESSAGES.c.size),
).where(_MESSAGES.c.folder_id == bindparam("folder_id"))


def _folder_by_name(conn: Connection, mailbox_id: int, name: str) -> FolderInfo | None:
    hot = hot_sql(conn.dialect)
    row = hot.execute(conn, hot.sql(_FOLDER_BY_NAME_SQL), (mailbox_id, name)).fetchone()
    return _folder(row) if row is not None else None


# The hottest reads (every SELECT, FETCH and APPEND) go straight to the DBAPI
# cursor, as the delivery's statements do: a Core statement's execution and its
# ``Row`` objects cost several times what SQLite spends on these queries.
_FOLDER_COLUMNS = (
    "id, mailbox_id, name, special_use, subscribed, uidvalidity, uidnext, highestmodseq"
)
_FOLDER_BY_NAME_SQL = f"SELECT {_FOLDER_COLUMNS} FROM folders WHERE mailbox_id = ? AND name = ?"
_SNAPSHOT_SQL = (
    "SELECT uid, flags, keywords, modseq FROM messages WHERE folder_id = ? ORDER BY uid"
)
_ROWS_SPAN_SQL = (
    "SELECT uid, flags, keywords, modseq, internaldate, size, blob_id, envelope,"
    " bodystructure, header_size FROM messages"
    " WHERE folder_id = ? AND uid BETWEEN ? AND ?"
)


def _snapshot_states(
    conn: Connection, folder_id: int, *, limit: int | None = None
) -> list[MessageState]:
    """Every (uid, flags, keywords, modseq) of the folder, or its first ``limit``."""
    hot = hot_sql(conn.dialect)
    if limit is None:
        rows = hot.execute(conn, hot.sql(_SNAPSHOT_SQL), (folder_id,)).fetchall()
    else:
        sql = hot.sql(_SNAPSHOT_SQL + " LIMIT ?")
        rows = hot.execute(conn, sql, (folder_id, limit)).fetchall()
    return [MessageState(*row) for row in rows]


_SET_FLAGS_SQL = (
    "UPDATE messages SET flags = ?, keywords = ?, modseq = ? WHERE folder_id = ? AND uid = ?"
)
_DELETED_SPAN_SQL = (
    f"SELECT uid FROM messages WHERE folder_id = ? AND uid BETWEEN ? AND ?"
    f" AND (flags & {int(Flag.DELETED)}) != 0"
)
_DELETE_ONE_SQL = "DELETE FROM messages WHERE folder_id = ? AND uid = ?"
_INSERT_EXPUNGED_SQL = "INSERT INTO expunged (folder_id, uid, modseq) VALUES (?, ?, ?)"
_STATES_SPAN_SQL = (
    "SELECT uid, flags, keywords, modseq FROM messages"
    " WHERE folder_id = ? AND uid BETWEEN ? AND ?"
)


def _message_states(
    conn: Connection, folder_id: int, uids: Sequence[int]
) -> list[tuple[int, int, str, int]]:
    """(uid, flags, keywords, modseq) of each of ``uids`` still in the folder (one
    span of UIDs on the DBAPI cursor, other sets through ``_by_uids``)."""
    spans = ranges_of(uids)
    if len(spans) != 1:
        rows = _by_uids(conn, _STATES, {"folder_id": folder_id}, uids)
        return [(row[0], row[1], row[2], row[3]) for row in rows]
    hot = hot_sql(conn.dialect)
    lo, hi = spans[0]
    found = hot.execute(conn, hot.sql(_STATES_SPAN_SQL), (folder_id, lo, hi)).fetchall()
    return [(r[0], r[1], r[2], r[3]) for r in found]


def _message_rows(conn: Connection, folder_id: int, uids: Sequence[int]) -> Iterator[MessageRow]:
    """The ``MessageRow`` of each of ``uids`` still in the folder.  One span of UIDs
    (the usual case) on the DBAPI cursor; other sets through ``_by_uids``."""
    spans = ranges_of(uids)
    if len(spans) != 1:
        for row in _by_uids(conn, _ROWS, {"folder_id": folder_id}, uids):
            yield MessageRow(*cast(tuple[Any, ...], row))
        return
    hot = hot_sql(conn.dialect)
    when = hot.utc_out
    lo, hi = spans[0]
    for r in hot.execute(conn, hot.sql(_ROWS_SPAN_SQL), (folder_id, lo, hi)).fetchall():
        internaldate = cast(datetime, when(r[4]))  # NOT NULL
        yield MessageRow(r[0], r[1], r[2], r[3], internaldate, r[5], r[6], r[7], r[8], r[9])


def _folder_by_id(conn: Connection, folder_id: int) -> FolderInfo | None:
    row = conn.execute(_FOLDER_BY_ID, {"folder_id": folder_id}).first()
    return _folder(row) if row is not None else None
