"""Delivering messages into folders, and the few message operations the store owns.

A small message (``store.inline_max``, in memory) is kept in its blob row,
so the delivery is one transaction and one fsync (``mssgw.store.content``).
A larger one is written to its blob file first (file and folder entry
fsynced, once for every recipient).  Then one transaction records the blob
row (with the bytes, if inline), allocates a
UID and MODSEQ in each target folder, inserts one message row per folder and
one queue row per remote recipient.  Either all of that commits or none of it
is visible; the call returns only after the commit, so the caller may then
answer ``250`` or ``OK`` (SPEC STORE-2).  (The unit is handed to the group
committer while its blob is being written, so the blob's fsyncs overlap the
wait for the committer; the committer runs it only once the blob is durable,
and prefers units whose blob is done, so a slow blob holds back no one else.)

The hot path (one delivery into one folder) is three statements, run through
the DBAPI cursor with SQL written once per dialect (building and compiling
Core statements cost several times the SQL itself): the blob row, one
``UPDATE folders ... RETURNING`` that finds the folder by mailbox address and
name, checks the mailbox is active and allocates the UID and MODSEQ, and the
message row.  The blob and message rows of local-only deliveries are handed
to the group committer (``deferred``), which inserts those of a whole batch
with one ``executemany`` each.
"""

from __future__ import annotations

import contextlib
import ctypes
import email.parser
import email.policy
import hashlib
import io
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from sqlalchemy import Connection, Dialect, delete, select, update

from mssgw.errors import Conflict, NoSuchFolder, NotFound
from mssgw.store.base import UtcDateTime
from mssgw.store.blobs import BlobRef
from mssgw.store.committer import deferred
from mssgw.store.folders import INBOX, allocate, folder_by_name
from mssgw.store.models import (
    Flag,
    Folder,
    Mailbox,
    MailboxState,
    Message,
    QueueEntry,
    QueueState,
    table,
)
from mssgw.store.timeutil import now

if TYPE_CHECKING:
    from mssgw.store import Store
    from mssgw.store.traces import TraceRecord


NO_FLAGS = Flag(0)
#: Messages above this size are parsed for their MIME structure two at a time at most.
_BIG = 4 * 1024 * 1024
_BIG_PARSES = threading.BoundedSemaphore(2)
#: Threads writing blobs (one pool per process, threads started on demand).  They
#: mostly wait in fsync: more of them than asyncio's default pool (cores + 4) lets
#: concurrent deliveries share the file system's journal commits instead of
#: queueing for a thread.
_BLOB_WRITERS = ThreadPoolExecutor(32, thread_name_prefix="mssgw-blob")
#: Inline messages up to this size are hashed and annotated by the delivery unit
#: itself (in the committer), larger ones by a blob writer, in parallel.
_PREPARE_MAX = 64 * 1024


def _give_big_buffers_back() -> None:
    """glibc: serve every allocation of 4 MiB or more with its own ``mmap``.

    By default glibc raises its mmap threshold each time a big block is freed
    (up to 32 MiB): after one big message, the next ones' buffers (the bytes
    read for the MIME structure, tens of MB) are carved from the heap of the
    thread that asked (up to 32 blob writers, one heap each) and stay in the
    process once freed.  A fixed threshold gives them back at once: a burst of
    20 messages of 20 MB peaks at about 145 MB instead of 225-325 MB
    (``docs/benchmarks.md``).  Elsewhere than glibc, nothing is changed.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 4 << 20)
    except (OSError, AttributeError):
        pass


_M_MMAP_THRESHOLD = -3
_give_big_buffers_back()


@dataclass(frozen=True)
class LocalTarget:
    """A local mailbox to file the message in.

    ``notify`` and ``orcpt`` are this recipient's DSN parameters as sent (RFC
    3461 §4.1, §4.2); with ``keep_envelope`` the envelope's return path, ENVID
    and RET are stored with the copy too, for a "delivered" DSN (§6.2.1).
    """

    address: str
    folder: str = INBOX
    flags: Flag = NO_FLAGS
    keywords: tuple[str, ...] = ()
    notify: str | None = None
    orcpt: str | None = None
    keep_envelope: bool = False


@dataclass(frozen=True)
class RemoteTarget:
    """A remote recipient to queue, with its DSN parameters as sent (RFC 3461 §4)."""

    recipient: str
    notify: str | None = None
    orcpt: str | None = None


@dataclass(frozen=True)
class Lease:
    """Queue rows leased, as they are inserted, to the relay worker that will send them.

    The worker gets the rows from the delivery (``DeliveryResult.leased``)
    instead of claiming them: one transaction less per message.  If it never
    tries them (a crash), the lease ends and any worker claims them.
    """

    worker: str
    duration: timedelta


@dataclass(frozen=True)
class MessageMeta:
    """What is cached with each message row (computed once, at delivery)."""

    message_id: str | None = None
    envelope: str | None = None
    bodystructure: str | None = None
    header_size: int | None = None


@dataclass(frozen=True)
class Envelope:
    """SMTP envelope data kept for the relay (RFC 3461 §4.3, §4.4)."""

    sender: str = ""
    envid: str | None = None
    ret: str | None = None


@dataclass(frozen=True)
class StoredCopy:
    address: str
    folder_id: int
    uid: int
    modseq: int
    uidvalidity: int


@dataclass(frozen=True)
class DeliveryResult:
    blob: BlobRef
    copies: list[StoredCopy] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    #: With ``deliver(lease=...)``: the queue rows as inserted, leased.
    leased: list[QueueEntry] = field(default_factory=list)


class Messages:
    """Repository of stored messages."""

    def __init__(self, store: Store) -> None:
        self.store = store
        #: Computes the cached metadata (ENVELOPE/BODYSTRUCTURE JSON...) from the
        #: raw octets, in the blob worker thread.  Installed by the layer that owns
        #: MIME (the IMAP edge, see ``mssgw.imap.service``) so that ``store/`` never
        #: imports ``imap/``; ``None`` caches only Message-ID and header size.
        self.annotate: Callable[[bytes], MessageMeta] | None = None
        #: Called with ``(folder_id, modseq)`` after each committed delivery, so
        #: IMAP sessions on that folder learn about new mail at once.
        self.observers: list[Callable[[int, int], None]] = []
    async def deliver(
        self,
        data: bytes | BinaryIO,
        local: Sequence[LocalTarget] = (),
        remote: Sequence[RemoteTarget] = (),
        *,
        envelope: Envelope = Envelope(),
        internaldate: datetime | None = None,
        meta: MessageMeta | None = None,
        trace: TraceRecord | None = None,
        lease: Lease | None = None,
    ) -> DeliveryResult:
        """Store ``data`` for every target; return once it is all durable.

        ``trace`` (SPEC TRACE-1) is written in the same transaction: a delivery
        is never durable without it, and it costs no commit of its own.
        ``lease``: the queue rows are inserted leased to that relay worker and
        returned in ``leased``.
        """
        if not local and not remote:
            raise Conflict("a delivery needs at least one recipient")
        # The unit is handed over at once; the committer runs it once its blob
        # is durable (``after``): the blob's fsyncs overlap the wait for the
        # committer, and a slow blob holds back no one else's commit.  A small
        # message kept inline has no file to write: its hash and MIME structure
        # (tens of microseconds) are computed by the unit itself, in the
        # committer's thread, which saves a hop to a blob writer and back.
        prepared: list[tuple[BlobRef, MessageMeta]] = []
        writing: Future[tuple[BlobRef, MessageMeta]] | None = None
        if not (isinstance(data, bytes) and len(data) <= min(self.store.inline_max, _PREPARE_MAX)):
            writing = _BLOB_WRITERS.submit(self._write_blob, data, meta)
        when = internaldate or now()
        stamp = now()

        def work(conn: Connection) -> DeliveryResult:
            if writing is not None:
                blob, cached = writing.result()  # done (durable) before the unit runs
            else:
                if not prepared:  # once, even if the unit is run again alone
                    prepared.append(self._write_blob(data, meta))
                blob, cached = prepared[0]
            hot = hot_sql(conn.dialect)
            # Asked for first, so the batch's blob rows go in before its message rows.
            blobs = deferred(conn, _flush_blobs)
            blob_row = (blob.id, blob.size, hot.utc(stamp), blob.data)
            if remote:  # queue rows reference the blob row at once
                hot.execute(conn, hot.insert_blob, blob_row)
            else:
                blobs.append(blob_row)
            copies = [
                _file(conn, hot, blob, target, when, cached, envelope) for target in local
            ]
            rows = [_queue(conn, hot, blob, envelope, t, stamp, lease) for t in remote]
            if trace is not None:
                from mssgw.store.traces import defer_trace

                defer_trace(conn, trace, stamp)
            leased = rows if lease is not None else []
            return DeliveryResult(blob, copies, [r.id for r in rows], leased)

        result = await self.store.committer.run(work, defers=True, after=writing)
        for copy in result.copies:
            for observer in self.observers:
                observer(copy.folder_id, copy.modseq)
        return result

    def _write_blob(
        self, data: bytes | BinaryIO, meta: MessageMeta | None
    ) -> tuple[BlobRef, MessageMeta]:
        """In a worker thread: the message's metadata, and its file, fsynced, and
        the folder entry, fsynced -- unless it is small enough to be kept in the
        blob row, which the delivery's COMMIT makes durable (``store.content``).

        The folder is fsynced here rather than by the committer for its batch:
        blobs are spread over 256 folders, so a batch's blobs rarely share one,
        and these fsyncs, run in parallel by the worker threads, share the file
        system's journal commits instead of queueing in the committer's thread.
        """
        if isinstance(data, bytes) and len(data) <= self.store.inline_max:
            # Kept in the blob row: durable with the delivery's own COMMIT.
            blob = BlobRef(hashlib.sha256(data).hexdigest(), len(data), data)
        else:
            blob = self.store.blobs.put_sync(data)
        if meta is None and self.annotate is not None:
            if isinstance(data, bytes):
                meta = self.annotate(data)
            else:
                # The MIME structure needs the whole message in memory: bound how many
                # large ones are parsed at once, so a burst of big messages stays small.
                with _BIG_PARSES if blob.size > _BIG else contextlib.nullcontext():
                    meta = self.annotate(self.store.blobs.read(blob.id))
        if meta is None:
            meta = header_meta(
                io.BytesIO(data) if isinstance(data, bytes) else self.store.blobs.open(blob.id)
            )
        return blob, meta

    async def uids(self, folder_id: int) -> list[int]:
        async with self.store.read() as s:
            rows = await s.scalars(
                select(Message.uid).where(Message.folder_id == folder_id).order_by(Message.uid)
            )
            return list(rows.all())

    async def folder(self, address: str, name: str = INBOX) -> Folder:
        async with self.store.read() as s:
            mailbox = await s.scalar(select(Mailbox).where(Mailbox.address == address.lower()))
            if mailbox is None:
                raise NotFound(f"no mailbox {address}")
            folder = await folder_by_name(s, mailbox.id, name)
            if folder is None:
                raise NotFound(f"no folder {name!r} in {address}")
            return folder

    async def expunge(self, folder_id: int, uids: Sequence[int]) -> int:
        """Remove messages (RFC 3501 §6.4.3).  UIDNEXT is untouched: UIDs are never reused."""

        def work(conn: Connection) -> int:
            result = conn.execute(
                delete(_MESSAGES).where(
                    _MESSAGES.c.folder_id == folder_id, _MESSAGES.c.uid.in_(list(uids))
                )
            )
            if result.rowcount:
                allocate(conn, folder_id, 0)
            return int(result.rowcount)

        return await self.store.committer.run(work)

    async def set_flags(self, folder_id: int, uid: int, flags: Flag) -> int:
        """Replace a message's system flags; return its new MODSEQ (RFC 7162 §3.2)."""

        def work(conn: Connection) -> int:
            alloc = allocate(conn, folder_id, 0)
            result = conn.execute(
                update(_MESSAGES)
                .where(_MESSAGES.c.folder_id == folder_id, _MESSAGES.c.uid == uid)
                .values(flags=int(flags), modseq=alloc.modseq)
            )
            if not result.rowcount:
                raise NotFound(f"no message with UID {uid}")
            return alloc.modseq

        return await self.store.committer.run(work)


# Core statements on the tables, not ORM: a delivery is on the hot path and the
# ORM's unit of work (autoflush, identity map sync) costs more than the SQL.
_MAILBOXES = table(Mailbox)
_FOLDERS = table(Folder)
_MESSAGES = table(Message)


class HotSql:
    """The hot statements of one dialect, as SQL for its DBAPI paramstyle.

    Run through the DBAPI cursor of the unit's connection (``sqlite3``, or
    SQLAlchemy's asyncpg adapter), inside the committer's transaction.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.paramstyle = dialect.paramstyle
        self._converted: dict[str, str] = {}
        #: Python datetime → what the DBAPI gets for a ``UtcDateTime`` column.
        self.utc = UtcDateTime().dialect_impl(dialect).bind_processor(dialect) or _same
        #: What the DBAPI gives for a ``UtcDateTime`` column → aware UTC datetime.
        self.utc_out = UtcDateTime().dialect_impl(dialect).result_processor(dialect, None) or _same
        # Identical bytes delivered before are not inserted again; a row that
        # has only a file gets the bytes when they come again small enough to
        # be inline (mssgw.store.content).
        self.insert_blob = self.sql(
            "INSERT INTO blobs (id, size, created_at, data) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET data = excluded.data"
            " WHERE blobs.data IS NULL AND excluded.data IS NOT NULL"
        )
        # The folder found by mailbox address and name, only if the mailbox is
        # active; the UIDNEXT/HIGHESTMODSEQ update is folders.allocate's.
        self.allocate = self.sql(
            "UPDATE folders SET uidnext = uidnext + 1, highestmodseq = highestmodseq + 1"
            " WHERE id = (SELECT f.id FROM folders AS f JOIN mailboxes AS m"
            " ON m.id = f.mailbox_id WHERE m.address = ? AND m.state = 'active'"
            " AND f.name = ?)"
            " RETURNING id, uidnext, highestmodseq, uidvalidity"
        )
        self.insert_queue = self.sql(
            "INSERT INTO queue (blob_id, sender, recipient, envid, ret, notify, orcpt, state,"
            " attempts, next_attempt_at, delay_notified, locked_by, locked_until, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?) RETURNING id"
        )
        self.insert_message = self.sql(
            "INSERT INTO messages (folder_id, uid, modseq, flags, keywords, internaldate,"
            " size, blob_id, message_id, envelope, bodystructure, header_size,"
            " return_path, dsn_envid, dsn_ret, dsn_notify, dsn_orcpt)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )

    def sql(self, text: str) -> str:
        """``text`` written with ``?`` placeholders, in this dialect's paramstyle."""
        done = self._converted.get(text)
        if done is None:
            done = self._converted[text] = self._convert(text)
        return done

    def _convert(self, text: str) -> str:
        if self.paramstyle == "qmark":
            return text
        parts = text.split("?")
        if self.paramstyle in ("numeric_dollar", "numeric"):
            mark = "$" if self.paramstyle == "numeric_dollar" else ":"
            return parts[0] + "".join(f"{mark}{i}{p}" for i, p in enumerate(parts[1:], 1))
        if self.paramstyle in ("format", "pyformat"):
            return "%s".join(part.replace("%", "%%") for part in parts)
        raise NotImplementedError(f"paramstyle {self.paramstyle}")

    @staticmethod
    def cursor(conn: Connection) -> Any:
        return cast(Any, conn.connection.dbapi_connection).cursor()

    def execute(self, conn: Connection, sql: str, params: Sequence[Any]) -> Any:
        cursor = self.cursor(conn)
        cursor.execute(sql, params)
        return cursor

    def executemany(self, conn: Connection, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.cursor(conn).executemany(sql, rows)


def _same(value: Any) -> Any:
    return value


_HOT: dict[tuple[str, str], HotSql] = {}


def hot_sql(dialect: Dialect) -> HotSql:
    key = (dialect.name, dialect.driver)
    hot = _HOT.get(key)
    if hot is None:
        hot = _HOT[key] = HotSql(dialect)
    return hot


def _flush_blobs(conn: Connection, rows: list[Any]) -> None:
    """Blob rows of a batch (insert-or-ignore: identical bytes delivered before)."""
    hot = hot_sql(conn.dialect)
    hot.executemany(conn, hot.insert_blob, rows)


def _flush_messages(conn: Connection, rows: list[Any]) -> None:
    hot = hot_sql(conn.dialect)
    hot.executemany(conn, hot.insert_message, rows)


def _file(
    conn: Connection,
    hot: HotSql,
    blob: BlobRef,
    target: LocalTarget,
    when: datetime,
    meta: MessageMeta,
    envelope: Envelope,
) -> StoredCopy:
    address = target.address.lower()
    name = INBOX if target.folder.upper() == INBOX else target.folder
    row = hot.execute(conn, hot.allocate, (address, name)).fetchone()
    if row is None:
        folder_id, uidvalidity = _why_not(conn, address, name, target.folder)
        alloc = allocate(conn, folder_id)  # found after all (changed meanwhile)
        uid, modseq = alloc.uid, alloc.modseq
    else:
        folder_id, uidnext, modseq, uidvalidity = row
        uid = uidnext - 1
    kept = envelope if target.keep_envelope else None
    deferred(conn, _flush_messages).append((
        folder_id, uid, modseq, int(target.flags), " ".join(target.keywords), hot.utc(when),
        blob.size, blob.id, meta.message_id, meta.envelope, meta.bodystructure,
        meta.header_size,
        kept.sender if kept else None, kept.envid if kept else None,
        kept.ret if kept else None, target.notify, target.orcpt,
    ))
    return StoredCopy(address, folder_id, uid, modseq, uidvalidity)


def _why_not(conn: Connection, address: str, name: str, asked: str) -> tuple[int, int]:
    """Why the folder was not found: raise the error; or its id and UIDVALIDITY."""
    row = conn.execute(
        select(_MAILBOXES.c.state, _FOLDERS.c.id, _FOLDERS.c.uidvalidity)
        .select_from(_MAILBOXES)
        .outerjoin(_FOLDERS, (_FOLDERS.c.mailbox_id == _MAILBOXES.c.id) & (_FOLDERS.c.name == name))
        .where(_MAILBOXES.c.address == address)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no mailbox {address}")
    state, folder_id, uidvalidity = row
    if state != MailboxState.ACTIVE.value:
        raise Conflict(f"mailbox {address} is {state}")
    if folder_id is None:
        raise NoSuchFolder(f"no folder {asked!r} in {address}")
    return int(folder_id), int(uidvalidity)


def _queue(
    conn: Connection,
    hot: HotSql,
    blob: BlobRef,
    envelope: Envelope,
    target: RemoteTarget,
    stamp: datetime,
    lease: Lease | None,
) -> QueueEntry:
    """Insert one queue row; return it (a detached ``QueueEntry``)."""
    until = stamp + lease.duration if lease is not None else None
    worker = lease.worker if lease is not None else None
    when = hot.utc(stamp)
    row_id = hot.execute(conn, hot.insert_queue, (
        blob.id, envelope.sender, target.recipient, envelope.envid, envelope.ret,
        target.notify, target.orcpt, QueueState.QUEUED.value, when, False, worker,
        hot.utc(until) if until is not None else None, when, when,
    )).fetchone()[0]  # fmt: skip
    return QueueEntry(
        id=int(row_id), blob_id=blob.id, sender=envelope.sender, recipient=target.recipient,
        envid=envelope.envid, ret=envelope.ret, notify=target.notify, orcpt=target.orcpt,
        state=QueueState.QUEUED.value, attempts=0, next_attempt_at=stamp, last_error=None,
        delay_notified=False, locked_by=worker, locked_until=until, created_at=stamp,
        updated_at=stamp, last_attempt_at=None, last_status=None, remote_mta=None,
        last_reply=None,
    )  # fmt: skip


def header_meta(f: BinaryIO) -> MessageMeta:
    """Message-ID and header size from the header block only (never the body)."""
    with f:
        head = bytearray()
        while line := f.readline(65536):
            head += line
            if line in (b"\r\n", b"\n") or len(head) > 1 << 20:
                break
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(bytes(head))
    message_id = parsed.get("Message-ID")
    return MessageMeta(
        message_id=str(message_id).strip() if message_id else None, header_size=len(head)
    )
