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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from mssgw.errors import StoreError

T = TypeVar("T")
Work = Callable[[Connection], Any]
log = logging.getLogger(__name__)


@dataclass
class _Unit:
    work: Work
    future: asyncio.Future[Any]
    sync_dirs: frozenset[Path]


class _UnitFailed(Exception):
    """Internal: one unit raised, so the shared transaction must be abandoned."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class GroupCommitter:
    """Runs units of work in shared transactions, at most ``max_batch`` at a time.

    Give it either ``sync_engine`` (SQLite: used from one private thread) or
    ``async_engine`` (PostgreSQL).
    """

    def __init__(
        self,
        *,
        max_batch: int,
        sync_engine: Engine | None = None,
        async_engine: AsyncEngine | None = None,
    ) -> None:
        if (sync_engine is None) == (async_engine is None):
            raise ValueError("give exactly one of sync_engine and async_engine")
        self.max_batch = max_batch
        self.sync_engine = sync_engine
        self.async_engine = async_engine
        self._executor = (
            ThreadPoolExecutor(1, thread_name_prefix="mssgw-commit") if sync_engine else None
        )
        self._pending: list[_Unit] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.units = 0

    async def run(self, work: Callable[[Connection], T], *, sync_dirs: Iterable[Path] = ()) -> T:
        """Run ``work`` in a committed transaction; return its result once durable.

        ``sync_dirs`` are folders whose entries (renamed files) must be made
        durable before the commit that references them.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Unit(work, future, frozenset(sync_dirs)))
        self._ensure_task()
        assert self._wakeup is not None
        self._wakeup.set()
        return await future

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
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
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                if not await self._commit(batch):
                    for unit in batch:
                        await self._commit([unit])

    async def _commit(self, batch: list[_Unit]) -> bool:
        """Commit ``batch`` in one transaction.  False: a unit failed, retry each alone."""
        try:
            dirs = frozenset().union(*(u.sync_dirs for u in batch))
            results = await self._transaction([u.work for u in batch], dirs)
        except _UnitFailed as failed:
            if len(batch) > 1:
                return False
            _settle(batch[0].future, error=failed.error)
            return True
        except Exception as exc:  # COMMIT (or an fsync) failed: nothing of the batch is visible
            log.error("store commit failed for %d change(s): %s", len(batch), type(exc).__name__)
            failure = (
                exc if isinstance(exc, StoreError) else StoreError(f"commit failed: {_brief(exc)}")
            )
            for unit in batch:
                _settle(unit.future, error=failure)
            return True
        self.batches += 1
        self.units += len(batch)
        for unit, result in zip(batch, results, strict=True):
            _settle(unit.future, result=result)
        return True

    async def _transaction(self, works: list[Work], dirs: frozenset[Path]) -> list[Any]:
        """fsync ``dirs``, then run ``works`` in one transaction (one thread hop on SQLite)."""
        if self.sync_engine is not None:
            engine = self.sync_engine
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, _run_all_sync, engine, works, dirs)
        assert self.async_engine is not None
        if dirs:
            await asyncio.to_thread(fsync_dirs, dirs)
        async with self.async_engine.begin() as conn:
            return await conn.run_sync(_run_all, works)


def _run_all(conn: Connection, works: list[Work]) -> list[Any]:
    results = []
    for work in works:
        try:
            results.append(work(conn))
        except Exception as exc:
            raise _UnitFailed(exc) from exc
    return results


def _run_all_sync(engine: Engine, works: list[Work], dirs: frozenset[Path]) -> list[Any]:
    fsync_dirs(dirs)
    with engine.begin() as conn:
        return _run_all(conn, works)


def fsync_dirs(dirs: Iterable[Path]) -> None:
    """Make renames into ``dirs`` durable (POSIX: fsync the directory)."""
    for path in sorted(dirs):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _settle(
    future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _brief(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__
