"""Delivery semantics on SQLite and PostgreSQL (SPEC STORE-1, STORE-2)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mssgw.config import Settings
from mssgw.errors import Conflict, NotFound
from mssgw.store import Store
from mssgw.store.delivery import Envelope, LocalTarget, RemoteTarget
from mssgw.store.models import Blob, MailboxState, Message, QueueEntry
from tests.store.helpers import message, with_mailboxes


async def test_uids_strictly_increase_and_modseq_grows(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    copies = []
    for n in range(5):
        result = await store.messages.deliver(message(n), [LocalTarget(alice)])
        copies.append(result.copies[0])
    assert [c.uid for c in copies] == [1, 2, 3, 4, 5]
    modseqs = [c.modseq for c in copies]
    assert modseqs == sorted(set(modseqs)) and modseqs[0] > 0


async def test_uids_never_reused_after_expunge_and_restart(
    store: Store, settings: Settings
) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    for n in range(3):
        await store.messages.deliver(message(n), [LocalTarget(alice)])
    folder = await store.messages.folder(alice)
    assert await store.messages.expunge(folder.id, [2, 3]) == 2
    await store.close()

    reopened = await Store.open(settings)
    try:
        result = await reopened.messages.deliver(message(9), [LocalTarget(alice)])
        assert result.copies[0].uid == 4
        assert await reopened.messages.uids(folder.id) == [1, 4]
        after = await reopened.messages.folder(alice)
        assert after.uidvalidity == folder.uidvalidity
        assert after.highestmodseq > folder.highestmodseq
    finally:
        await reopened.close()


async def test_parallel_deliveries_into_one_folder_never_collide(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    results = await asyncio.gather(
        *(store.messages.deliver(message(n), [LocalTarget(alice)]) for n in range(60))
    )
    uids = sorted(r.copies[0].uid for r in results)
    assert uids == list(range(1, 61))
    folder = await store.messages.folder(alice)
    assert await store.messages.uids(folder.id) == uids
    assert folder.uidnext == 61


async def test_two_store_instances_share_a_folder_safely(store: Store, settings: Settings) -> None:
    """Two processes (or nodes) delivering into one folder at once."""
    (alice,) = await with_mailboxes(store, "alice")
    other = await Store.open(settings)
    try:
        batches = await asyncio.gather(
            *(
                s.messages.deliver(message(n), [LocalTarget(alice)])
                for n in range(40)
                for s in ((store, other)[n % 2],)
            )
        )
    finally:
        await other.close()
    uids = sorted(r.copies[0].uid for r in batches)
    assert uids == list(range(1, 41))


async def test_several_recipients_share_one_blob(store: Store, settings: Settings) -> None:
    addresses = await with_mailboxes(store, "alice", "bob", "carol")
    store.inline_max = 0  # one file for every copy (inline: tests/store/test_content.py)
    data = message(1, size=4096)
    result = await store.messages.deliver(
        data,
        [LocalTarget(a) for a in addresses],
        [RemoteTarget("dan@op2.mssante.test", notify="SUCCESS")],
        envelope=Envelope(sender=addresses[0], envid="Env-1", ret="HDRS"),
    )
    assert len(result.copies) == 3 and len(result.queued) == 1
    files = [p for p in settings.blob_dir.rglob("*") if p.is_file() and p.parent.name != "tmp"]
    assert len(files) == 1 and files[0].read_bytes() == data
    async with store.read() as s:
        assert await s.scalar(select(func.count()).select_from(Blob)) == 1
        assert await s.scalar(select(func.count()).select_from(Message)) == 3
        queued = (await s.scalars(select(QueueEntry))).one()
    assert (queued.envid, queued.ret, queued.notify) == ("Env-1", "HDRS", "SUCCESS")


async def test_failed_delivery_leaves_nothing_visible(store: Store) -> None:
    alice, bob = await with_mailboxes(store, "alice", "bob")
    await store.mailboxes.set_state(bob, MailboxState.SUSPENDED)
    with pytest.raises(Conflict):
        await store.messages.deliver(message(1), [LocalTarget(alice), LocalTarget(bob)])
    with pytest.raises(NotFound):
        await store.messages.deliver(
            message(2), [LocalTarget(alice), LocalTarget("nobody@op1.mssante.test")]
        )
    folder = await store.messages.folder(alice)
    assert await store.messages.uids(folder.id) == []
    assert folder.uidnext == 1
    async with store.read() as s:
        assert await s.scalar(select(func.count()).select_from(Blob)) == 0


async def test_a_failing_delivery_does_not_sink_its_batch(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    good = [store.messages.deliver(message(n), [LocalTarget(alice)]) for n in range(10)]
    bad = store.messages.deliver(message(99), [LocalTarget("ghost@op1.mssante.test")])
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert isinstance(results[-1], NotFound)
    assert sorted(r.copies[0].uid for r in results[:-1]) == list(range(1, 11))


async def test_stored_bytes_are_identical_and_size_exact(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    data = b"Subject: \xc3\xa9t\xc3\xa9\r\n\r\nligne 1\r\n.\r\nligne 3\r\n"
    result = await store.messages.deliver(data, [LocalTarget(alice)])
    assert await store.contents.read_one(result.blob.id) == data
    async with store.read() as s:
        row = (await s.scalars(select(Message))).one()
    assert row.size == len(data)
    assert row.header_size == data.index(b"\r\n\r\n") + 4


async def test_streamed_source_is_stored(store: Store, tmp_path: Path) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    src = tmp_path / "big.eml"
    src.write_bytes(message(1, size=3 * 65536 + 17))
    with src.open("rb") as f:
        result = await store.messages.deliver(f, [LocalTarget(alice)])
    assert store.blobs.read(result.blob.id) == src.read_bytes()


async def test_queue_rows_leased_at_insertion_are_claimed_only_after_the_lease(
    store: Store,
) -> None:
    from datetime import timedelta

    from mssgw.store.delivery import Lease

    (alice,) = await with_mailboxes(store, "alice")
    result = await store.messages.deliver(
        message(1),
        remote=[RemoteTarget("dan@op2.mssante.test", notify="FAILURE")],
        envelope=Envelope(sender=alice, envid="E-1"),
        lease=Lease("relay-a", timedelta(minutes=5)),
    )
    (row,) = result.leased
    assert result.queued == [row.id]
    stored = await store.queue.get(row.id)
    for name in ("blob_id", "sender", "recipient", "envid", "notify", "state", "attempts"):
        assert getattr(stored, name) == getattr(row, name), name
    assert (stored.locked_by, row.locked_by) == ("relay-a", "relay-a")
    assert row.locked_until is not None and row.created_at is not None
    # Another worker does not take it while the lease runs (the holder may be sending it) ...
    assert await store.queue.claim_groups("relay-b", lease=timedelta(minutes=5)) == []
    # ... and takes it once the lease ended (the holder crashed before trying it).
    later = row.locked_until + timedelta(seconds=1)
    (group,) = await store.queue.claim_groups("relay-b", lease=timedelta(minutes=5), at=later)
    assert [r.id for r in group] == [row.id]
    # Without a lease, rows are free at once and nothing is returned as leased.
    plain = await store.messages.deliver(
        message(2), remote=[RemoteTarget("eve@op2.mssante.test")], envelope=Envelope(alice)
    )
    assert plain.leased == [] and len(plain.queued) == 1
