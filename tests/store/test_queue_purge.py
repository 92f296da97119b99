"""Finished queue rows and their history are forgotten past retention; others stay."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Connection, update

from mssgw.store import Store
from mssgw.store.delivery import Envelope, RemoteTarget
from mssgw.store.models import QueueEntry, QueueState, table
from mssgw.store.timeutil import now
from tests.store.helpers import message, with_mailboxes


async def test_purge_finished_keeps_pending_and_recent_rows(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    result = await store.messages.deliver(
        message(1),
        remote=[RemoteTarget(f"r{i}@op2.mssante.test") for i in range(4)],
        envelope=Envelope(alice),
    )
    old, recent, pending, held = result.queued
    long_ago = now() - timedelta(days=40)
    states = {old: QueueState.DELIVERED, recent: QueueState.FAILED, held: QueueState.HELD}
    queue = table(QueueEntry)

    def set_states(conn: Connection) -> None:
        for entry_id, state in states.items():
            stamp = long_ago if entry_id in (old, held) else now()
            conn.execute(
                update(queue)
                .where(queue.c.id == entry_id)
                .values(state=state.value, updated_at=stamp)
            )

    await store.committer.run(set_states)
    for entry_id in (old, recent):
        await store.queue.note(entry_id, "dsn", actor="test", status="2.0.0", detail=None)

    assert await store.queue.purge_finished(timedelta(days=30)) == 1
    left = {row.id for row in await store.queue.list()}
    assert left == {recent, pending, held}
    assert await store.queue.history(entry_id=old) == []
    assert [e.event for e in await store.queue.history(entry_id=recent)] == ["dsn"]
