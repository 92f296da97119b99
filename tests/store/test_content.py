"""Message octets kept inline in the blob row or in a file (``mssgw.store.content``)."""

from __future__ import annotations

import io
import os
import time
from datetime import timedelta

from sqlalchemy import select

from mssgw.store import Store, content, gc
from mssgw.store.delivery import LocalTarget, RemoteTarget
from mssgw.store.models import Blob
from tests.store.helpers import message, with_mailboxes


async def _data(store: Store, blob_id: str) -> bytes | None:
    async with store.read() as s:
        return await s.scalar(select(Blob.data).where(Blob.id == blob_id))


def _blob_files(store: Store) -> list[str]:
    return [p.name for p in store.blobs.root.rglob("*") if p.is_file()]


async def test_small_message_is_kept_in_its_row_and_no_file_is_written(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    data = message(1, 4096)
    done = await store.messages.deliver(data, [LocalTarget(alice)])
    assert await _data(store, done.blob.id) == data
    assert _blob_files(store) == []
    assert await store.contents.read_one(done.blob.id) == data
    with await store.contents.open(done.blob.id) as f:
        assert f.read() == data


async def test_message_over_the_limit_is_a_file(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    data = message(2, store.inline_max + 1)
    done = await store.messages.deliver(data, [LocalTarget(alice)])
    assert await _data(store, done.blob.id) is None
    assert _blob_files(store) == [done.blob.id]
    assert await store.contents.read_one(done.blob.id) == data


async def test_streamed_message_is_a_file_whatever_its_size(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    data = message(3, 1000)
    done = await store.messages.deliver(io.BytesIO(data), [LocalTarget(alice)])
    assert await _data(store, done.blob.id) is None
    assert store.blobs.read(done.blob.id) == data


async def test_inline_max_zero_keeps_every_message_in_a_file(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    store.inline_max = 0
    done = await store.messages.deliver(message(4), [LocalTarget(alice)])
    assert await _data(store, done.blob.id) is None
    assert _blob_files(store) == [done.blob.id]


async def test_queued_message_is_inline_too(store: Store) -> None:
    data = message(5, 2000)
    done = await store.messages.deliver(data, remote=[RemoteTarget("bob@op2.mssante.test")])
    assert await store.contents.inline(done.blob.id) == data


async def test_same_bytes_again_fill_the_row_of_a_file_blob(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    data = message(6, 3000)
    store.inline_max = 0
    first = await store.messages.deliver(data, [LocalTarget(alice)])
    assert await _data(store, first.blob.id) is None
    store.inline_max = 1 << 17
    second = await store.messages.deliver(data, [LocalTarget(alice)])
    assert second.blob.id == first.blob.id
    assert await _data(store, first.blob.id) == data  # now readable without the file
    store.inline_max = 0
    third = await store.messages.deliver(data, [LocalTarget(alice)])
    assert await _data(store, third.blob.id) == data  # a file delivery never clears it


async def test_read_many_mixes_inline_and_files_and_honours_limits(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    small = message(7, 500)
    big = message(8, store.inline_max + 10)
    a = await store.messages.deliver(small, [LocalTarget(alice)])
    b = await store.messages.deliver(big, [LocalTarget(alice)])
    wanted = {1: (a.blob.id, None), 2: (b.blob.id, None), 3: (a.blob.id, 10), 4: (b.blob.id, 7)}
    got = await store.reading(lambda conn: content.read_many(conn, store.blobs, wanted))
    assert got == {1: small, 2: big, 3: small[:10], 4: big[:7]}


async def test_read_many_with_more_ids_than_one_statement_takes(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    ids = [
        (await store.messages.deliver(message(100 + i), [LocalTarget(alice)])).blob.id
        for i in range(300)
    ]
    wanted = {i: (b, None) for i, b in enumerate(ids)}
    got = await store.reading(lambda conn: content.read_many(conn, store.blobs, wanted))
    assert got == {i: message(100 + i) for i in range(300)}


async def test_gc_removes_orphan_inline_rows_and_never_calls_them_missing(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    kept = await store.messages.deliver(message(9), [LocalTarget(alice)])
    gone = await store.messages.deliver(message(10), [LocalTarget(alice)])
    folder = await store.messages.folder(alice)
    await store.messages.expunge(folder.id, [gone.copies[0].uid])
    report = await gc.collect(store, grace=timedelta(hours=1), dry_run=True)
    assert report.missing_files == [] and report.orphan_rows == []  # rows still young
    report = await gc.collect(store, grace=timedelta(seconds=0))
    assert report.orphan_rows == [gone.blob.id] and report.missing_files == []
    async with store.read() as s:
        assert (await s.scalars(select(Blob.id))).all() == [kept.blob.id]


async def test_gc_still_reports_a_missing_file(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    store.inline_max = 0
    done = await store.messages.deliver(message(11), [LocalTarget(alice)])
    path = store.blobs.path(done.blob.id)
    old = time.time() - 7200
    os.utime(path, (old, old))
    path.unlink()
    report = await gc.collect(store, grace=timedelta(hours=1), dry_run=True)
    assert report.missing_files == [done.blob.id]


async def test_blob_counts_and_gc_bytes_freed_cover_inline_messages(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    small, big = message(20, 3000), message(21, store.inline_max + 5)
    await store.messages.deliver(small, [LocalTarget(alice)])
    gone = await store.messages.deliver(message(22, 1000), [LocalTarget(alice)])
    await store.messages.deliver(big, [LocalTarget(alice)])
    counts = await gc.blob_counts(store)
    assert (counts.inline, counts.inline_bytes) == (2, len(small) + 1000)
    assert (counts.files, counts.file_bytes) == (1, len(big))
    folder = await store.messages.folder(alice)
    await store.messages.expunge(folder.id, [gone.copies[0].uid])
    report = await gc.collect(store, grace=timedelta(seconds=0))
    assert report.orphan_rows == [gone.blob.id] and report.bytes_freed == 1000
    assert (await gc.blob_counts(store)).inline == 1
