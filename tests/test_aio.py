"""cancel_and_wait: the task has unwound (its ``finally`` ran) when it returns."""

from __future__ import annotations

import asyncio

from mssgw.aio import cancel_and_wait


async def test_cancel_and_wait_lets_the_task_unwind() -> None:
    released: list[str] = []

    async def holder() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            released.append("connection closed")

    task = asyncio.create_task(holder())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled() and released == ["connection closed"]


async def test_cancel_and_wait_accepts_none_and_finished_tasks() -> None:
    await cancel_and_wait(None)
    done = asyncio.create_task(asyncio.sleep(0, result=7))
    await done
    await cancel_and_wait(done)
    assert done.result() == 7
