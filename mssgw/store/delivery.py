"""Delivering messages into folders, and the few message operations the store owns.

A delivery writes the blob first (fsynced, once for every recipient), then
in one transaction records the blob row, allocates a UID and MODSEQ in each
target folder, inserts one message row per folder and one queue row per
remote recipient.  Either all of that commits or none of it is visible; the
call returns only after the commit, so the caller may then answer ``250`` or
``OK`` (SPEC STORE-2).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import io
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, BinaryIO

from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mssgw.errors import Conflict, NotFound
from mssgw.store.blobs import BlobRef
from mssgw.store.folders import INBOX, allocate, folder_by_name
from mssgw.store.models import (
    Blob,
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


NO_FLAGS = Flag(0)
#: Messages above this size are parsed for their MIME structure two at a time at most.
_BIG = 4 * 1024 * 1024
_BIG_PARSES = threading.BoundedSemaphore(2)


@dataclass(frozen=True)
class LocalTarget:
    """A local mailbox to file the message in."""

    address: str
    folder: str = INBOX
    flags: Flag = NO_FLAGS
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class RemoteTarget:
    """A remote recipient to queue, with its DSN parameters as sent (RFC 3461 §4)."""

    recipient: str
    notify: str | None = None
    orcpt: str | None = None


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
    ) -> DeliveryResult:
        """Store ``data`` for every target; return once it is all durable."""
        if not local and not remote:
            raise Conflict("a delivery needs at least one recipient")
        blob, meta = await asyncio.to_thread(self._write_blob, data, meta)
        when = internaldate or now()
        assert meta is not None

        def work(conn: Connection) -> DeliveryResult:
            _insert_blob(conn, blob)
            copies = [_file(conn, blob, target, when, meta) for target in local]
            queued = [_queue(conn, blob, envelope, target) for target in remote]
            return DeliveryResult(blob, copies, queued)

        folder = self.store.blobs.path(blob.id).parent
        result = await self.store.committer.run(work, sync_dirs=[folder])
        for copy in result.copies:
            for observer in self.observers:
                observer(copy.folder_id, copy.modseq)
        return result

    def _write_blob(
        self, data: bytes | BinaryIO, meta: MessageMeta | None
    ) -> tuple[BlobRef, MessageMeta]:
        """In a worker thread: the file (fsynced; its folder is synced with the batch)
        and its metadata."""
        blob = self.store.blobs.put_sync(data, sync_dir=False)
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
_BLOBS = table(Blob)
_MAILBOXES = table(Mailbox)
_FOLDERS = table(Folder)
_MESSAGES = table(Message)
_QUEUE = table(QueueEntry)


def _insert_blob(conn: Connection, blob: BlobRef) -> None:
    """Insert the blob row unless it exists (identical bytes delivered before)."""
    values = {"id": blob.id, "size": blob.size, "created_at": now()}
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(_BLOBS).values(values).on_conflict_do_nothing(index_elements=["id"])
    )


def _file(
    conn: Connection, blob: BlobRef, target: LocalTarget, when: datetime, meta: MessageMeta
) -> StoredCopy:
    address = target.address.lower()
    name = INBOX if target.folder.upper() == INBOX else target.folder
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
        raise NotFound(f"no folder {target.folder!r} in {address}")
    alloc = allocate(conn, folder_id)
    conn.execute(
        _MESSAGES.insert().values(
            folder_id=folder_id,
            uid=alloc.uid,
            modseq=alloc.modseq,
            flags=int(target.flags),
            keywords=" ".join(target.keywords),
            internaldate=when,
            size=blob.size,
            blob_id=blob.id,
            message_id=meta.message_id,
            envelope=meta.envelope,
            bodystructure=meta.bodystructure,
            header_size=meta.header_size,
        )
    )
    return StoredCopy(address, folder_id, alloc.uid, alloc.modseq, uidvalidity)


def _queue(conn: Connection, blob: BlobRef, envelope: Envelope, target: RemoteTarget) -> int:
    stamp = now()
    result = conn.execute(
        _QUEUE.insert()
        .values(
            blob_id=blob.id,
            sender=envelope.sender,
            recipient=target.recipient,
            envid=envelope.envid,
            ret=envelope.ret,
            notify=target.notify,
            orcpt=target.orcpt,
            state=QueueState.QUEUED.value,
            attempts=0,
            next_attempt_at=stamp,
            delay_notified=False,
            created_at=stamp,
            updated_at=stamp,
        )
        .returning(_QUEUE.c.id)
    )
    return int(result.scalar_one())


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
