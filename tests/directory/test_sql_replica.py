"""The SQL replica on SQLite and PostgreSQL: sync scenarios, atomicity, reports."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from mssgw.directory import sample
from mssgw.directory.base import SyncRefused
from mssgw.directory.extraction import ExtractionSource
from mssgw.directory.sql_replica import SqlReplica, last_runs, last_watermark, record_run
from mssgw.directory.sync import run_sync
from tests.directory import scenarios
from tests.directory.helpers import address_of

MakeZip = Callable[..., Path]


@pytest.mark.parametrize("scenario", scenarios.SCENARIOS, ids=lambda s: s.__name__)
async def test_scenario(scenario: Callable[[SqlReplica, MakeZip], Awaitable[None]],
                        sql_replica: SqlReplica, make_zip: MakeZip) -> None:
    await scenario(sql_replica, make_zip)


async def test_interrupted_sync_rolls_back(sql_replica: SqlReplica, make_zip: MakeZip) -> None:
    await scenarios.interrupted_sync(sql_replica, make_zip, atomic=True)


async def test_readers_see_the_previous_replica_until_commit(
    sql_replica: SqlReplica, make_zip: MakeZip
) -> None:
    """Lookups made while the sync writes see the old rows, never a mix."""
    await run_sync(ExtractionSource(make_zip(sample.lines(range(60)))), sql_replica)
    day2 = make_zip(sample.lines(range(3, 63), changed=frozenset(range(20, 40))))
    seen: list[tuple[int, str]] = []
    probe = address_of(25)
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            entry = await sql_replica.get(probe)
            seen.append(((await sql_replica.counts())["total"], entry.service if entry else "-"))
            await asyncio.sleep(0)

    task = asyncio.create_task(reader())
    await asyncio.sleep(0.05)
    report = await run_sync(ExtractionSource(day2), sql_replica)
    done.set()
    await task
    assert (report.added, report.changed, report.removed) == (3, 20, 3)
    old, new = seen[0], (60, "Service v1")
    assert old[0] == 60 and old[1] != "Service v1"
    # old state, then (once committed) the new one; nothing half-applied in between
    assert set(seen) <= {old, new}
    assert seen == sorted(seen, key=lambda s: s == new)
    assert seen.count(old) > 1
    entry = await sql_replica.get(probe)
    assert entry is not None and entry.service == "Service v1"


async def test_reports_are_recorded(sql_replica: SqlReplica, make_zip: MakeZip) -> None:
    bad = [*sample.lines(range(200)), "broken line"]
    report = await run_sync(ExtractionSource(make_zip(bad)), sql_replica)
    await record_run(sql_replica.write_engine, report, watermark="2025-01-01T00:00:00Z")
    (run,) = await last_runs(sql_replica.engine)
    assert (run["status"], run["added"], run["invalid"], run["read"]) == ("applied", 200, 1, 201)
    assert json.loads(run["invalid_details"]) == [[202, "1 columns, expected 31"]]
    assert await last_watermark(sql_replica.engine, "extraction") == "2025-01-01T00:00:00Z"
    assert await last_watermark(sql_replica.engine, "fhir") == ""


async def test_sync_restores_the_garbage_collector(sql_replica: SqlReplica,
                                                   make_zip: MakeZip) -> None:
    """The index phase pauses the cyclic GC; it is back on after a run or a refusal."""
    await run_sync(ExtractionSource(make_zip(sample.lines(range(20)))), sql_replica)
    assert gc.isenabled()
    with pytest.raises(SyncRefused):
        await run_sync(ExtractionSource(make_zip(sample.lines(range(2)))), sql_replica)
    assert gc.isenabled()
