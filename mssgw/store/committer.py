"""Group commit: many small write transactions folded into one.

Every accepted message costs durable writes: the message file, the folder
entry that names it, the database commit.  When several deliveries arrive at
once, running them in one transaction pays each of those syncs once for the
whole group: the folders of the new files are fsynced together, then one
COMMIT fsyncs the database log once.

Units are plain synchronous functions over a SQLAlchemy ``Connection`` (Core
statements).  On SQLite a whole batch runs in one hop to a dedicated thread
on the ``sqlite3`` driver; on PostgreSQL it runs through asyncpg.  Units of a
batch run optimistically in one transaction; if one raises, the transaction
is rolled back and every unit of the batch is run again alone, so a failing
unit fails by itself and the others still commit (units must therefore only
touch the database).  Callers are answered only after the COMMIT returned,
so "done" still means "durable" (SPEC STORE-2).

Durability per unit: a unit run with ``durable=False`` (a flag change, an
expunge, a folder rename: state a client can redo, never a message) does not
need its own fsync.  A batch made only of such units commits without one
(SQLite ``synchronous = NORMAL``, PostgreSQL ``synchronous_commit = off``):
after a power cut the last of them may be undone, never half applied, and a
later durable commit makes every earlier one durable too (the WAL is
written in order).  Any durable unit in the batch makes the whole batch
durable.  Messages themselves are always durable (SPEC STORE-2).

Deferred inserts: a unit run with ``defers=True`` may hand rows to
``deferred(conn, flush)`` instead of inserting them itself; each ``flush``
then writes the rows of the whole batch at once (one ``executemany``), in
the same transaction, before the commit and before any unit that did not
ask for deferral runs, so no other unit can miss them.  A failing flush is
a failure of the batch's units (each is then run again alone).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from mssgw.aio import cancel_and_wait
from mssgw.errors import StoreError, brief

T = TypeVar("T")
Work = Callable[[Connection], Any]
#: Writes the rows units deferred to the end of the batch (see ``deferred``).
Flush = Callable[[Connection, list[Any]], None]
log = logging.getLogger(__name__)
#: ``Connection.info`` key of the rows deferred in the running batch.
_DEFERRED = "mssgw.deferred"
#: DBAPI connection ``info`` key: the ``synchronous`` level last set on it.
_SYNCHRONOUS = "mssgw.synchronous"
#: DBAPI connection ``info`` key: its busy timeout is 0 (the event loop's own).
_NO_WAIT = "mssgw.no_wait"


@dataclass
class _Unit:
    work: Work
    future: asyncio.Future[Any]
    sync_dirs: frozenset[Path]
    durable: bool
    #: Work the unit depends on (its blob being written): the unit joins a
    #: batch only once this is done; if it failed, the unit fails alone.
    after: concurrent.futures.Future[Any] | None = None


class _Busy(Exception):
    """Internal: another process holds SQLite's write lock right now."""


class _UnitFailed(Exception):
    """Internal: one unit raised, so the shared transaction must be abandoned."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class WriteLock:
    """The process's SQLite write lock (see ``Store.write_lock``).

    An ``asyncio.Lock`` made for the running event loop: a store may outlive
    the loop it was opened in (tests), and a lock cannot be shared by loops.
    """

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop = asyncio.Lock(), loop
        return self._lock

    def locked(self) -> bool:
        return self._lock is not None and self._lock.locked()


class GroupCommitter:
    """Runs units of work in shared transactions, at most ``max_batch`` at a time.

    Give it either ``sync_engine`` (SQLite: used from one private thread) or
    ``async_engine`` (PostgreSQL).  ``lock`` (SQLite) is held around each
    batch's transaction, shared with the store's other writers.
    """

    def __init__(
        self,
        *,
        max_batch: int,
        sync_engine: Engine | None = None,
        async_engine: AsyncEngine | None = None,
        lock: WriteLock | None = None,
    ) -> None:
        if (sync_engine is None) == (async_engine is None):
            raise ValueError("give exactly one of sync_engine and async_engine")
        self.max_batch = max_batch
        self.sync_engine = sync_engine
        self.async_engine = async_engine
        self.lock = lock
        self._executor = (
            ThreadPoolExecutor(1, thread_name_prefix="mssgw-commit") if sync_engine else None
        )
        self._pending: list[_Unit] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.units = 0
        #: The thread that runs non-durable units itself (see ``_run_here``).
        self._inline_thread: int | None = None

    async def run(
        self,
        work: Callable[[Connection], T],
        *,
        sync_dirs: Iterable[Path] = (),
        defers: bool = False,
        after: concurrent.futures.Future[Any] | None = None,
        durable: bool = True,
    ) -> T:
        """Run ``work`` in a committed transaction; return its result once durable.

        ``sync_dirs`` are folders whose entries (renamed files) must be made
        durable before the commit that references them.  ``defers``: the unit
        may use ``deferred``; without it, rows deferred by earlier units of
        the batch are written before ``work`` runs.  ``after``: work in
        another thread (a blob being written) that must be done before this
        unit runs.  Units whose ``after`` is done go first: a slow one never
        holds back their commit; when none is done, the batch waits for them
        (in the committer's thread on SQLite, before its ``BEGIN``).  If it
        failed, the unit fails with its error without running.  ``durable=False``:
        the change needs no fsync of its own (see the module's docstring).
        """
        unit_work: Work = work if defers else _after_flush(work)
        if not durable and not sync_dirs and after is None and self._idle():
            try:
                return self._run_here(unit_work)  # type: ignore[no-any-return]
            except _Busy:
                pass  # another process is writing: queue as usual (busy timeout)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Unit(unit_work, future, frozenset(sync_dirs), durable, after))
        self._ensure_task()
        assert self._wakeup is not None
        self._wakeup.set()
        return await future

    def _idle(self) -> bool:
        """SQLite, and no write of this process pending or running: nothing can
        interleave with a unit run now, in this thread, before it returns."""
        if (
            self.sync_engine is None
            or self.lock is None
            or self.lock.locked()
            or self._pending
        ):
            return False
        # One thread only (the first to ask, the event loop's): the engine's pool
        # keeps one connection per thread and closes others' beyond its size.
        me = threading.get_ident()
        if self._inline_thread is None:
            self._inline_thread = me
        return self._inline_thread == me

    def _run_here(self, work: Work) -> Any:
        """A non-durable unit run at once in the event loop's thread.

        Such a unit (a flag change, an expunge) is a few rows and a COMMIT
        without fsync: ~0.1 ms, where the hop to the committer's thread and
        back costs ~0.3 ms.  Its connection never waits for the lock (busy
        timeout 0): if another process holds it, ``_Busy`` sends the unit
        through the committer, which waits as usual.
        """
        assert self.sync_engine is not None
        with self.sync_engine.connect() as conn:
            info = conn.connection.info
            if not info.get(_NO_WAIT):
                raw: Any = conn.connection.dbapi_connection
                raw.execute("PRAGMA busy_timeout = 0")
                info[_NO_WAIT] = True
            _sqlite_synchronous(conn, "NORMAL")
            try:
                transaction = conn.begin()  # BEGIN IMMEDIATE, on the raw cursor
            except (OperationalError, sqlite3.OperationalError) as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise _Busy from None
                raise
            with transaction:
                try:
                    result = _run_all(conn, [work])[0]
                except _UnitFailed as failed:
                    raise failed.error from None
        self.batches += 1
        self.units += 1
        return result

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        for unit in self._pending:
            _settle(unit.future, error=StoreError("store closed before the change was committed"))
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="mssgw-commit")
        if self.sync_engine is not None:
            self.sync_engine.dispose()

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._wakeup = asyncio.Event()
            self._task = asyncio.create_task(self._loop(), name="mssgw-group-commit")

    async def _loop(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while batch := self._next_batch():
                if not await self._commit(batch):
                    for unit in batch:
                        await self._commit([unit])

    def _next_batch(self) -> list[_Unit]:
        """Up to ``max_batch`` pending units, in arrival order.

        Units whose ``after`` work is done (or who have none) are preferred;
        if there is none, the units still waiting for theirs are taken (the
        batch then waits for them, see ``_transaction``).  A unit whose
        ``after`` work failed is answered with that failure here.
        """
        ready: list[_Unit] = []
        waiting: list[_Unit] = []
        for unit in self._pending:
            after = unit.after
            if after is None or not after.done():
                (waiting if after is not None else ready).append(unit)
            elif (error := _failure(after)) is not None:
                _settle(unit.future, error=error)
            else:
                ready.append(unit)
        batch = (ready or waiting)[: self.max_batch]
        taken = {id(u) for u in batch}
        self._pending = [u for u in self._pending if id(u) not in taken and not u.future.done()]
        return batch

    async def _commit(self, batch: list[_Unit]) -> bool:
        """Commit ``batch`` in one transaction.  False: a unit failed, retry each alone."""
        try:
            dirs = frozenset().union(*(u.sync_dirs for u in batch))
            afters = [u.after for u in batch if u.after is not None and not u.after.done()]
            durable = any(u.durable for u in batch)
            results = await self._transaction([u.work for u in batch], dirs, afters, durable)
        except _UnitFailed as failed:
            if len(batch) > 1:
                return False
            _settle(batch[0].future, error=failed.error)
            return True
        except Exception as exc:  # COMMIT (or an fsync) failed: nothing of the batch is visible
            log.error("store commit failed for %d change(s): %s", len(batch), type(exc).__name__)
            failure = (
                exc if isinstance(exc, StoreError) else StoreError(f"commit failed: {brief(exc)}")
            )
            for unit in batch:
                _settle(unit.future, error=failure)
            return True
        self.batches += 1
        self.units += len(batch)
        for unit, result in zip(batch, results, strict=True):
            _settle(unit.future, result=result)
        return True

    async def _transaction(
        self,
        works: list[Work],
        dirs: frozenset[Path],
        afters: list[concurrent.futures.Future[Any]],
        durable: bool,
    ) -> list[Any]:
        """Wait for ``afters``, fsync ``dirs``, then run ``works`` in one transaction
        (one thread hop on SQLite); its COMMIT is fsynced only if ``durable``."""
        if self.sync_engine is not None:
            engine = self.sync_engine
            loop = asyncio.get_running_loop()
            if self.lock is None:
                return await loop.run_in_executor(
                    self._executor, _run_all_sync, engine, works, dirs, afters, durable
                )
            async with self.lock.get():
                return await loop.run_in_executor(
                    self._executor, _run_all_sync, engine, works, dirs, afters, durable
                )
        assert self.async_engine is not None
        if afters:
            await asyncio.wait([asyncio.wrap_future(f) for f in afters])
        if dirs:
            await asyncio.to_thread(fsync_dirs, dirs)
        async with self.async_engine.begin() as conn:
            if not durable:
                # PostgreSQL: this transaction's COMMIT does not wait for its WAL flush.
                await conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            return await conn.run_sync(_run_all, works)


def _run_all(conn: Connection, works: list[Work]) -> list[Any]:
    conn.info[_DEFERRED] = {}
    try:
        results = []
        for work in works:
            try:
                results.append(work(conn))
            except Exception as exc:
                raise _UnitFailed(exc) from exc
        try:
            _flush(conn)
        except Exception as exc:
            raise _UnitFailed(exc) from exc
        return results
    finally:
        conn.info.pop(_DEFERRED, None)


def deferred(conn: Connection, flush: Flush) -> list[Any]:
    """The rows ``flush`` will write for the running batch: append yours to it.

    Only inside a unit run with ``defers=True``.  ``flush`` must be one
    module-level function per kind of row (it is the key); flushes run in the
    order they were first asked for, so ask for a parent table's first.
    """
    pending: dict[Flush, list[Any]] = conn.info[_DEFERRED]
    rows = pending.get(flush)
    if rows is None:
        rows = pending[flush] = []
    return rows


def _flush(conn: Connection) -> None:
    pending: dict[Flush, list[Any]] | None = conn.info.get(_DEFERRED)
    if pending:
        batches = list(pending.items())
        pending.clear()
        for flush, rows in batches:
            flush(conn, rows)


def _after_flush(work: Work) -> Work:
    def flushed_first(conn: Connection) -> Any:
        _flush(conn)
        return work(conn)

    return flushed_first


def _run_all_sync(
    engine: Engine,
    works: list[Work],
    dirs: frozenset[Path],
    afters: list[concurrent.futures.Future[Any]],
    durable: bool,
) -> list[Any]:
    if afters:  # before BEGIN: SQLite's write lock is not held while blobs are written
        concurrent.futures.wait(afters)
    fsync_dirs(dirs)
    with engine.connect() as conn:
        _sqlite_synchronous(conn, "FULL" if durable else "NORMAL")
        with conn.begin():
            return _run_all(conn, works)


def _sqlite_synchronous(conn: Connection, level: str) -> None:
    """Set SQLite's ``synchronous`` for the next transaction (outside of one).

    WAL mode: FULL fsyncs the log at every COMMIT; NORMAL only at checkpoints,
    and a crash may undo the last commits but never corrupts or reorders.
    """
    info = conn.connection.info
    if info.get(_SYNCHRONOUS, "FULL") != level:
        raw: Any = conn.connection.dbapi_connection
        raw.execute(f"PRAGMA synchronous = {level}")
        info[_SYNCHRONOUS] = level


def fsync_dirs(dirs: Iterable[Path]) -> None:
    """Make renames into ``dirs`` durable (POSIX: fsync the directory)."""
    for path in sorted(dirs):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _failure(done: concurrent.futures.Future[Any]) -> BaseException | None:
    if done.cancelled():
        return StoreError("store closed before the change was committed")
    return done.exception()


def _settle(
    future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
