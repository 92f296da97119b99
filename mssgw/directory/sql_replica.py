"""The SQL replica: directory rows in the gateway's own database.

Why one transaction per sync: SQLite (WAL) and PostgreSQL (MVCC) both let
readers go on seeing the previous replica until the commit, and a failed or
interrupted run rolls back to it, so lookups never see a half-applied sync.
Writes are batched (``executemany``) inside that transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mssgw.directory.base import IndexItem, Progress, chunks
from mssgw.directory.entry import CONTENT_FIELDS, DirectoryEntry, entry_from_mapping
from mssgw.directory.sql_models import DirectoryEntryRow, DirectorySyncRun
from mssgw.directory.sync import SyncReport

ENTRIES = cast(Table, DirectoryEntryRow.__table__)
RUNS = cast(Table, DirectorySyncRun.__table__)
_CONTENT = attrgetter(*CONTENT_FIELDS)
_BOOLS = frozenset({"dematerialisation", "liste_rouge"})
_DELETE_CHUNK = 500
_INDEX_SQL = f"SELECT address, content_hash, source, owner_ref FROM {ENTRIES.name}"


def entry_to_row(entry: DirectoryEntry, scope: str, now: datetime) -> dict[str, Any]:
    """Column values for one entry; empty strings become NULL."""
    row: dict[str, Any] = {
        name: (value if name in _BOOLS else value or None)
        for name, value in zip(CONTENT_FIELDS, _CONTENT(entry), strict=True)
    }
    row["source"] = scope
    row["content_hash"] = entry.content_hash
    row["updated_at"] = now
    return row


def _index_rows(conn: Connection) -> list[tuple[str, str, str, str | None]]:
    """The index columns through the DBAPI cursor: SQLAlchemy ``Row`` objects cost
    more than the query itself for a full table."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(_INDEX_SQL)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def row_to_entry(row: Any) -> DirectoryEntry:
    return entry_from_mapping(dict(row._mapping))


class SqlReplica:
    """The ``directory_entries`` table behind an ``AsyncEngine``."""

    kind = "sql"

    def __init__(
        self, engine: AsyncEngine, write_engine: AsyncEngine | None = None, batch_size: int = 2000
    ) -> None:
        self.engine = engine
        #: On SQLite the store has a separate single-writer engine (BEGIN IMMEDIATE).
        self.write_engine = write_engine or engine
        self.batch_size = batch_size

    @classmethod
    def from_store(cls, store: Any, batch_size: int = 2000) -> SqlReplica:
        """The replica in the gateway's store (``mssgw.store.Store``)."""
        return cls(store.engine, getattr(store, "write_engine", None), batch_size)

    async def load_index(self) -> dict[str, IndexItem]:
        """Every row's address, hash, scope and owner (plain DBAPI rows: 536k of them)."""
        async with self.engine.connect() as conn:
            rows = await conn.run_sync(_index_rows)
        return {a: IndexItem(h, s, o or "") for a, h, s, o in rows}

    async def apply(
        self,
        removed: Iterable[str],
        written: Iterable[tuple[DirectoryEntry, str]],
        progress: Progress,
    ) -> None:
        now = datetime.now(UTC)
        async with self.write_engine.begin() as conn:
            for chunk in chunks(sorted(removed), _DELETE_CHUNK):
                await conn.execute(delete(ENTRIES).where(ENTRIES.c.address.in_(chunk)))
                progress(len(chunk))
            for batch in chunks(written, self.batch_size):
                await self._write_batch(conn, batch, now)
                progress(len(batch))

    async def _write_batch(
        self, conn: AsyncConnection, batch: list[tuple[DirectoryEntry, str]], now: datetime
    ) -> None:
        """Replace the rows of a batch: delete the old versions, insert the new."""
        addresses = [entry.address for entry, _ in batch]
        for chunk in chunks(addresses, _DELETE_CHUNK):
            await conn.execute(delete(ENTRIES).where(ENTRIES.c.address.in_(chunk)))
        await conn.execute(insert(ENTRIES), [entry_to_row(e, s, now) for e, s in batch])

    async def get(self, address: str) -> DirectoryEntry | None:
        async with self.engine.connect() as conn:
            result = await conn.execute(select(ENTRIES).where(ENTRIES.c.address == address))
            row = result.first()
        return None if row is None else row_to_entry(row)

    async def local_entries(self) -> list[DirectoryEntry]:
        """Our own mailboxes as the replica holds them (what DIR-4 publishes)."""
        query = select(ENTRIES).where(ENTRIES.c.source == "local").order_by(ENTRIES.c.address)
        async with self.engine.connect() as conn:
            return [row_to_entry(r) for r in await conn.execute(query)]

    async def counts(self) -> dict[str, int]:
        """Rows per ``source/bal_type`` (e.g. ``national/PER``) and the total."""
        query = select(ENTRIES.c.source, ENTRIES.c.bal_type, func.count()).group_by(
            ENTRIES.c.source, ENTRIES.c.bal_type
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        counts = {f"{s}/{t}": int(n) for s, t, n in rows}
        counts["total"] = sum(counts.values())
        return counts


async def record_run(engine: AsyncEngine, report: SyncReport, watermark: str = "") -> None:
    """Store a sync report (whatever its status) in ``directory_sync_runs``."""
    data = report.as_dict()
    data["started_at"] = report.started_at
    data["invalid_details"] = json.dumps(report.invalid_details, ensure_ascii=False)
    data["watermark"] = watermark
    async with engine.begin() as conn:
        await conn.execute(insert(RUNS).values(**data))


async def last_runs(engine: AsyncEngine, limit: int = 5) -> list[dict[str, Any]]:
    """The newest reports first."""
    query = select(RUNS).order_by(RUNS.c.id.desc()).limit(limit)
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(query)]


async def last_watermark(engine: AsyncEngine, source_prefix: str) -> str:
    """The watermark of the newest applied run whose source starts with the prefix."""
    query = (
        select(RUNS.c.watermark)
        .where(RUNS.c.status == "applied", RUNS.c.source.startswith(source_prefix))
        .order_by(RUNS.c.id.desc())
        .limit(1)
    )
    async with engine.connect() as conn:
        found = (await conn.execute(query)).scalar()
    return found or ""
