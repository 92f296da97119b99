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
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    delete,
    or_,
    select,
    update,
)

from mssgw.errors import Conflict, NotFound
from mssgw.store.committer import deferred
from mssgw.store.delivery import hot_sql
from mssgw.store.models import QueueEntry, QueueEvent, QueueState, table
from mssgw.store.timeutil import now
from mssgw.store.traces import TraceRecord, defer_trace

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
        found = await self.claim_groups(worker, lease=lease, at=at, ids=ids, limit=limit)
        return found[0] if found else []

    async def claim_groups(
        self,
        worker: str,
        *,
        lease: timedelta,
        at: datetime | None = None,
        ids: Sequence[int] | None = None,
        limit: int = 100,
        groups: int = 1,
    ) -> builtins.list[builtins.list[QueueEntry]]:
        """Lease up to ``groups`` groups (see ``claim_group``) in one write transaction.

        The groups are the ones ``claim_group`` called that many times would
        give, oldest due first.  Fewer than ``groups`` means that no other
        row was due (or free) at ``at``.  Runs through the group committer,
        so claims share the commit of deliveries and records in flight.
        """
        stamp = at or now()
        heads_sql, keys_sql, rows_sql = _claim_statements(
            self.store.dialect == "postgresql", ids is not None
        )
        due: dict[str, Any] = {"queued": QueueState.QUEUED.value, "stamp": stamp}
        if ids is not None:
            due["only"] = list(ids)

        def work(conn: Connection) -> builtins.list[builtins.list[QueueEntry]]:
            out: builtins.list[builtins.list[QueueEntry]] = []
            taken: set[int] = set()
            while len(out) < groups:
                wanted = groups - len(out)
                # the next heads, oldest due first (full rows) ...
                free = {**due, "taken": sorted(taken)}
                heads = [
                    QueueEntry(**r._mapping) for r in conn.execute(heads_sql, {**free, "n": wanted})
                ]
                if not heads:
                    break
                # ... then the grouping keys of every due row of their messages
                by_group: dict[tuple[object, ...], builtins.list[int]] = {}
                blobs = sorted({h.blob_id for h in heads})
                for r in conn.execute(keys_sql, {**free, "blobs": blobs, "m": wanted * limit}):
                    key = _group_key(r.blob_id, r.sender, r.envid, r.ret, r.recipient)
                    by_group.setdefault(key, []).append(r.id)
                grouped: builtins.list[tuple[QueueEntry, builtins.list[int]]] = []
                for head in heads:
                    if head.id in taken:
                        continue  # already a sibling of an earlier head
                    key = _group_key(
                        head.blob_id, head.sender, head.envid, head.ret, head.recipient
                    )
                    siblings = [
                        i for i in by_group.get(key, ()) if i != head.id and i not in taken
                    ][: limit - 1]
                    taken.add(head.id)
                    taken.update(siblings)
                    grouped.append((head, siblings))
                    if len(out) + len(grouped) == groups:
                        break
                wanted_rows = sorted(i for _, sib in grouped for i in sib)
                found = (
                    {
                        r.id: QueueEntry(**r._mapping)
                        for r in conn.execute(rows_sql, {"ids": wanted_rows})
                    }
                    if wanted_rows
                    else {}
                )
                out += [[head] + [found[i] for i in sib] for head, sib in grouped]
            if taken:
                until = stamp + lease
                conn.execute(_LEASE, {"ids": sorted(taken), "worker": worker, "until": until})
                for group in out:
                    for row in group:
                        row.locked_by = worker
                        row.locked_until = until
            return out

        return await self.store.committer.run(work)

    async def record(
        self,
        worker: str,
        outcomes: Sequence[tuple[int, Outcome]],
        *,
        at: datetime | None = None,
        traces: Sequence[TraceRecord] = (),
    ) -> set[int]:
        """Apply attempt results to rows ``worker`` still leases; return the ids applied.

        Each result counts one attempt, releases the lease and adds an event.
        A delivered or failed result sets the state even if the operator held
        the row meanwhile (the message did go, or did fail); a deferral keeps
        a held row held.  ``traces`` (the attempt's TRACE-1 records) commit
        in the same transaction.  Statements go straight to the DBAPI cursor
        (the relay's hot path, like deliveries).
        """
        stamp = at or now()

        def work(conn: Connection) -> set[int]:
            hot = hot_sql(conn.dialect)
            when = hot.utc(stamp)
            done: set[int] = set()
            events = deferred(conn, _flush_events)
            for entry_id, outcome in outcomes:
                common = (
                    when, outcome.status, outcome.error, outcome.remote_mta, outcome.reply, when,
                )
                if outcome.kind == "deferred":
                    if outcome.next_attempt_at is None:
                        raise ValueError("a deferral needs next_attempt_at")
                    sql = _DEFER_NOTIFIED if outcome.delay_notified else _DEFER
                    params = (*common, hot.utc(outcome.next_attempt_at), entry_id, worker)
                else:
                    sql, params = _FINISH, (*common, outcome.kind, entry_id, worker)
                row = hot.execute(conn, hot.sql(sql), params).fetchone()
                if row is None:
                    continue
                done.add(entry_id)
                events.append((
                    entry_id, when, outcome.kind, row[0], worker, outcome.status,
                    outcome.reply or outcome.error,
                ))  # fmt: skip
            for record in traces:
                defer_trace(conn, record, stamp)
            return done

        return await self.store.committer.run(work, defers=True)

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

    async def purge_finished(self, keep: timedelta, *, at: datetime | None = None) -> int:
        """Forget delivered and failed rows, and their history, older than ``keep``.

        Their blobs are no longer referenced by them (``db gc`` removes what
        nothing else uses); traces keep the transport record for longer (TRACE-1).
        """
        cutoff = (at or now()) - keep
        finished = [QueueState.DELIVERED.value, QueueState.FAILED.value]
        queue, events = table(QueueEntry), table(QueueEvent)

        def work(conn: Connection) -> int:
            old = select(queue.c.id).where(queue.c.state.in_(finished), queue.c.updated_at < cutoff)
            conn.execute(delete(events).where(events.c.queue_id.in_(old)))
            conn.execute(delete(events).where(events.c.at < cutoff))
            return int(conn.execute(delete(queue).where(queue.c.id.in_(old))).rowcount or 0)

        return await self.store.committer.run(work)

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


def _group_key(
    blob_id: str, sender: str, envid: str | None, ret: str | None, recipient: str
) -> tuple[object, ...]:
    """Rows with the same key go in one transaction (same message, envelope, domain)."""
    return (blob_id, sender, envid, ret, recipient.rpartition("@")[2].lower())


# Statements of the relay's hot path, built once (building and hashing a Core
# statement costs more than running it on SQLite).


@functools.cache
def _claim_statements(
    skip_locked: bool, only: bool
) -> tuple[Select[Any], Select[Any], Select[Any]]:
    """Heads (full rows), grouping keys of a message's due rows, and rows by id."""
    q = _QUEUE.c
    due = (
        select(_QUEUE)
        .where(q.state == bindparam("queued"), q.next_attempt_at <= bindparam("stamp"))
        .where(or_(q.locked_until.is_(None), q.locked_until < bindparam("stamp")))
        .where(q.id.not_in(bindparam("taken", expanding=True)))
    )
    if only:
        due = due.where(q.id.in_(bindparam("only", expanding=True)))
    heads = due.order_by(q.next_attempt_at, q.id).limit(bindparam("n"))
    keys = (
        due.with_only_columns(q.id, q.blob_id, q.sender, q.envid, q.ret, q.recipient)
        .where(q.blob_id.in_(bindparam("blobs", expanding=True)))
        .order_by(q.id)
        .limit(bindparam("m"))
    )
    if skip_locked:  # PostgreSQL: two nodes never take the same row
        heads = heads.with_for_update(skip_locked=True)
        keys = keys.with_for_update(skip_locked=True)
    rows = select(_QUEUE).where(q.id.in_(bindparam("ids", expanding=True))).order_by(q.id)
    return heads, keys, rows


_LEASE = (
    update(_QUEUE)
    .where(_QUEUE.c.id.in_(bindparam("ids", expanding=True)))
    .values(locked_by=bindparam("worker"), locked_until=bindparam("until"))
)


def _record_sql(extra: str) -> str:
    return (
        "UPDATE queue SET attempts = attempts + 1, last_attempt_at = ?, last_status = ?,"
        " last_error = ?, remote_mta = ?, last_reply = ?, locked_by = NULL,"
        f" locked_until = NULL, updated_at = ?, {extra}"
        " WHERE id = ? AND locked_by = ? RETURNING recipient"
    )


#: Delivered or failed: the state changes even on a held row.
_FINISH = _record_sql("state = ?")
#: Deferred: a held row stays held.
_DEFER = _record_sql("next_attempt_at = ?")
_DEFER_NOTIFIED = _record_sql("next_attempt_at = ?, delay_notified = TRUE")
_INSERT_EVENT = (
    "INSERT INTO queue_events (queue_id, at, event, recipient, actor, status, detail)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _flush_events(conn: Connection, rows: builtins.list[Any]) -> None:
    """The attempt events of a batch (``committer.deferred``)."""
    hot = hot_sql(conn.dialect)
    hot.executemany(conn, hot.sql(_INSERT_EVENT), rows)


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
