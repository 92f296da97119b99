"""Sync scenarios run against every replica (SQL on SQLite/PostgreSQL, LDAP on slapd)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mssgw.directory import sample
from mssgw.directory.base import Replica, ScanStats, SyncRefused
from mssgw.directory.entry import DirectoryEntry, Scope
from mssgw.directory.extraction import ExtractionSource, parse_line
from mssgw.directory.local import LocalSource
from mssgw.directory.sync import Guards, SyncReport, run_sync
from tests.directory.helpers import address_of, line

MakeZip = Callable[..., Path]


async def _state(replica: Replica) -> dict[str, tuple[str, str]]:
    return {a: (i.content_hash, i.scope) for a, i in (await replica.load_index()).items()}


async def full_then_idempotent(replica: Replica, make_zip: MakeZip) -> None:
    path = make_zip(sample.lines(range(40), duplicates=3))
    first = await run_sync(ExtractionSource(path), replica)
    assert (first.status, first.added, first.changed, first.removed) == ("applied", 40, 0, 0)
    assert (first.read, first.duplicates) == (43, 3)
    again = await run_sync(ExtractionSource(path), replica)
    assert (again.added, again.changed, again.removed, again.unchanged) == (0, 0, 0, 40)
    expected = parse_line(sample.row(7))
    assert isinstance(expected, DirectoryEntry)
    assert await replica.get(expected.address) == expected
    assert await replica.get("nobody@nowhere.mssante.fr") is None
    counts = await replica.counts()
    assert counts["total"] == 40


async def duplicates_resolved_the_same_whatever_the_order(replica: Replica,
                                                          make_zip: MakeZip) -> None:
    one = line(address="twice@medecin.mssante.fr", c7="Cardiologie")
    two = line(address="twice@medecin.mssante.fr", c7="Urgences")
    await run_sync(ExtractionSource(make_zip([sample.header(), one, two])), replica)
    first = await replica.get("twice@medecin.mssante.fr")
    report = await run_sync(ExtractionSource(make_zip([sample.header(), two, one])), replica)
    assert report.changed == 0 and report.duplicates == 1
    assert await replica.get("twice@medecin.mssante.fr") == first


async def incremental(replica: Replica, make_zip: MakeZip) -> None:
    await run_sync(ExtractionSource(make_zip(sample.lines(range(50)))), replica)
    day2 = make_zip(sample.lines(range(2, 53), changed=frozenset({10, 11, 12})))
    report = await run_sync(ExtractionSource(day2), replica)
    assert (report.added, report.changed, report.removed, report.unchanged) == (3, 3, 2, 45)
    changed = await replica.get(address_of(10))
    assert changed is not None and changed.service == "Service v1"
    assert await replica.get(address_of(0)) is None
    assert await replica.get(address_of(52)) is not None


async def truncated_file_changes_nothing(replica: Replica, make_zip: MakeZip) -> None:
    await run_sync(ExtractionSource(make_zip(sample.lines(range(50)))), replica)
    before = await _state(replica)
    with pytest.raises(SyncRefused, match="would remove 40 of 50") as refused:
        await run_sync(ExtractionSource(make_zip(sample.lines(range(10)))), replica)
    assert isinstance(refused.value.report, SyncReport)
    assert refused.value.report.status == "refused"
    assert await _state(replica) == before
    # the operator can raise the limit on purpose
    report = await run_sync(ExtractionSource(make_zip(sample.lines(range(10)))), replica,
                            Guards(max_removal_share=0.9))
    assert report.removed == 40


async def broken_file_changes_nothing(replica: Replica, make_zip: MakeZip) -> None:
    await run_sync(ExtractionSource(make_zip(sample.lines(range(50)))), replica)
    before = await _state(replica)
    bad = [*sample.lines(range(50), changed=frozenset({1})), "garbage", line("ZZZ")]
    with pytest.raises(SyncRefused, match="2 of 52 lines invalid"):
        await run_sync(ExtractionSource(make_zip(bad)), replica)
    assert await _state(replica) == before


class FailingSource:
    """The national file, but the write pass dies after ``after`` entries (a crash)."""

    scope: Scope = "national"
    complete = True

    def __init__(self, inner: ExtractionSource, after: int) -> None:
        self.inner, self.after, self.passes = inner, after, 0
        self.name = inner.name

    def owners(self) -> frozenset[str]:
        return frozenset()

    def scan(self, stats: ScanStats,
             wanted: frozenset[str] | None = None) -> Iterator[DirectoryEntry]:
        self.passes += 1
        for n, entry in enumerate(self.inner.scan(stats, wanted)):
            if self.passes == 2 and n == self.after:
                raise RuntimeError("interrupted")
            yield entry


async def interrupted_sync(replica: Replica, make_zip: MakeZip, *, atomic: bool) -> None:
    await run_sync(ExtractionSource(make_zip(sample.lines(range(30)))), replica)
    before = await _state(replica)
    day2 = make_zip(sample.lines(range(1, 40), changed=frozenset(range(5, 25))))
    with pytest.raises(RuntimeError, match="interrupted"):
        await run_sync(FailingSource(ExtractionSource(day2), after=20), replica)
    after = await _state(replica)
    if atomic:
        assert after == before
    else:  # every previous entry still there, each one whole (old or new)
        assert set(before) <= set(after)
        for address in after:
            assert await replica.get(address) is not None
    report = await run_sync(ExtractionSource(day2), replica)
    assert report.status == "applied"
    assert (await run_sync(ExtractionSource(day2), replica)).unchanged == 39


async def local_entries_win(replica: Replica, make_zip: MakeZip) -> None:
    ours = DirectoryEntry("ORG", address_of(3), org_name="Notre secrétariat", service="Accueil")
    mine = DirectoryEntry("PER", "dr.house@op1.mssante.test", last_name="House",
                          first_name="Grégoire", pp_national_id="810000000001")
    await run_sync(ExtractionSource(make_zip(sample.lines(range(20)))), replica)
    report = await run_sync(LocalSource([ours, mine]), replica)
    assert (report.added, report.changed) == (1, 1)
    national = await run_sync(ExtractionSource(make_zip(sample.lines(range(20)))), replica)
    assert (national.skipped_local, national.changed, national.removed) == (1, 0, 0)
    assert await replica.get(address_of(3)) == ours
    assert await replica.get(mine.address) == mine
    report = await run_sync(LocalSource([ours]), replica)
    assert report.removed == 1
    assert await replica.get(mine.address) is None


async def dry_run_writes_nothing(replica: Replica, make_zip: MakeZip) -> None:
    report = await run_sync(ExtractionSource(make_zip(sample.lines(range(5)))), replica,
                            dry_run=True)
    assert (report.status, report.added) == ("dry-run", 5)
    assert await _state(replica) == {}


SCENARIOS = [full_then_idempotent, duplicates_resolved_the_same_whatever_the_order, incremental,
             truncated_file_changes_nothing, broken_file_changes_nothing, local_entries_win,
             dry_run_writes_nothing]
