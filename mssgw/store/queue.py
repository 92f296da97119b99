"""The outbound queue: one row per remote recipient (SPEC FLOW-3).

Rows are written by deliveries (``Messages.deliver`` with remote targets);
this repository lets workers claim due rows, records what each attempt
gave, and carries the operator's actions (hold, release, retry, bounce,
drop) and the history of both.

Concurrency (several nodes share one PostgreSQL queue):

* ``claim`` leases rows: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so two
  workers never take the same row in the same instant, then
  ``locked_by``/``locked_until`` so that nobody else takes it until the
  lease ends (on SQLite the write transaction is exclusive already).
* ``record`` only touches rows still leased by the recording worker: a row
  dropped or bounced by the operator, or re-leased after a lease expired,
  is left alone and the worker sends no DSN for it.
* The operator cannot bounce or drop a row while a worker holds its lease
  (the message may be on the wire); holding it is allowed and only stops
  further attempts.

Writes go through the group committer as Core statements, like deliveries.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from sqlalchemy import ColumnElement, Connection, Select, and_, delete, or_, select, update

from mssgw.errors import Conflict, NotFound
from mssgw.store.models import QueueEntry, QueueEvent, QueueState, table
from mssgw.store.timeutil import now

if TYPE_CHECKING:
    from mssgw.store import Store

_QUEUE = table(QueueEntry)
_EVENTS = table(QueueEvent)

OutcomeKind = Literal["delivered", "deferred", "failed"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt gave for one row.

    ``status``: RFC 3463 code; ``error``: our one-line reason (shown by the
    CLI, in the DSN's text); ``remote_mta``/``reply``: the server that
    answered and its reply, when the result came from it.  ``deferred``
    needs ``next_attempt_at``; ``delay_notified`` records that a delay DSN
    is being sent now.
    """

    kind: OutcomeKind
    status: str
    error: str | None = None
    remote_mta: str | None = None
    reply: str | None = None
    next_attempt_at: datetime | None = None
    delay_notified: bool = False


class Queue:
    def __init__(self, store: Store) -> None:
        self.store = store

    # ------------------------------------------------------------------ reading

    async def list(self, *, states: Sequence[QueueState] | None = None) -> Sequence[QueueEntry]:
        query = select(QueueEntry).order_by(QueueEntry.id)
        if states:
            query = query.where(QueueEntry.state.in_([s.value for s in states]))
        async with self.store.read() as s:
            return (await s.scalars(query)).all()

    async def get(self, entry_id: int) -> QueueEntry:
        async with self.store.read() as s:
            row = await s.get(QueueEntry, entry_id)
        if row is None:
            raise NotFound(f"no queue entry {entry_id} (see 'mssgw queue list')")
        return row

    async def history(
        self, *, limit: int = 50, entry_id: int | None = None
    ) -> builtins.list[QueueEvent]:
        """The most recent events, newest first (optionally of one row)."""
        query = select(QueueEvent).order_by(QueueEvent.id.desc()).limit(limit)
        if entry_id is not None:
            query = query.where(QueueEvent.queue_id == entry_id)
        async with self.store.read() as s:
            return list((await s.scalars(query)).all())

    # ------------------------------------------------------------------ workers

    async def claim(
        self,
        worker: str,
        *,
        limit: int = 10,
        lease: timedelta = timedelta(minutes=10),
        at: datetime | None = None,
        ids: Sequence[int] | None = None,
    ) -> builtins.list[QueueEntry]:
        """Lease up to ``limit`` due rows (oldest due first) to ``worker``."""
        stamp = at or now()
        query = (
            select(QueueEntry)
            .where(QueueEntry.state == QueueState.QUEUED.value, QueueEntry.next_attempt_at <= stamp)
            .where(or_(QueueEntry.locked_until.is_(None), QueueEntry.locked_until < stamp))
            .order_by(QueueEntry.next_attempt_at, QueueEntry.id)
            .limit(limit)
        )
        if ids is not None:
            query = query.where(QueueEntry.id.in_(list(ids)))
        if self.store.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        async with self.store.write() as s:
            rows = list((await s.scalars(query)).all())
            for row in rows:
                row.locked_by = worker
                row.locked_until = stamp + lease
            return rows

    async def claim_group(
        self,
        worker: str,
        *,
        lease: timedelta,
        at: datetime | None = None,
        ids: Sequence[int] | None = None,
        limit: int = 100,
    ) -> builtins.list[QueueEntry]:
        """Lease the oldest due row and its siblings: one SMTP transaction's worth.

        Siblings are due rows of the same message (blob), sender, ENVID and
        RET whose recipient is at the same domain; at most ``limit`` rows
        (RFC 5321 §4.5.3.1.8: 100 recipients per transaction is safe).
        """
        stamp = at or now()
        due = (
            select(QueueEntry)
            .where(QueueEntry.state == QueueState.QUEUED.value, QueueEntry.next_attempt_at <= stamp)
            .where(or_(QueueEntry.locked_until.is_(None), QueueEntry.locked_until < stamp))
        )
        if ids is not None:
            due = due.where(QueueEntry.id.in_(list(ids)))
        skip = self.store.dialect == "postgresql"

        def locking(query: Select[tuple[QueueEntry]]) -> Select[tuple[QueueEntry]]:
            return query.with_for_update(skip_locked=True) if skip else query

        async with self.store.write() as s:
            query = due.order_by(QueueEntry.next_attempt_at, QueueEntry.id).limit(1)
            first = (
                await s.scalars(query.with_for_update(skip_locked=True) if skip else query)
            ).first()
            if first is None:
                return []
            domain = first.recipient.rpartition("@")[2].lower()
            query = (
                due.where(
                    QueueEntry.id != first.id,
                    QueueEntry.blob_id == first.blob_id,
                    QueueEntry.sender == first.sender,
                    QueueEntry.recipient.ilike(f"%@{domain}"),
                )
                .order_by(QueueEntry.id)
                .limit(limit - 1)
            )
            siblings = (
                await s.scalars(query.with_for_update(skip_locked=True) if skip else query)
            ).all()
            rows = [first] + [
                r for r in siblings
                if (r.envid, r.ret) == (first.envid, first.ret)
                and r.recipient.rpartition("@")[2].lower() == domain
            ]  # fmt: skip
            for row in rows:
                row.locked_by = worker
                row.locked_until = stamp + lease
            return rows

    async def record(
        self,
        worker: str,
        outcomes: Sequence[tuple[int, Outcome]],
        *,
        at: datetime | None = None,
    ) -> set[int]:
        """Apply attempt results to rows ``worker`` still leases; return the ids applied.

        Each result counts one attempt, releases the lease and adds an event.
        A delivered or failed result sets the state even if the operator held
        the row meanwhile (the message did go, or did fail); a deferral keeps
        a held row held.
        """
        stamp = at or now()

        def work(conn: Connection) -> set[int]:
            done: set[int] = set()
            for entry_id, outcome in outcomes:
                values: dict[str, object] = {
                    "attempts": _QUEUE.c.attempts + 1,
                    "last_attempt_at": stamp,
                    "last_status": outcome.status,
                    "last_error": outcome.error,
                    "remote_mta": outcome.remote_mta,
                    "last_reply": outcome.reply,
                    "locked_by": None,
                    "locked_until": None,
                    "updated_at": stamp,
                }
                if outcome.kind == "deferred":
                    if outcome.next_attempt_at is None:
                        raise ValueError("a deferral needs next_attempt_at")
                    values["next_attempt_at"] = outcome.next_attempt_at
                    if outcome.delay_notified:
                        values["delay_notified"] = True
                else:
                    values["state"] = outcome.kind
                result = conn.execute(
                    update(_QUEUE)
                    .where(_QUEUE.c.id == entry_id, _QUEUE.c.locked_by == worker)
                    .values(**values)
                    .returning(_QUEUE.c.recipient)
                )
                recipient = result.scalar_one_or_none()
                if recipient is None:
                    continue
                done.add(entry_id)
                _event(
                    conn, entry_id, stamp, outcome.kind, recipient, worker, outcome.status,
                    outcome.reply or outcome.error,
                )  # fmt: skip
            return done

        return await self.store.committer.run(work)

    async def release_lease(self, worker: str, ids: Sequence[int]) -> None:
        """Give rows back untouched (worker stopping before it tried them)."""

        def work(conn: Connection) -> None:
            conn.execute(
                update(_QUEUE)
                .where(_QUEUE.c.id.in_(list(ids)), _QUEUE.c.locked_by == worker)
                .values(locked_by=None, locked_until=None)
            )

        await self.store.committer.run(work)

    async def note(
        self, entry_id: int, event: str, *, actor: str, status: str | None, detail: str | None
    ) -> None:
        """Add an event without changing the row (e.g. "dsn": a report was sent)."""
        stamp = now()

        def work(conn: Connection) -> None:
            recipient = conn.execute(
                select(_QUEUE.c.recipient).where(_QUEUE.c.id == entry_id)
            ).scalar_one_or_none()
            _event(conn, entry_id, stamp, event, recipient or "", actor, status, detail)

        await self.store.committer.run(work)

    # ------------------------------------------------------------------ operator

    async def hold(self, entry_id: int, *, actor: str = "operator") -> QueueEntry:
        """Stop attempts on a queued row until it is released."""
        return await self._transition(
            entry_id, "hold", actor, allowed=(QueueState.QUEUED,), values={"state": "held"}
        )

    async def release(
        self, entry_id: int, *, actor: str = "operator", at: datetime | None = None
    ) -> QueueEntry:
        """Put a held row back in the queue, due now."""
        return await self._transition(
            entry_id,
            "release",
            actor,
            allowed=(QueueState.HELD,),
            values={"state": "queued", "next_attempt_at": at or now()},
        )

    async def retry(
        self, entry_id: int, *, actor: str = "operator", at: datetime | None = None
    ) -> QueueEntry:
        """Make a queued row due now (its retry schedule is otherwise unchanged)."""
        return await self._transition(
            entry_id,
            "retry",
            actor,
            allowed=(QueueState.QUEUED,),
            values={"next_attempt_at": at or now()},
        )

    async def bounce(
        self, entry_id: int, reason: str, *, actor: str = "operator", status: str = "5.0.0"
    ) -> QueueEntry:
        """Fail a queued or held row now; the caller sends the failure DSN."""
        return await self._transition(
            entry_id,
            "bounce",
            actor,
            allowed=(QueueState.QUEUED, QueueState.HELD),
            values={
                "state": "failed",
                "last_status": status,
                "last_error": reason,
                "last_reply": None,
                "remote_mta": None,
            },
            unlocked=True,
            detail=reason,
        )

    async def drop(self, entry_id: int, *, actor: str = "operator") -> QueueEntry:
        """Remove a row without any DSN (its history stays)."""
        stamp = now()

        def work(conn: Connection) -> QueueEntry | None:
            row = _row(conn, entry_id)
            if row is None or _leased(row, stamp):
                return None
            conn.execute(delete(_QUEUE).where(_QUEUE.c.id == entry_id, _not_leased(stamp)))
            _event(conn, entry_id, stamp, "drop", row.recipient, actor, None, f"was {row.state}")
            return row

        before = await self.get(entry_id)
        dropped = await self.store.committer.run(work)
        if dropped is None:
            raise Conflict(
                f"queue entry {entry_id} is being delivered right now; try again in a moment"
            )
        return before

    async def _transition(
        self,
        entry_id: int,
        event: str,
        actor: str,
        *,
        allowed: tuple[QueueState, ...],
        values: dict[str, object],
        unlocked: bool = False,
        detail: str | None = None,
    ) -> QueueEntry:
        stamp = now()
        states = [s.value for s in allowed]

        def work(conn: Connection) -> bool:
            condition = and_(_QUEUE.c.id == entry_id, _QUEUE.c.state.in_(states))
            if unlocked:
                condition = and_(condition, _not_leased(stamp))
            result = conn.execute(
                update(_QUEUE)
                .where(condition)
                .values(**values, updated_at=stamp)
                .returning(_QUEUE.c.recipient)
            )
            recipient = result.scalar_one_or_none()
            if recipient is None:
                return False
            _event(conn, entry_id, stamp, event, recipient, actor, None, detail)
            return True

        if not await self.store.committer.run(work):
            row = await self.get(entry_id)
            if row.state in states:
                raise Conflict(
                    f"queue entry {entry_id} is being delivered right now; try again in a moment"
                )
            wanted = " or ".join(states)
            hint = " (release it first)" if row.state == QueueState.HELD.value else ""
            raise Conflict(
                f"queue entry {entry_id} is {row.state}: '{event}' needs a {wanted} entry{hint}"
            )
        return await self.get(entry_id)


def _row(conn: Connection, entry_id: int) -> QueueEntry | None:
    found = conn.execute(select(_QUEUE).where(_QUEUE.c.id == entry_id)).one_or_none()
    if found is None:
        return None
    return QueueEntry(**found._mapping)


def _leased(row: QueueEntry, at: datetime) -> bool:
    if row.locked_until is None:
        return False
    until = row.locked_until
    if until.tzinfo is None:  # Core on SQLite hands back naive UTC
        until = until.replace(tzinfo=at.tzinfo)
    return until >= at


def _not_leased(at: datetime) -> ColumnElement[bool]:
    return or_(_QUEUE.c.locked_until.is_(None), _QUEUE.c.locked_until < at)


def _event(
    conn: Connection,
    entry_id: int,
    at: datetime,
    event: str,
    recipient: str,
    actor: str | None,
    status: str | None,
    detail: str | None,
) -> None:
    conn.execute(
        _EVENTS.insert().values(
            queue_id=entry_id,
            at=at,
            event=event,
            recipient=recipient,
            actor=actor,
            status=status,
            detail=detail,
        )
    )
