"""The group committer: batches, deferred inserts, failures isolated (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import Connection, func, select, text

from mssgw.errors import StoreError
from mssgw.store import Store
from mssgw.store.committer import deferred
from mssgw.store.delivery import LocalTarget
from mssgw.store.models import Message, Trace, table
from mssgw.store.timeutil import now
from mssgw.store.traces import TraceRecord
from tests.store.helpers import message, with_mailboxes


def _insert_domains(conn: Connection, rows: list[Any]) -> None:
    conn.execute(text("INSERT INTO domains (name, created_at) VALUES (:name, :at)"), rows)


async def test_plain_unit_sees_rows_deferred_earlier_in_its_batch(store: Store) -> None:
    stamp = now().replace(tzinfo=None) if store.dialect == "sqlite" else now()

    def defer(name: str) -> Any:
        def work(conn: Connection) -> None:
            deferred(conn, _insert_domains).append({"name": name, "at": stamp})

        return work

    def count(conn: Connection) -> int:
        return int(conn.execute(text("SELECT count(*) FROM domains")).scalar_one())

    results = await asyncio.gather(
        store.committer.run(defer("a.mssante.test"), defers=True),
        store.committer.run(defer("b.mssante.test"), defers=True),
        store.committer.run(count),
        store.committer.run(defer("c.mssante.test"), defers=True),
    )
    assert results[2] >= 2  # the reader placed after two deferred units saw them
    assert await store.mailboxes.hosted_domains() == {
        "a.mssante.test",
        "b.mssante.test",
        "c.mssante.test",
    }


async def test_a_failing_flush_fails_only_its_own_unit(store: Store) -> None:
    stamp = now().replace(tzinfo=None) if store.dialect == "sqlite" else now()
    await store.mailboxes.add_domain("dup.mssante.test")

    def defer(name: str) -> Any:
        def work(conn: Connection) -> str:
            deferred(conn, _insert_domains).append({"name": name, "at": stamp})
            return name

        return work

    results = await asyncio.gather(
        store.committer.run(defer("ok1.mssante.test"), defers=True),
        store.committer.run(defer("dup.mssante.test"), defers=True),  # unique violation
        store.committer.run(defer("ok2.mssante.test"), defers=True),
        return_exceptions=True,
    )
    assert results[0] == "ok1.mssante.test" and results[2] == "ok2.mssante.test"
    assert isinstance(results[1], Exception)
    assert await store.mailboxes.hosted_domains() == {
        "dup.mssante.test",
        "ok1.mssante.test",
        "ok2.mssante.test",
    }


async def test_delivery_writes_dsn_columns_and_trace_in_one_transaction(store: Store) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    trace = TraceRecord(
        category="transport",
        action="mta.data",
        result="accepted",
        code="250 2.0.0",
        recipients=alice,
    )
    target = LocalTarget(
        alice, notify="SUCCESS,FAILURE", orcpt="rfc822;Alice@op1.mssante.test", keep_envelope=True
    )
    await store.messages.deliver(message(1), [target], trace=trace)
    async with store.read() as s:
        row = (await s.scalars(select(Message))).one()
        traces = (await s.execute(select(func.count()).select_from(table_of_traces()))).scalar_one()
    assert (row.dsn_notify, row.dsn_orcpt) == ("SUCCESS,FAILURE", "rfc822;Alice@op1.mssante.test")
    assert traces == 1


async def test_failed_delivery_writes_no_trace(store: Store) -> None:
    await with_mailboxes(store, "alice")
    trace = TraceRecord(category="transport", action="mta.data", result="accepted")
    with pytest.raises(StoreError):
        await store.messages.deliver(
            message(1), [LocalTarget("ghost@op1.mssante.test")], trace=trace
        )
    async with store.read() as s:
        assert (
            await s.execute(select(func.count()).select_from(table_of_traces()))
        ).scalar_one() == 0


def table_of_traces() -> Any:
    return table(Trace)


async def test_units_whose_prerequisite_is_done_do_not_wait_for_a_slow_one(store: Store) -> None:
    import concurrent.futures

    slow: concurrent.futures.Future[None] = concurrent.futures.Future()
    done: concurrent.futures.Future[None] = concurrent.futures.Future()
    done.set_result(None)
    ran: list[str] = []

    # Both pending when the committer forms its batch: the one whose blob is
    # written commits now, the other once its blob is.
    waiting = asyncio.ensure_future(store.committer.run(_named(ran, "slow"), after=slow))
    ready = asyncio.ensure_future(store.committer.run(_named(ran, "ready"), after=done))
    assert await asyncio.wait_for(ready, 10) == "ready"
    assert not waiting.done() and ran == ["ready"]
    slow.set_result(None)
    assert await asyncio.wait_for(waiting, 10) == "slow"
    assert ran == ["ready", "slow"]


async def test_a_failed_prerequisite_fails_its_unit_without_running_it(store: Store) -> None:
    import concurrent.futures

    failed: concurrent.futures.Future[None] = concurrent.futures.Future()
    failed.set_exception(StoreError("disk full"))
    ran: list[str] = []

    results = await asyncio.gather(
        store.committer.run(_named(ran, "blob failed"), after=failed),
        store.committer.run(_named(ran, "other")),
        return_exceptions=True,
    )
    assert isinstance(results[0], StoreError) and "disk full" in str(results[0])
    assert results[1] == "other" and ran == ["other"]


def _named(ran: list[str], name: str) -> Any:
    """A unit that notes it ran and returns its name."""

    def work(conn: Connection) -> str:
        ran.append(name)
        return name

    return work


def _sync_level(conn: Connection) -> str:
    """How this transaction's COMMIT will be flushed, as the database says it."""
    if conn.dialect.name == "sqlite":
        level = int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())
        return {1: "no fsync", 2: "fsync"}[level]  # 1 = NORMAL, 2 = FULL
    setting = conn.exec_driver_sql("SHOW synchronous_commit").scalar_one()
    return "no fsync" if setting == "off" else "fsync"


async def test_only_a_batch_of_non_durable_units_commits_without_fsync(store: Store) -> None:
    # Alone, each unit gets its own level; the connection is reused between them.
    assert await store.committer.run(_sync_level, durable=False) == "no fsync"
    assert await store.committer.run(_sync_level) == "fsync"
    assert await store.committer.run(_sync_level, durable=False) == "no fsync"
    # One durable unit makes its whole batch durable: units that find others
    # waiting join their batch.
    together = await asyncio.gather(
        store.committer.run(_sync_level),
        store.committer.run(_sync_level, durable=False),
        store.committer.run(_sync_level, durable=False),
    )
    assert together == ["fsync"] * 3
    # and the level does not leak into the next durable work
    assert await store.committer.run(_sync_level) == "fsync"


def _where(conn: Connection) -> str:
    import threading

    return threading.current_thread().name


async def test_a_lone_non_durable_unit_runs_at_once_unless_the_database_is_busy(
    store: Store, settings: Any
) -> None:
    import sqlite3
    import threading

    if store.dialect != "sqlite":  # always through the committer (asyncpg, run_sync)
        assert await store.committer.run(_sync_level, durable=False) == "no fsync"
        assert store.committer._inline_thread is None
        return
    here = threading.current_thread().name
    assert await store.committer.run(_where, durable=False) == here  # no hop
    assert await store.committer.run(_where) != here  # durable: the committer's thread
    # Another process holds the write lock: the unit goes through the committer,
    # which waits (busy timeout) instead of failing or blocking the event loop.
    other = sqlite3.connect(settings.store_url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    waiting = asyncio.create_task(store.committer.run(_where, durable=False))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    other.execute("COMMIT")
    other.close()
    assert await waiting != here
    # A unit that fails alone fails with its own error, inline too.
    with pytest.raises(ZeroDivisionError):
        await store.committer.run(lambda conn: 1 / 0, durable=False)
    assert await store.committer.run(_where, durable=False) == here
