"""Content-addressed blob files: the immutable bytes of messages.

A blob is written to a temporary file in the target directory, fsynced,
renamed to its SHA-256 name, and the directory is fsynced, so that once
``put`` returns the bytes survive a crash (SPEC STORE-2).  Identical bytes
are stored once.  Files are never modified after the rename.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mssgw.errors import StoreError

CHUNK = 1 << 16
_BLOB_ID = re.compile(r"[0-9a-f]{64}\Z")
#: Temporary file names: unique in this process; O_EXCL catches the leftovers
#: of an earlier process that had the same pid.
_TMP_NAMES = itertools.count()


@dataclass(frozen=True)
class BlobRef:
    """What the database records about a blob."""

    id: str
    size: int


class BlobStore:
    """Blob files under one root, sharded by the first two hex digits."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._root = str(root)
        self._tmp = os.path.join(self._root, "tmp")

    def path(self, blob_id: str) -> Path:
        return Path(self._path(blob_id))

    def _path(self, blob_id: str) -> str:
        if not _BLOB_ID.match(blob_id):
            raise StoreError(f"invalid blob id {blob_id!r}")
        return f"{self._root}/{blob_id[:2]}/{blob_id}"

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
        before relying on the file.
        """
        chunks: Iterable[bytes] = [data] if isinstance(data, bytes) else _read_chunks(data)
        try:
            fd, tmp_name = self._temporary()
        except OSError as exc:
            raise StoreError(f"{self._tmp}: cannot write message file: {exc.strerror}") from exc
        try:
            digest, size = _write_all(fd, chunks)
            blob_id = digest.hexdigest()
            final = self._path(blob_id)
            if os.path.exists(final):
                os.unlink(tmp_name)
                # Touch it so the garbage collector's grace period protects it again.
                os.utime(final)
                if sync_dir:  # its writer (another thread) may not have synced it yet
                    _fsync_dir(os.path.dirname(final))
                return BlobRef(blob_id, size)
            try:
                os.rename(tmp_name, final)
            except FileNotFoundError:  # first blob of this shard
                self._make_shard(os.path.dirname(final))
                os.rename(tmp_name, final)
            if sync_dir:
                _fsync_dir(os.path.dirname(final))
            return BlobRef(blob_id, size)
        except OSError as exc:
            _unlink_quietly(tmp_name)
            raise StoreError(f"{self.root}: cannot write message file: {exc.strerror}") from exc
        except BaseException:
            _unlink_quietly(tmp_name)
            raise

    def _temporary(self) -> tuple[int, str]:
        """A new file in ``root/tmp`` (created on first use), open for writing."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        prefix = f"{self._tmp}/in-{os.getpid()}-"
        while True:
            name = f"{prefix}{next(_TMP_NAMES)}"
            try:
                return os.open(name, flags, 0o600), name
            except FileExistsError:
                continue
            except FileNotFoundError:
                os.makedirs(self._tmp, exist_ok=True)
                return os.open(name, flags, 0o600), name

    def _make_shard(self, shard: str) -> None:
        """Create a shard folder, durably: its entry in the root is fsynced at once."""
        try:
            os.mkdir(shard)
        except FileExistsError:
            return
        _fsync_dir(self.root)

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
    """Write every chunk to ``fd``, fsync and close it; return the digest and size."""
    digest = hashlib.sha256()
    size = 0
    try:
        for chunk in chunks:
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
            size += len(chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest, size


def _fsync_dir(path: str | Path) -> None:
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
