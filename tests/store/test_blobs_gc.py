"""Blob files and the orphan collector."""

from __future__ import annotations

import errno
import os
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from mssgw.store import Store, gc
from mssgw.store.delivery import LocalTarget
from mssgw.store.models import Blob
from tests.store.helpers import message, with_mailboxes


def _age(path: os.PathLike[str], seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


async def test_gc_removes_orphans_and_keeps_referenced(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    store.inline_max = 0  # message files (inline rows: tests/store/test_content.py)
    kept = await store.messages.deliver(message(1), [LocalTarget(alice)])
    gone = await store.messages.deliver(message(2), [LocalTarget(alice)])
    folder = await store.messages.folder(alice)
    await store.messages.expunge(folder.id, [gone.copies[0].uid])
    stray = store.blobs.put_sync(b"written, then the transaction failed")
    young = store.blobs.put_sync(b"a delivery in flight")
    for ref in (kept.blob, gone.blob, stray):
        _age(store.blobs.path(ref.id), 7200)

    report = await gc.collect(store, grace=timedelta(hours=1), dry_run=True)
    assert sorted(report.orphan_files) == sorted([gone.blob.id, stray.id])
    assert store.blobs.exists(gone.blob.id)

    # rows are young here; age them by asking for no grace at all on rows
    report = await gc.collect(store, grace=timedelta(seconds=0))
    assert not store.blobs.exists(gone.blob.id) and not store.blobs.exists(stray.id)
    assert store.blobs.exists(kept.blob.id)
    assert not store.blobs.exists(young.id)  # grace 0: nothing is young any more
    async with store.read() as s:
        assert (await s.scalars(select(Blob.id))).all() == [kept.blob.id]
    assert report.missing_files == []


async def test_gc_spares_young_files(store: Store) -> None:
    await with_mailboxes(store, "alice")
    ref = store.blobs.put_sync(b"just written")
    report = await gc.collect(store, grace=timedelta(hours=1))
    assert report.orphan_files == [] and store.blobs.exists(ref.id)


async def test_redelivery_of_collected_bytes_refreshes_the_file(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    ref = store.blobs.put_sync(message(5))
    _age(store.blobs.path(ref.id), 7200)
    await store.messages.deliver(message(5), [LocalTarget(alice)])  # same bytes
    report = await gc.collect(store, grace=timedelta(hours=1))
    assert report.orphan_files == [] and store.blobs.exists(ref.id)
    async with store.read() as s:
        assert await s.scalar(select(func.count()).select_from(Blob)) == 1


async def test_blob_files_are_sharded_and_named_by_digest(store: Store) -> None:
    import hashlib

    data = b"hello"
    ref = store.blobs.put_sync(data)
    assert ref.id == hashlib.sha256(data).hexdigest() and ref.size == 5
    assert store.blobs.path(ref.id).parent.name == ref.id[:2]
    assert list(store.blobs.iter_temp()) == []


async def test_blob_writes_leave_no_temporary_file(store: Store) -> None:
    import io

    small = store.blobs.put_sync(b"in memory")
    streamed = store.blobs.put_sync(io.BytesIO(b"y" * 300_000))
    assert store.blobs.read(small.id) == b"in memory"
    assert store.blobs.read(streamed.id) == b"y" * 300_000
    files = sorted(p.relative_to(store.blobs.root) for p in store.blobs.root.rglob("*"))
    assert {str(p) for p in files if len(p.parts) == 2} == {
        f"{small.id[:2]}/{small.id}",
        f"{streamed.id[:2]}/{streamed.id}",
    }
    assert list(store.blobs.iter_temp()) == []


async def test_named_temporary_files_where_unnamed_ones_are_unsupported(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    # A file system without O_TMPFILE (open() says EOPNOTSUPP): the blob goes
    # through root/tmp and a rename instead, and so do the next ones.
    real_open = os.open

    def no_tmpfile(path: str, flags: int, *args: int, **kw: int) -> int:
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", no_tmpfile)
    ref = store.blobs.put_sync(b"renamed into place")
    assert not store.blobs.anonymous
    again = store.blobs.put_sync(io.BytesIO(b"renamed into place"))
    assert again == ref and store.blobs.read(ref.id) == b"renamed into place"
    assert list(store.blobs.iter_temp()) == []
