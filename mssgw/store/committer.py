"""Group commit: many small write transactions folded into one.

Every accepted message costs a database commit, and a durable commit costs
an fsync (SQLite WAL with ``synchronous=FULL``, PostgreSQL's WAL flush).
When several deliveries arrive at once, running them in one transaction
pays that fsync once.  Each unit of work runs inside its own SAVEPOINT, so
one that fails is rolled back alone and the others still commit; callers are
answered only after the shared COMMIT returned, so "done" still means
"durable" (SPEC STORE-2).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from mssgw.errors import StoreError

if TYPE_CHECKING:
    from mssgw.store import Store

T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[Any]]
log = logging.getLogger(__name__)


class GroupCommitter:
    """Runs units of work in shared transactions, at most ``max_batch`` at a time."""

    def __init__(self, store: Store, max_batch: int) -> None:
        self.store = store
        self.max_batch = max_batch
        self._pending: list[tuple[Work, asyncio.Future[Any]]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.units = 0

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``work`` in a committed transaction; return its result once durable."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((work, future))
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
        for _, future in self._pending:
            if not future.done():
                future.set_exception(StoreError("store closed before the change was committed"))
        self._pending.clear()

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
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[Work, asyncio.Future[Any]]]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            async with self.store.write() as session:
                for work, future in batch:
                    outcomes.append((future, *await _one(session, work)))
        except Exception as exc:  # the COMMIT itself failed: nothing of the batch is visible
            log.error("store commit failed for %d change(s): %s", len(batch), type(exc).__name__)
            failure = exc if isinstance(exc, StoreError) else StoreError(f"commit failed: {_brief(exc)}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            return
        self.batches += 1
        self.units += len(batch)
        for future, result, error in outcomes:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)


async def _one(session: AsyncSession, work: Work) -> tuple[Any, BaseException | None]:
    try:
        async with session.begin_nested():
            return await work(session), None
    except Exception as exc:
        return None, exc


def _brief(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__
