"""Finding and removing orphan blobs.

A blob row whose bytes are inline (``store.content``) goes with its row; a
blob file is written before the transaction that references it; if that
transaction fails, or a crash comes in between, the file is left without a
row.  Conversely rows may outlive their last reference after expunges.  The
collector removes blobs no message and no pending queue row references,
sparing anything younger than a grace period (a delivery may be between its
fsync and its commit right now).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, union

from mssgw.store.models import Blob, Message, QueueEntry, QueueState
from mssgw.store.timeutil import now

if TYPE_CHECKING:
    from mssgw.store import Store


@dataclass
class GcReport:
    orphan_files: list[str] = field(default_factory=list)
    orphan_rows: list[str] = field(default_factory=list)
    stale_temp: int = 0
    missing_files: list[str] = field(default_factory=list)
    bytes_freed: int = 0


async def collect(
    store: Store, *, grace: timedelta = timedelta(hours=1), dry_run: bool = False
) -> GcReport:
    report = GcReport()
    cutoff = time.time() - grace.total_seconds()
    referenced = union(
        select(Message.blob_id),
        select(QueueEntry.blob_id).where(
            QueueEntry.state.in_([QueueState.QUEUED.value, QueueState.HELD.value])
        ),
    )
    async with store.read() as s:
        used = set((await s.scalars(select(referenced.subquery().c[0]))).all())
        # Never the bytes of inline blobs: only how many they have.
        columns = select(Blob.id, Blob.created_at, func.coalesce(func.length(Blob.data), -1))
        rows: dict[str, tuple[datetime, bool]] = {}
        inline_sizes: dict[str, int] = {}
        for blob_id, created, size in await s.execute(columns):
            rows[blob_id] = (created, size >= 0)
            if size >= 0:
                inline_sizes[blob_id] = int(size)
    for blob_id, mtime in store.blobs.iter_ids():
        if blob_id not in used and mtime < cutoff:
            report.orphan_files.append(blob_id)
    row_cutoff = now() - grace
    report.orphan_rows = sorted(
        b for b, (created, _) in rows.items() if b not in used and created < row_cutoff
    )
    report.missing_files = sorted(
        b for b in used if not rows.get(b, (None, False))[1] and not store.blobs.exists(b)
    )
    temps = [p for p, mtime in store.blobs.iter_temp() if mtime < cutoff]
    report.stale_temp = len(temps)
    if dry_run:
        return report
    if report.orphan_rows:
        async with store.write() as s:
            # Re-check references in the same statement: a delivery may have taken one since.
            gone = await s.scalars(
                delete(Blob)
                .where(Blob.id.in_(report.orphan_rows), Blob.id.not_in(referenced))
                .returning(Blob.id)
            )
            report.bytes_freed += sum(inline_sizes.get(b, 0) for b in gone.all())
    for blob_id in report.orphan_files:
        path = store.blobs.path(blob_id)
        report.bytes_freed += path.stat().st_size
        store.blobs.remove(blob_id)
    for path in temps:
        path.unlink(missing_ok=True)
    return report


@dataclass(frozen=True)
class BlobCounts:
    """Distinct message octets by where they are kept (``mssgw db status``)."""

    inline: int
    inline_bytes: int
    files: int
    file_bytes: int


async def blob_counts(store: Store) -> BlobCounts:
    """Counted on the blob rows (the files themselves are not read)."""
    inline = Blob.data.is_not(None)
    query = select(
        func.count().filter(inline),
        func.coalesce(func.sum(Blob.size).filter(inline), 0),
        func.count().filter(~inline),
        func.coalesce(func.sum(Blob.size).filter(~inline), 0),
    )
    async with store.read() as s:
        row = (await s.execute(query)).one()
    return BlobCounts(*(int(v) for v in row))
