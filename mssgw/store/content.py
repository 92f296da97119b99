"""A message's octets, wherever they are kept.

A small message (up to ``store.inline_max`` octets) is kept in its blob row
(``blobs.data``), inserted by the very transaction that files the message:
its bytes become durable with the one fsync of that COMMIT (SPEC STORE-2)
instead of three in series (the file, the folder entry naming it, then the
database log).  A larger one, or one streamed from disk, is a file of the
blob folder (``blobs.BlobStore``) and its row's ``data`` is NULL.

Readers never assume either: they ask here, which looks for inline bytes
first and falls back to the file.  Changing ``inline_max`` therefore only
affects new messages.  Identical bytes are still stored once: the same
SHA-256 names the row whether the bytes are inline or a file, and a small
message delivered again fills ``data`` of a row that had only a file.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from sqlalchemy import Connection

from mssgw.store.blobs import BlobStore

if TYPE_CHECKING:
    from mssgw.store import Store

K = TypeVar("K")
#: Ids asked for in one statement at most; lists are padded to a power of two
#: (repeating the first id) so that only a few statement texts exist per dialect.
_CHUNK = 256


def inline_bytes(conn: Connection, blob_ids: Sequence[str]) -> dict[str, bytes]:
    """The inline bytes of those of ``blob_ids`` that have them (one query per 256)."""
    from mssgw.store.delivery import hot_sql

    hot = hot_sql(conn.dialect)
    found: dict[str, bytes] = {}
    for start in range(0, len(blob_ids), _CHUNK):
        chunk = list(blob_ids[start : start + _CHUNK])
        width = 1 << (len(chunk) - 1).bit_length()
        chunk += chunk[:1] * (width - len(chunk))
        marks = ", ".join("?" * width)
        sql = hot.sql(f"SELECT id, data FROM blobs WHERE id IN ({marks}) AND data IS NOT NULL")
        for blob_id, data in hot.execute(conn, sql, chunk).fetchall():
            found[blob_id] = bytes(data)
    return found


def read_many(
    conn: Connection, blobs: BlobStore, wanted: Mapping[K, tuple[str, int | None]]
) -> dict[K, bytes]:
    """For each key, the octets of its blob: all of them, or only the first ``limit``.

    Blocking (files are read here): call it in a worker thread, e.g. inside
    ``Store.reading``.
    """
    inline = inline_bytes(conn, list(dict.fromkeys(b for b, _ in wanted.values())))
    out: dict[K, bytes] = {}
    for key, (blob_id, limit) in wanted.items():
        data = inline.get(blob_id)
        if data is not None:
            out[key] = data if limit is None else data[:limit]
            continue
        with blobs.open(blob_id) as f:
            out[key] = f.read() if limit is None else f.read(limit)
    return out


class Contents:
    """The store's asynchronous readers of message octets."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def inline(self, blob_id: str) -> bytes | None:
        """The blob's bytes if they are kept in the database, else None (a file)."""
        found = await self.store.reading(lambda conn: inline_bytes(conn, [blob_id]))
        return found.get(blob_id)

    async def read(self, blob_ids: Iterable[str]) -> dict[str, bytes]:
        """The whole octets of each blob (files are read in a worker thread)."""
        ids = list(dict.fromkeys(blob_ids))
        if not ids:
            return {}
        found = await self.store.reading(lambda conn: inline_bytes(conn, ids))
        rest = [b for b in ids if b not in found]
        if rest:
            blobs = self.store.blobs
            found.update(await asyncio.to_thread(lambda: {b: blobs.read(b) for b in rest}))
        return found

    async def read_one(self, blob_id: str) -> bytes:
        return (await self.read([blob_id]))[blob_id]

    async def open(self, blob_id: str) -> BinaryIO:
        """A readable file of the octets: in memory if inline, else the blob's file."""
        data = await self.inline(blob_id)
        if data is not None:
            return io.BytesIO(data)
        return await asyncio.to_thread(self.store.blobs.open, blob_id)
