"""Queue states and operator actions (store/queue.py) on SQLite and PostgreSQL,
and two relay nodes sharing one PostgreSQL queue."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mssgw import config
from mssgw.errors import Conflict, NotFound
from mssgw.store import Store
from mssgw.store.delivery import Envelope, RemoteTarget
from mssgw.store.queue import Outcome
from mssgw.store.timeutil import now
from tests.smtp.relay_support import MESSAGE, SENDER, relay_gateway, tls_peer


async def _queue(store: Store, *recipients: str) -> list[int]:
    result = await store.messages.deliver(
        MESSAGE, remote=[RemoteTarget(r) for r in recipients], envelope=Envelope(SENDER)
    )
    return result.queued


async def test_hold_release_retry_bounce_drop(store: Store) -> None:
    a, b = await _queue(store, "a@op2.mssante.test", "b@op2.mssante.test")
    later = now() + timedelta(hours=1)
    held = await store.queue.hold(a)
    assert held.state == "held"
    # a held row is never claimed
    assert [r.id for r in await store.queue.claim_group("w", lease=timedelta(minutes=1))] == [b]
    with pytest.raises(Conflict, match=r"queue entry \d+ is held: 'hold' needs a queued entry"):
        await store.queue.hold(a)
    with pytest.raises(Conflict, match=r"release it first"):
        await store.queue.retry(a)
    released = await store.queue.release(a, at=later)
    assert (released.state, released.next_attempt_at) == ("queued", later)
    retried = await store.queue.retry(a)
    assert retried.next_attempt_at <= now()
    bounced = await store.queue.bounce(a, "bounced by the operator")
    assert (bounced.state, bounced.last_status, bounced.last_error) == (
        "failed",
        "5.0.0",
        "bounced by the operator",
    )
    with pytest.raises(Conflict, match="is failed"):
        await store.queue.release(a)
    # b is leased by worker "w": the operator may not bounce or drop it now
    with pytest.raises(Conflict, match="being delivered right now"):
        await store.queue.bounce(b, "no")
    with pytest.raises(Conflict, match="being delivered right now"):
        await store.queue.drop(b)
    await store.queue.drop(a)
    with pytest.raises(NotFound, match=f"no queue entry {a}"):
        await store.queue.get(a)
    events = [(e.queue_id, e.event) for e in reversed(await store.queue.history(limit=10))]
    assert events == [(a, "hold"), (a, "release"), (a, "retry"), (a, "bounce"), (a, "drop")]
    assert [e.event for e in await store.queue.history(entry_id=b)] == []


async def test_record_needs_the_lease(store: Store) -> None:
    (entry_id,) = await _queue(store, "a@op2.mssante.test")
    (row,) = await store.queue.claim_group("w1", lease=timedelta(seconds=30))
    assert (row.id, row.locked_by) == (entry_id, "w1")
    outcome = Outcome("deferred", "4.4.1", "down", next_attempt_at=now() + timedelta(minutes=5))
    # another worker cannot record on a row it does not hold
    assert await store.queue.record("w2", [(entry_id, outcome)]) == set()
    assert await store.queue.record("w1", [(entry_id, outcome)]) == {entry_id}
    entry = await store.queue.get(entry_id)
    assert (entry.attempts, entry.locked_by, entry.last_status) == (1, None, "4.4.1")
    # a row held while being delivered stays held after a deferral...
    await store.queue.release_lease("w1", [entry_id])
    await store.queue.retry(entry_id)
    await store.queue.claim_group("w1", lease=timedelta(seconds=30))
    await store.queue.hold(entry_id)
    await store.queue.record("w1", [(entry_id, outcome)])
    assert (await store.queue.get(entry_id)).state == "held"


async def test_claim_groups_by_message_and_domain(store: Store) -> None:
    await _queue(store, "a@op2.mssante.test", "x@op3.mssante.test", "B@OP2.mssante.test")
    first = await store.queue.claim_group("w", lease=timedelta(minutes=1))
    assert [r.recipient for r in first] == ["a@op2.mssante.test", "B@OP2.mssante.test"]
    second = await store.queue.claim_group("w", lease=timedelta(minutes=1))
    assert [r.recipient for r in second] == ["x@op3.mssante.test"]
    assert await store.queue.claim_group("w", lease=timedelta(minutes=1)) == []


async def test_several_groups_in_one_claim(store: Store) -> None:
    await _queue(store, "a@op2.mssante.test", "x@op3.mssante.test", "B@OP2.mssante.test")
    lease = timedelta(minutes=1)
    groups = await store.queue.claim_groups("w", lease=lease, groups=5)
    # the same groups, in the same order, as claim_group called again and again
    assert [[r.recipient for r in g] for g in groups] == [
        ["a@op2.mssante.test", "B@OP2.mssante.test"],
        ["x@op3.mssante.test"],
    ]
    assert {(r.locked_by, r.locked_until is not None) for g in groups for r in g} == {("w", True)}
    assert all(r.locked_by == "w" for r in await store.queue.list())
    assert await store.queue.claim_groups("w", lease=lease, groups=5) == []


async def test_claimed_groups_respect_the_recipient_limit_and_ids(store: Store) -> None:
    ids = await _queue(store, *(f"r{i}@op2.mssante.test" for i in range(5)))
    lease = timedelta(minutes=1)
    groups = await store.queue.claim_groups("w", lease=lease, ids=ids[1:], limit=2, groups=2)
    assert [[r.id for r in g] for g in groups] == [ids[1:3], ids[3:5]]
    # the first row was not among the ids: still free, alone
    (rest,) = await store.queue.claim_groups("w", lease=lease, limit=2, groups=2)
    assert [r.id for r in rest] == ids[:1]


async def test_two_nodes_never_deliver_a_row_twice(
    tmp_path: Path, trust_space: dict[str, Any], pg_url: str
) -> None:
    recipients = [f"r{i}@op2.mssante.test" for i in range(12)]
    with tls_peer(trust_space) as (peer, port):
        routes = {"op2.mssante.test": f"127.0.0.1:{port}"}
        async with relay_gateway(tmp_path, trust_space, routes=routes, url=pg_url) as relay:
            for r in recipients:  # twelve messages (distinct bytes), one recipient each
                data = MESSAGE.replace(b"Bonjour", r.encode())
                await relay.queue(r, data=data)
            # a second node: its own store object on the same database and blobs
            other = await Store.open(config.load(tmp_path / "mssgw.toml", env={}))
            try:
                a = relay.worker(name="node-a")
                b = relay.worker(name="node-b")
                b.store = other
                b.notifier.store = other
                ra, rb = await asyncio.gather(a.run_once(), b.run_once())
            finally:
                await other.close()
            assert ra.delivered + rb.delivered == 12
            assert not set(ra.ids) & set(rb.ids)
            got = sorted(r for t in peer.received for r in t.recipients)
            assert got == sorted(recipients)  # each exactly once
            rows = await relay.store.queue.list()
            assert {(r.state, r.attempts) for r in rows} == {("delivered", 1)}
