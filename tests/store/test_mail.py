"""IMAP-facing store operations on SQLite and PostgreSQL (STORE-1, UIDPLUS, CONDSTORE)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mssgw.errors import Conflict
from mssgw.store import Store
from mssgw.store.delivery import LocalTarget
from mssgw.store.mail import Mail, apply_flags
from mssgw.store.models import Flag
from tests.store.helpers import message, with_mailboxes


async def inbox_with(store: Store, count: int) -> tuple[Mail, int, str]:
    (address,) = await with_mailboxes(store, "alice")
    for n in range(count):
        await store.messages.deliver(message(n), [LocalTarget(address)])
    mailbox = await store.mailboxes.get(address)
    return Mail(store), mailbox.id, address


async def test_snapshot_changes_and_modseq(store: Store) -> None:
    mail, mailbox_id, _ = await inbox_with(store, 3)
    seen: list[tuple[int, int]] = []
    mail.observers.append(lambda f, m: seen.append((f, m)))
    inbox = await mail.folder(mailbox_id, "inbox")
    assert inbox is not None
    snap = await mail.snapshot(inbox.id)
    assert [m.uid for m in snap.messages] == [1, 2, 3]
    known = snap.folder.highestmodseq

    result = await mail.store_flags(inbox.id, [1, 2], "add", Flag.SEEN, ["$Label1", "Work"])
    assert [m.uid for m in result.changed] == [1, 2] and result.modseq == known + 1
    assert result.changed[0].keywords == "$Label1 Work"
    again = await mail.store_flags(inbox.id, [1], "add", Flag.SEEN, ["work"])
    assert again.changed == [] and again.modseq is None  # no change, no new MODSEQ
    refused = await mail.store_flags(
        inbox.id, [1, 3], "add", Flag.FLAGGED, [], unchangedsince=known
    )
    assert refused.modified == [1] and [m.uid for m in refused.changed] == [3]

    await mail.store_flags(inbox.id, [2], "add", Flag.DELETED, [])
    assert await mail.expunge(inbox.id) == [2]
    changes = await mail.changes(inbox.id, known)
    assert [m.uid for m in changes.messages] == [1, 3]
    assert changes.expunged == [2]
    assert changes.folder is not None and changes.folder.highestmodseq > known
    assert (await mail.changes(inbox.id, changes.folder.highestmodseq)).messages == []
    assert [f for f, _ in seen] == [inbox.id] * 4
    modseqs = [m for _, m in seen]
    assert modseqs == sorted(modseqs) and len(set(modseqs)) == 4


async def test_copy_and_move_keep_pairs(store: Store) -> None:
    mail, mailbox_id, address = await inbox_with(store, 4)
    inbox = await mail.folder(mailbox_id, "INBOX")
    trash = await mail.folder(mailbox_id, "Trash")
    assert inbox is not None and trash is not None
    await mail.store_flags(inbox.id, [2], "replace", Flag.SEEN | Flag.FLAGGED, ["Kw"])
    copied = await mail.copy(inbox, [2, 4], trash)
    assert (copied.uidvalidity, copied.source, copied.target) == (trash.uidvalidity, [2, 4], [1, 2])
    moved = await mail.copy(inbox, [1, 2], trash, move=True)
    assert moved.target == [3, 4]
    snap = await mail.snapshot(trash.id)
    assert [(m.uid, m.flags, m.keywords) for m in snap.messages][1] == (2, 0, "")
    assert snap.messages[3].flags == int(Flag.SEEN | Flag.FLAGGED)
    assert snap.messages[3].keywords == "Kw"
    assert [m.uid for m in (await mail.snapshot(inbox.id)).messages] == [3, 4]
    assert (await mail.changes(inbox.id, 0)).expunged == [1, 2]
    rows = await mail.rows(trash.id, [1, 2, 3, 4])
    assert {r.size for r in rows.values()} == {200}
    stored = await mail.append(address, trash, message(9), flags=Flag.SEEN, keywords=["$Junk"])
    assert stored.uid == 5 and stored.uidvalidity == trash.uidvalidity
    assert await store.contents.read_one((await mail.rows(trash.id, [5]))[5].blob_id) == message(9)


async def test_folders_create_rename_delete(store: Store) -> None:
    mail, mailbox_id, _ = await inbox_with(store, 2)
    created = await mail.create_folder(mailbox_id, "Projets/2024/Q1", None)
    names = [f.name for f in await mail.folders(mailbox_id)]
    assert {"Projets", "Projets/2024", "Projets/2024/Q1"} <= set(names)
    uidvalidities = [f.uidvalidity for f in await mail.folders(mailbox_id)]
    assert len(set(uidvalidities)) == len(uidvalidities)
    with pytest.raises(Conflict):
        await mail.create_folder(mailbox_id, "Projets", None)
    await mail.rename_folder(mailbox_id, "Projets", "Archives/Projets")
    renamed = await mail.folder(mailbox_id, "Archives/Projets/2024/Q1")
    assert renamed is not None and renamed.uidvalidity == created.uidvalidity
    assert await mail.folder(mailbox_id, "Projets/2024") is None
    await mail.subscribe(mailbox_id, "Archives/Projets", False)
    folder = await mail.folder(mailbox_id, "Archives/Projets")
    assert folder is not None and not folder.subscribed
    # RFC 3501 §6.3.5: renaming INBOX moves its messages and leaves it empty.
    await mail.rename_folder(mailbox_id, "INBOX", "Old")
    old = await mail.folder(mailbox_id, "Old")
    inbox = await mail.folder(mailbox_id, "INBOX")
    assert old is not None and inbox is not None
    assert len((await mail.snapshot(old.id)).messages) == 2
    assert (await mail.snapshot(inbox.id)).messages == []
    await mail.delete_folder(old)
    assert await mail.folder(mailbox_id, "Old") is None
    assert (await mail.changes(old.id, 0)).folder is None
    with pytest.raises(Conflict):
        await mail.delete_folder(inbox)
    status = await mail.status(inbox.id)
    assert (status.messages, status.unseen, status.uidnext) == (0, 0, 3)


async def test_large_uid_sets(store: Store) -> None:
    mail, mailbox_id, address = await inbox_with(store, 0)
    inbox = await mail.folder(mailbox_id, "INBOX")
    assert inbox is not None
    for n in range(120):
        await store.messages.deliver(message(n, 120), [LocalTarget(address)])
    odd = list(range(1, 121, 2))  # 60 ranges: IN chunks rather than ORed BETWEENs
    result = await mail.store_flags(inbox.id, odd, "add", Flag.DELETED, [])
    assert len(result.changed) == 60
    assert await mail.expunge(inbox.id, list(range(1, 61))) == list(range(1, 61, 2))
    assert len(await mail.rows(inbox.id, list(range(1, 121)))) == 90


def test_apply_flags_modes() -> None:
    assert apply_flags(1, "A b", "add", 4, ["B", "c"]) == (5, "A b c")
    assert apply_flags(5, "A b c", "remove", 1, ["a"]) == (4, "b c")
    assert apply_flags(5, "A", "replace", 2, ["x", "y"]) == (2, "x y")


async def test_forget_expunged_up_to_a_mark_only(store: Store) -> None:
    """Housekeeping forgets expunge records older than its previous mark; newer
    ones still reach sessions through ``changes``."""
    mail, mailbox_id, _ = await inbox_with(store, 4)
    inbox = await mail.folder(mailbox_id, "INBOX")
    assert inbox is not None
    assert await mail.expunged_mark() == 0
    await mail.store_flags(inbox.id, [1, 2], "add", Flag.DELETED, [])
    assert await mail.expunge(inbox.id) == [1, 2]
    mark = await mail.expunged_mark()
    assert mark > 0
    await mail.store_flags(inbox.id, [3], "add", Flag.DELETED, [])
    assert await mail.expunge(inbox.id) == [3]
    assert (await mail.changes(inbox.id, 0)).expunged == [1, 2, 3]

    assert await mail.forget_expunged(mark) == 2
    assert (await mail.changes(inbox.id, 0)).expunged == [3]
    assert await mail.forget_expunged(mark) == 0
    assert await mail.expunged_mark() > mark
    assert [m.uid for m in (await mail.snapshot(inbox.id)).messages] == [4]


async def test_small_reads_in_the_loop_and_reads_in_threads_share_the_engine(
    store: Store,
) -> None:
    """Reads run in the event loop's thread (``small``) and in every reader thread
    at once: no thread loses its connection to another (SingletonThreadPool)."""
    from sqlalchemy import text

    def count(conn: Any) -> int:
        return int(conn.execute(text("SELECT count(*) FROM folders")).scalar_one())

    results = await asyncio.gather(
        *(store.reading(count, small=i % 3 == 0) for i in range(300))
    )
    assert len(set(results)) == 1

    if store.dialect != "sqlite":  # asyncpg connections belong to one event loop
        return
    # Event loops in other threads too: the first ones read themselves, the
    # others go through the reader threads, and none takes another's connection.
    def own_loop() -> list[int]:
        async def reads() -> list[int]:
            return [await store.reading(count, small=True) for _ in range(20)]

        return asyncio.run(reads())

    others = await asyncio.gather(*(asyncio.to_thread(own_loop) for _ in range(6)))
    assert {n for batch in others for n in batch} == set(results)
    assert len(store._inline_threads) <= 2


async def test_a_failed_small_read_leaves_the_next_one_a_working_connection(
    store: Store,
) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    def broken(conn: Any) -> None:
        conn.execute(text("SELECT * FROM no_such_table"))

    def count(conn: Any) -> int:
        return int(conn.execute(text("SELECT count(*) FROM folders")).scalar_one())

    for _ in range(2):
        with pytest.raises(DBAPIError):
            await store.reading(broken, small=True)
        assert await store.reading(count, small=True) == await store.reading(count)
    await store.close()
    assert store._inline_conns == {}


async def test_open_folder_reads_a_small_folder_at_once_and_a_large_one_whole(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mssgw.store.mail import SMALL_FOLDER

    mail, mailbox_id, address = await inbox_with(store, 0)
    reads: list[bool] = []
    reading = store.reading

    async def spy(work: Any, *, small: bool = False) -> Any:
        reads.append(small)
        return await reading(work, small=small)

    monkeypatch.setattr(store, "reading", spy)
    assert await mail.open_folder(mailbox_id, "Nope") is None
    for size in (SMALL_FOLDER, SMALL_FOLDER + 1):
        inbox = await mail.folder(mailbox_id, "INBOX")
        assert inbox is not None
        have = len((await mail.snapshot(inbox.id)).messages)
        await asyncio.gather(
            *(
                store.messages.deliver(message(n, size), [LocalTarget(address)])
                for n in range(have, size)
            )
        )
        reads.clear()
        opened = await mail.open_folder(mailbox_id, "inbox")
        # One read in the loop; a second, whole one only past SMALL_FOLDER.
        assert reads == ([True] if size <= SMALL_FOLDER else [True, False])
        assert opened is not None
        assert [m.uid for m in opened.messages] == list(range(1, size + 1))
        assert opened.messages == (await mail.snapshot(inbox.id)).messages
