"""``mssgw db``: schema upgrades and store maintenance."""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta
from typing import Any

from mssgw.cli._common import group, print_json, settings_from, with_store
from mssgw.store import Store, gc


def register(sub: Any) -> None:
    db = group(sub, "db", "database schema and store maintenance")
    up = db.add_parser(
        "upgrade",
        help="create or upgrade the schema to this version of mssgw",
        description="Apply every pending migration (safe to run again).",
    )
    up.set_defaults(handler=upgrade)
    status = db.add_parser(
        "status",
        help="show the schema revision, and where message octets are kept",
        description="The schema revision of the database (exit 1 if it needs "
        "'mssgw db upgrade'), then how many messages are kept inside the "
        "database (store.inline_max) and how many as files, with their size.",
    )
    status.set_defaults(handler=show_status)
    collect = db.add_parser(
        "gc",
        help="find and remove orphan blobs",
        description="Remove message octets (files, and rows kept inside the "
        "database) that no message or pending queue row references, older "
        "than --grace-hours.",
    )
    collect.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    collect.add_argument(
        "--grace-hours",
        type=float,
        default=1.0,
        metavar="H",
        help="spare files younger than this (default 1)",
    )
    collect.add_argument("--json", action="store_true", help="machine-readable report")
    collect.set_defaults(handler=run_gc)


def upgrade(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def run() -> tuple[set[str], set[str], str]:
        store = await Store.open(settings, check_schema=False)
        try:
            before, after = await store.upgrade()
            return before, after, store.display_url
        finally:
            await store.close()

    before, after, url = asyncio.run(run())
    if before == after:
        print(f"{url}: schema already at {','.join(sorted(after))}")
    else:
        old, new = ",".join(sorted(before)) or "empty", ",".join(sorted(after))
        print(f"{url}: schema upgraded from {old} to {new}")
    return 0


def show_status(args: argparse.Namespace) -> int:
    from mssgw.store import schema

    async def work(store: Store) -> tuple[set[str], set[str], gc.BlobCounts | None]:
        current, heads = await schema.current_revisions(store.engine), schema.head_revisions()
        counts = await gc.blob_counts(store) if current == heads else None
        return current, heads, counts

    current, heads, counts = with_store(args, work, check_schema=False)
    state = "up to date" if current == heads else "needs 'mssgw db upgrade'"
    now, want = ",".join(sorted(current)) or "none", ",".join(sorted(heads))
    print(f"current={now} expected={want} ({state})")
    if counts is not None:
        print(
            f"messages: {counts.inline} inside the database ({counts.inline_bytes} bytes), "
            f"{counts.files} in files ({counts.file_bytes} bytes)"
        )
    return 0 if current == heads else 1


def run_gc(args: argparse.Namespace) -> int:
    async def work(store: Store) -> gc.GcReport:
        return await gc.collect(
            store, grace=timedelta(hours=args.grace_hours), dry_run=args.dry_run
        )

    report = with_store(args, work)
    if args.json:
        print_json(report.__dict__)
        return 0
    verb = "would remove" if args.dry_run else "removed"
    print(
        f"{verb} {len(report.orphan_files)} orphan file(s), "
        f"{len(report.orphan_rows)} orphan row(s), {report.stale_temp} stale temporary file(s); "
        f"{report.bytes_freed} bytes freed"
    )
    for blob_id in report.missing_files:
        print(f"warning: blob {blob_id} is referenced but its file is missing")
    return 0
