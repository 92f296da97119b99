"""Traces (SPEC TRACE-1): who did what, when, with which result.  Never content.

Writes go through the group committer, so a burst of SMTP transactions costs
one commit, not one per trace, and the records of a batch are inserted with
one ``executemany`` (``committer.deferred``).  A delivery may carry its trace
record (``Messages.deliver(trace=...)``): then both commit together.
Retention is enforced by ``purge``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Connection, delete, select

from mssgw.store.committer import deferred
from mssgw.store.delivery import hot_sql
from mssgw.store.models import Trace
from mssgw.store.timeutil import now

if TYPE_CHECKING:
    from mssgw.store import Store

Category = Literal["transport", "client", "admin"]


@dataclass(frozen=True)
class TraceRecord:
    category: Category
    action: str
    result: str
    actor: str | None = None
    peer_ip: str | None = None
    tls: str | None = None
    sender: str | None = None
    recipients: str | None = None
    message_id: str | None = None
    size: int | None = None
    code: str | None = None
    reason: str | None = None


class Traces:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, record: TraceRecord, *, at: datetime | None = None) -> None:
        stamp = at or now()

        def work(conn: Connection) -> None:
            defer_trace(conn, record, stamp)

        await self.store.committer.run(work, defers=True)

    async def recent(
        self, limit: int = 100, *, category: Category | None = None
    ) -> Sequence[Trace]:
        query = select(Trace).order_by(Trace.id.desc()).limit(limit)
        if category:
            query = query.where(Trace.category == category)
        async with self.store.read() as s:
            return (await s.scalars(query)).all()

    async def purge_past_retention(
        self, *, transport_days: int, client_days: int, at: datetime | None = None
    ) -> dict[str, int]:
        """TRACE-1 retention: transport and admin traces, then client actions."""
        ages: dict[Category, int] = {
            "transport": transport_days,
            "admin": transport_days,
            "client": client_days,
        }
        return {c: await self.purge(c, timedelta(days=d), at=at) for c, d in ages.items()}

    async def purge(
        self, category: Category, keep: timedelta, *, at: datetime | None = None
    ) -> int:
        cutoff = (at or now()) - keep
        async with self.store.write() as s:
            result = await s.execute(
                delete(Trace).where(Trace.category == category, Trace.at < cutoff)
            )
            return int(getattr(result, "rowcount", 0) or 0)


_INSERT = (
    "INSERT INTO traces (at, category, action, result, actor, peer_ip, tls, sender,"
    " recipients, message_id, size, code, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def defer_trace(conn: Connection, record: TraceRecord, at: datetime) -> None:
    """Insert ``record`` with the rest of the committer's batch (in a ``defers`` unit)."""
    hot = hot_sql(conn.dialect)
    deferred(conn, _flush).append(
        (
            hot.utc(at),
            record.category,
            record.action,
            record.result,
            record.actor,
            record.peer_ip,
            record.tls,
            record.sender,
            record.recipients,
            record.message_id,
            record.size,
            record.code,
            record.reason,
        )
    )


def _flush(conn: Connection, rows: list[Any]) -> None:
    hot = hot_sql(conn.dialect)
    hot.executemany(conn, hot.sql(_INSERT), rows)
