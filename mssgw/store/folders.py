"""Folders (IMAP mailboxes) of a BAL and their counters.

UIDVALIDITY (RFC 3501 §2.3.1.1) is chosen so that a folder created again
under a name used before never gets the same value: it is the creation time
in seconds, bumped above every value already used by that mailbox.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mssgw.errors import NotFound
from mssgw.store.models import Folder
from mssgw.store.timeutil import now

INBOX = "INBOX"

#: Folders every mailbox gets, with their RFC 6154 special-use attribute.
DEFAULT_FOLDERS: tuple[tuple[str, str | None], ...] = (
    (INBOX, None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)


@dataclass(frozen=True)
class Allocation:
    """A UID and MODSEQ reserved for one new message (valid inside its transaction)."""

    uid: int
    modseq: int


async def create_default_folders(s: AsyncSession, mailbox_id: int) -> None:
    for name, special in DEFAULT_FOLDERS:
        await create_folder(s, mailbox_id, name, special_use=special)


async def create_folder(
    s: AsyncSession, mailbox_id: int, name: str, *, special_use: str | None = None
) -> Folder:
    used = await s.scalar(
        select(func.max(Folder.uidvalidity)).where(Folder.mailbox_id == mailbox_id)
    )
    uidvalidity = max(int(time.time()), (used or 0) + 1) & 0xFFFFFFFF
    folder = Folder(
        mailbox_id=mailbox_id,
        name=name,
        special_use=special_use,
        uidvalidity=uidvalidity,
        uidnext=1,
        highestmodseq=1,
        subscribed=True,
        created_at=now(),
    )
    s.add(folder)
    await s.flush()
    return folder


async def folder_by_name(s: AsyncSession, mailbox_id: int, name: str) -> Folder | None:
    if name.upper() == INBOX:
        name = INBOX
    return await s.scalar(
        select(Folder).where(Folder.mailbox_id == mailbox_id, Folder.name == name)
    )


async def folders_of(s: AsyncSession, mailbox_id: int) -> Sequence[Folder]:
    return (
        await s.scalars(select(Folder).where(Folder.mailbox_id == mailbox_id).order_by(Folder.name))
    ).all()


def allocate(conn: Connection, folder_id: int, count: int = 1) -> Allocation:
    """Reserve ``count`` UIDs and one MODSEQ in ``folder_id``.

    A single UPDATE … RETURNING: on PostgreSQL it locks the folder row until
    commit, so concurrent deliveries into one folder serialise there and can
    never get the same UID; on SQLite the write transaction is already
    exclusive.  UIDNEXT only grows, so UIDs are never reused, even after
    expunge or a crash (an aborted transaction gives its UIDs back, which is
    fine: nobody ever saw them).
    """
    from mssgw.store.delivery import hot_sql  # delivery imports this module

    hot = hot_sql(conn.dialect)
    row = hot.execute(conn, hot.sql(_ALLOCATE_SQL), (count, folder_id)).fetchone()
    if row is None:  # deleted meanwhile (by another session)
        raise NotFound(f"folder {folder_id} no longer exists")
    uidnext, modseq = row
    return Allocation(uid=int(uidnext) - count, modseq=int(modseq))


# On the DBAPI cursor: every change of a folder runs it (see delivery.HotSql).
_ALLOCATE_SQL = (
    "UPDATE folders SET uidnext = uidnext + ?, highestmodseq = highestmodseq + 1"
    " WHERE id = ? RETURNING uidnext, highestmodseq"
)
