"""The outbound queue: one row per remote recipient (SPEC FLOW-3).

Rows are written by deliveries (``Messages.deliver`` with remote targets);
this repository lists them and lets workers claim due rows.  Claiming uses
``FOR UPDATE SKIP LOCKED`` on PostgreSQL so that several nodes share one
queue without taking the same row; on SQLite the write transaction is
exclusive already.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import or_, select

from mssgw.store.models import QueueEntry, QueueState
from mssgw.store.timeutil import now

if TYPE_CHECKING:
    from mssgw.store import Store


class Queue:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def list(self, *, states: Sequence[QueueState] | None = None) -> Sequence[QueueEntry]:
        query = select(QueueEntry).order_by(QueueEntry.id)
        if states:
            query = query.where(QueueEntry.state.in_([s.value for s in states]))
        async with self.store.read() as s:
            return (await s.scalars(query)).all()

    async def claim(
        self,
        worker: str,
        *,
        limit: int = 10,
        lease: timedelta = timedelta(minutes=10),
        at: datetime | None = None,
    ) -> builtins.list[QueueEntry]:
        """Lease up to ``limit`` due rows to ``worker``."""
        stamp = at or now()
        query = (
            select(QueueEntry)
            .where(QueueEntry.state == QueueState.QUEUED.value, QueueEntry.next_attempt_at <= stamp)
            .where(or_(QueueEntry.locked_until.is_(None), QueueEntry.locked_until < stamp))
            .order_by(QueueEntry.next_attempt_at)
            .limit(limit)
        )
        if self.store.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        async with self.store.write() as s:
            rows = list((await s.scalars(query)).all())
            for row in rows:
                row.locked_by = worker
                row.locked_until = stamp + lease
            return rows
