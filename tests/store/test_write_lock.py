"""SQLite: the writes of one process queue on ``Store.write_lock``, never in
SQLite's busy handler (which sleeps, and fails after the busy timeout)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from sqlalchemy import Connection, func, select, update

from mssgw.store import Store
from mssgw.store.models import Mailbox, table
from tests.conftest import settings_for
from tests.store.helpers import with_mailboxes


async def test_write_and_committer_share_the_lock(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    # A 1 ms busy timeout: any writer that met a locked database would fail.
    settings = dataclasses.replace(
        settings, store=dataclasses.replace(settings.store, busy_timeout_ms=1)
    )
    store = await Store.open(settings, check_schema=False)
    await store.upgrade()
    try:
        assert store.write_lock is not None and store.committer.lock is store.write_lock
        (alice,) = await with_mailboxes(store, "alice")
        mailboxes = table(Mailbox)

        def unit(conn: Connection) -> None:
            conn.execute(update(mailboxes).values(last_auth_at=func.current_timestamp()))

        async def session_write() -> None:
            async with store.write() as s:
                await s.execute(update(Mailbox).values(last_auth_at=func.current_timestamp()))
                await asyncio.sleep(0.002)  # hold the transaction across a loop turn

        await asyncio.gather(
            *(store.committer.run(unit) for _ in range(30)),
            *(session_write() for _ in range(30)),
            *(store.credentials.issue(alice) for _ in range(3)),
        )
        assert not store.write_lock.locked()
        async with store.read() as s:
            assert await s.scalar(select(func.count()).select_from(Mailbox)) == 1
    finally:
        await store.close()


async def test_reading_runs_sync_work(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    mailboxes = table(Mailbox)

    def work(conn: Connection) -> list[str]:
        return list(conn.execute(select(mailboxes.c.address)).scalars())

    assert await store.reading(work) == [alice]
