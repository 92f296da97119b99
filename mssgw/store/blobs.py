"""Content-addressed blob files: the immutable bytes of messages.

A blob is written to a temporary file in the target directory, fsynced,
renamed to its SHA-256 name, and the directory is fsynced, so that once
``put`` returns the bytes survive a crash (SPEC STORE-2).  Identical bytes
are stored once.  Files are never modified after the rename.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mssgw.errors import StoreError

CHUNK = 1 << 16


@dataclass(frozen=True)
class BlobRef:
    """What the database records about a blob."""

    id: str
    size: int


class BlobStore:
    """Blob files under one root, sharded by the first two hex digits."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, blob_id: str) -> Path:
        if len(blob_id) != 64 or not all(c in "0123456789abcdef" for c in blob_id):
            raise StoreError(f"invalid blob id {blob_id!r}")
        return self.root / blob_id[:2] / blob_id

    def ensure_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.root}: cannot create blob folder: {exc.strerror}") from None

    async def put(self, data: bytes | BinaryIO) -> BlobRef:
        """Store bytes (or a readable binary file) durably; return its reference."""
        return await asyncio.to_thread(self.put_sync, data)

    def put_sync(self, data: bytes | BinaryIO, *, sync_dir: bool = True) -> BlobRef:
        """Write, fsync, rename into place.

        With ``sync_dir=False`` the caller takes on fsyncing ``path(id).parent``
        before relying on the file (the group committer does it once for a
        whole batch).
        """
        chunks: Iterable[bytes] = [data] if isinstance(data, bytes) else _read_chunks(data)
        tmp_dir = self.root / "tmp"
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix="in-")
        except OSError as exc:
            raise StoreError(f"{tmp_dir}: cannot write message file: {exc.strerror}") from exc
        try:
            digest, size = _write_all(fd, chunks)
            blob_id = digest.hexdigest()
            final = self.path(blob_id)
            if final.exists():
                os.unlink(tmp_name)
                # Touch it so the garbage collector's grace period protects it again.
                os.utime(final)
                return BlobRef(blob_id, size)
            final.parent.mkdir(exist_ok=True)
            os.rename(tmp_name, final)
            if sync_dir:
                _fsync_dir(final.parent)
            return BlobRef(blob_id, size)
        except OSError as exc:
            _unlink_quietly(tmp_name)
            raise StoreError(f"{self.root}: cannot write message file: {exc.strerror}") from exc
        except BaseException:
            _unlink_quietly(tmp_name)
            raise

    def open(self, blob_id: str) -> BinaryIO:
        try:
            return self.path(blob_id).open("rb")
        except FileNotFoundError:
            raise StoreError(f"blob {blob_id} is missing from {self.root}") from None

    def read(self, blob_id: str) -> bytes:
        with self.open(blob_id) as f:
            return f.read()

    def exists(self, blob_id: str) -> bool:
        return self.path(blob_id).exists()

    def remove(self, blob_id: str) -> None:
        _unlink_quietly(str(self.path(blob_id)))

    def iter_ids(self) -> Iterator[tuple[str, float]]:
        """Every blob on disk with its modification time (for garbage collection)."""
        if not self.root.exists():
            return
        for shard in sorted(self.root.iterdir()):
            if len(shard.name) != 2 or not shard.is_dir():
                continue
            for entry in os.scandir(shard):
                if len(entry.name) == 64:
                    yield entry.name, entry.stat().st_mtime

    def iter_temp(self) -> Iterator[tuple[Path, float]]:
        tmp = self.root / "tmp"
        if tmp.exists():
            for entry in os.scandir(tmp):
                yield Path(entry.path), entry.stat().st_mtime


def _read_chunks(f: BinaryIO) -> Iterator[bytes]:
    while chunk := f.read(CHUNK):
        yield chunk


def _write_all(fd: int, chunks: Iterable[bytes]) -> tuple[hashlib._Hash, int]:
    digest = hashlib.sha256()
    size = 0
    with os.fdopen(fd, "wb", closefd=True) as out:
        for chunk in chunks:
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest, size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass
