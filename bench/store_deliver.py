"""Deliveries per second into one folder, durable, against a raw fsync baseline.

Prints, for SQLite and PostgreSQL (a throwaway cluster with fsync on), the
rate of 4 KB deliveries into one folder with 1 and 10 concurrent writers,
next to the same-run baseline of writing and fsyncing the same bytes to
plain files with 1 and 10 threads.  Target (issue 2): with 10 writers, at
least 0.5x the raw baseline.

    .venv/bin/python bench/store_deliver.py [--seconds 5] [--no-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mssgw.store import Store
from mssgw.store.delivery import LocalTarget
from mssgw.store.mailboxes import NewMailbox
from mssgw.store.models import MailboxType
from tests.conftest import settings_for
from tests.support import postgres

SIZE = 4096


def payload(n: int) -> bytes:
    head = f"Subject: bench {n}\r\nMessage-ID: <{n}.{time.time_ns()}@bench>\r\n\r\n".encode()
    return head + b"x" * (SIZE - len(head))


def raw_fsync_rate(folder: Path, writers: int, seconds: float) -> float:
    """Baseline: each writer writes a new 4 KB file and fsyncs it, in a loop."""
    stop = time.monotonic() + seconds
    counts = [0] * writers

    def work(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            path = folder / f"{i}-{n}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, payload(n))
            os.fsync(fd)
            os.close(fd)
            n += 1
        counts[i] = n

    threads = [threading.Thread(target=work, args=(i,)) for i in range(writers)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.monotonic() - start)


async def store_rate(tmp: Path, url: str | None, writers: int, seconds: float) -> float:
    settings = settings_for(tmp, url)
    store = await Store.open(settings, check_schema=False)
    await store.upgrade()
    await store.mailboxes.add_domain("bench.mssante.test")
    await store.mailboxes.add(
        NewMailbox("bench@bench.mssante.test", MailboxType.PER, "810000000001")
    )
    target = [LocalTarget("bench@bench.mssante.test")]
    stop = time.monotonic() + seconds
    counts = [0] * writers

    async def writer(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            await store.messages.deliver(payload(i * 10_000_000 + n), target)
            n += 1
        counts[i] = n

    start = time.monotonic()
    await asyncio.gather(*(writer(i) for i in range(writers)))
    elapsed = time.monotonic() - start
    await store.close()
    return sum(counts) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each measurement")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL runs")
    args = parser.parse_args()
    rows: list[tuple[str, int, float, float]] = []
    with tempfile.TemporaryDirectory(
        prefix="mssgw-bench-", dir=os.environ.get("BENCH_DIR")
    ) as base:
        root = Path(base)
        baselines = {}
        for writers in (1, 10):
            folder = root / f"raw{writers}"
            folder.mkdir()
            baselines[writers] = raw_fsync_rate(folder, writers, args.seconds)
        for writers in (1, 10):
            tmp = root / f"sqlite{writers}"
            tmp.mkdir()
            rate = asyncio.run(store_rate(tmp, None, writers, args.seconds))
            rows.append(("sqlite", writers, rate, baselines[writers]))
        if not args.no_postgres:
            with postgres.cluster(durable=True) as pg:
                for writers in (1, 10):
                    pg.psql(f"CREATE DATABASE bench{writers}")
                    tmp = root / f"pg{writers}"
                    tmp.mkdir()
                    url = pg.url(f"bench{writers}")
                    rate = asyncio.run(store_rate(tmp, url, writers, args.seconds))
                    rows.append(("postgresql", writers, rate, baselines[writers]))
    print(f"{'backend':<11} {'writers':>7} {'deliveries/s':>13} {'raw fsync/s':>12} {'ratio':>6}")
    for backend, writers, rate, base_rate in rows:
        print(
            f"{backend:<11} {writers:>7} {rate:>13.0f} {base_rate:>12.0f} {rate / base_rate:>6.2f}"
        )


if __name__ == "__main__":
    main()
