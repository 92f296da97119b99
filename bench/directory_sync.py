"""Benchmark: national directory sync into SQL (SQLite) and LDAP (slapd), and lookups.

Generates a realistic extraction (accented names, apostrophes, PER/ORG mix,
empty columns, a few duplicate addresses), then measures, next to a
same-run baseline of only reading and splitting the file:

* full sync into SQLite (the store's engines: WAL, synchronous=FULL),
* incremental sync of a second day's file (1 % changed, 0.2 % added, 0.2 % removed),
* the same two into a throwaway slapd (mdb, dbnosync, the documented indexes),
* cached lookups per second, and the peak RSS of this process.

Usage: .venv/bin/python bench/directory_sync.py [--rows 536000] [--no-ldap]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import random
import resource
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from mssgw.directory import sample, slapd
from mssgw.directory.extraction import ExtractionSource
from mssgw.directory.ldap_replica import LdapReplica
from mssgw.directory.lookup import DirectoryLookup
from mssgw.directory.sql_models import DirectoryEntryRow
from mssgw.directory.sql_replica import SqlReplica
from mssgw.directory.sync import Guards, SyncReport, run_sync
from mssgw.store.base import Base
from mssgw.store.db import create_engines

TARGETS = {"sql_full": 30.0, "ldap_full": 300.0, "sql_incremental": 5.0,
           "ldap_incremental": 30.0, "rss_mb": 500.0, "lookups_per_s": 100_000.0}


def make_files(folder: Path, rows: int) -> tuple[Path, Path, int]:
    rnd = random.Random(7)
    changed = frozenset(rnd.sample(range(rows), rows // 100))
    moved = max(1, rows // 500)
    day1 = sample.write_zip(folder / "day1.zip", sample.lines(range(rows), duplicates=50))
    day2 = sample.write_zip(folder / "day2.zip", sample.lines(
        range(moved, rows + moved), changed=changed, duplicates=50))
    return day1, day2, len(changed)


def baseline(path: Path) -> float:
    """Only read and split the file: what no sync can go below."""
    started = time.perf_counter()
    with zipfile.ZipFile(path) as zf, zf.open(zf.namelist()[0]) as raw:
        for line in io.TextIOWrapper(raw, encoding="utf-8"):
            line.split("|")
    return time.perf_counter() - started


async def timed(source: Path, replica: Any) -> tuple[float, SyncReport]:
    started = time.perf_counter()
    report = await run_sync(ExtractionSource(source), replica, Guards())
    return time.perf_counter() - started, report


async def bench_sql(folder: Path, day1: Path, day2: Path) -> dict[str, Any]:
    url = f"sqlite:///{folder / 'bench.db'}"
    reader, writer = create_engines(url, busy_timeout_ms=5000, pool_size=5)
    async with writer.begin() as conn:
        await conn.run_sync(lambda c: Base.metadata.create_all(
            c, tables=[DirectoryEntryRow.__table__]))  # type: ignore[list-item]
    replica = SqlReplica(reader, writer)
    full, r1 = await timed(day1, replica)
    incr, r2 = await timed(day2, replica)
    lookups = await bench_lookups(replica, r2)
    await reader.dispose()
    await writer.dispose()
    return {"sql_full": full, "sql_incremental": incr, "lookups_per_s": lookups,
            "full_report": r1.summary(), "incremental_report": r2.summary()}


async def bench_lookups(replica: SqlReplica, _: SyncReport, n: int = 500_000) -> float:
    addresses = list((await replica.load_index()).keys())[:10_000]
    lookup = DirectoryLookup(replica)
    for address in addresses:
        await lookup.find(address)
    started = time.perf_counter()
    for i in range(n):
        await lookup.find(addresses[i % len(addresses)])
    return n / (time.perf_counter() - started)


async def bench_ldap(folder: Path, day1: Path, day2: Path) -> dict[str, Any]:
    server = slapd.start(folder / "slapd")
    try:
        replica = LdapReplica(server.url, server.root_dn, server.password,
                              f"ou=mssante,{server.suffix}", timeout=60)
        full, r1 = await timed(day1, replica)
        incr, r2 = await timed(day2, replica)
        replica.close()
    finally:
        server.stop()
    return {"ldap_full": full, "ldap_incremental": incr,
            "ldap_full_report": r1.summary(), "ldap_incremental_report": r2.summary()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=536_000)
    parser.add_argument("--no-ldap", action="store_true", help="SQL and lookups only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mssgw-bench-") as tmp:
        folder = Path(tmp)
        day1, day2, changed = make_files(folder, args.rows)
        zipped_mb = day1.stat().st_size / 1e6
        base = baseline(day1)
        results: dict[str, Any] = asyncio.run(bench_sql(folder, day1, day2))
        if not args.no_ldap:
            results.update(asyncio.run(bench_ldap(folder, day1, day2)))
    results["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows {args.rows}, day 2: {changed} changed, {max(1, args.rows // 500)} added "
          f"and removed; {zipped_mb:.1f} MB zipped")
    print(f"baseline read+split          {base:8.2f} s")
    for key in ("sql_full", "sql_incremental", "ldap_full", "ldap_incremental"):
        if key in results:
            print(f"{key:<28} {results[key]:8.2f} s   x{results[key] / base:5.1f} baseline"
                  f"   target <= {TARGETS[key]:.0f} s")
    print(f"{'cached lookups':<28} {results['lookups_per_s']:10,.0f} /s   target >= 100,000/s")
    print(f"{'peak RSS (this process)':<28} {results['rss_mb']:8.0f} MB   target <= 500 MB")
    for key in ("full_report", "incremental_report", "ldap_full_report",
                "ldap_incremental_report"):
        if key in results:
            print(f"  {key}: {results[key]}")


if __name__ == "__main__":
    main()
