"""Content-addressed blob files: the immutable bytes of messages.

A blob is written to a file with no name yet, fsynced, given its SHA-256
name, and the folder holding that name is fsynced, so that once ``put``
returns the bytes survive a crash (SPEC STORE-2).  Identical bytes are stored
once.  Files are never modified once named: a name always designates
complete, fsynced bytes, which is what lets a second delivery of the same
bytes reuse it.

On Linux the unnamed file is an ``O_TMPFILE`` inode, linked into place with
``linkat``: bytes in memory (the usual, small message) are hashed first and
written straight into their shard folder, a stream into the root.  Nothing is
ever left behind by a crash (an unlinked inode is freed), and writers do not
all create and rename entries in one shared folder (whose updates, under
concurrent fsyncs, were the slow part of a small delivery).  Elsewhere, or on
a file system without ``O_TMPFILE``, the file is created in ``root/tmp`` and
renamed into place; the collector (``gc.py``) removes stale leftovers there.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import itertools
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from mssgw.errors import StoreError

CHUNK = 1 << 16
_BLOB_ID = re.compile(r"[0-9a-f]{64}\Z")
#: Temporary file names: unique in this process; O_EXCL catches the leftovers
#: of an earlier process that had the same pid.
_TMP_NAMES = itertools.count()
#: ``O_TMPFILE`` and the ``/proc/self/fd`` link needed to name such a file.
_ANONYMOUS = bool(getattr(os, "O_TMPFILE", 0)) and os.path.isdir("/proc/self/fd")
#: errno values saying the file system (or kernel) has no ``O_TMPFILE``.
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})


#: ``dst_dir_fd`` for ``os.link`` (paths are absolute, so it is not used for
#: them): any directory fd makes CPython call ``linkat`` with
#: ``AT_SYMLINK_FOLLOW``, which names the inode behind ``/proc/self/fd/N``.
_ROOT_FD = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if _ANONYMOUS else -1


class _Unsupported(Exception):
    """Internal: ``O_TMPFILE`` is not available here; use a named temporary file."""


@dataclass(frozen=True)
class BlobRef:
    """What the database records about a blob.

    ``data``: the bytes themselves when they are kept in the database row
    (``mssgw.store.content``) rather than in a file.
    """

    id: str
    size: int
    data: bytes | None = field(default=None, repr=False, compare=False)


class BlobStore:
    """Blob files under one root, sharded by the first two hex digits."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._root = str(root)
        self._tmp = os.path.join(self._root, "tmp")
        #: Unnamed files (``O_TMPFILE``) are used until the file system refuses one.
        self.anonymous = _ANONYMOUS

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
        """Write, fsync, name; fsync the folder holding the name.

        With ``sync_dir=False`` the caller takes on fsyncing ``path(id).parent``
        before relying on the file.
        """
        if self.anonymous:
            try:
                return self._put_anonymous(data, sync_dir)
            except _Unsupported:  # raised before any byte was read
                self.anonymous = False
        return self._put_renamed(data, sync_dir)

    def _put_anonymous(self, data: bytes | BinaryIO, sync_dir: bool) -> BlobRef:
        """``O_TMPFILE`` in the shard (bytes: hashed first) or the root (a stream)."""
        if isinstance(data, bytes):
            blob_id, size = hashlib.sha256(data).hexdigest(), len(data)
            final = self._path(blob_id)
            if os.path.exists(final):  # named files are complete: reuse it
                return self._reuse(final, blob_id, size, sync_dir)
            fd = self._unnamed(os.path.dirname(final))
        else:
            fd = self._unnamed(self._root)
        try:
            if isinstance(data, bytes):
                _write_synced(fd, [data], None)
            else:
                digest = hashlib.sha256()
                size = _write_synced(fd, _read_chunks(data), digest)
                blob_id = digest.hexdigest()
                final = self._path(blob_id)
            try:
                # linkat(AT_SYMLINK_FOLLOW) on the /proc link names the open inode.
                os.link(f"/proc/self/fd/{fd}", final, dst_dir_fd=_ROOT_FD)
            except FileNotFoundError:  # a stream's first blob of this shard
                self._make_shard(os.path.dirname(final))
                os.link(f"/proc/self/fd/{fd}", final, dst_dir_fd=_ROOT_FD)
            except FileExistsError:  # the same bytes, named meanwhile (another thread)
                return self._reuse(final, blob_id, size, sync_dir)
            if sync_dir:
                _fsync_dir(os.path.dirname(final))
            return BlobRef(blob_id, size)
        except OSError as exc:
            raise StoreError(f"{self.root}: cannot write message file: {exc.strerror}") from exc
        finally:
            os.close(fd)

    def _unnamed(self, folder: str) -> int:
        """An ``O_TMPFILE`` file in ``folder`` (a shard is created on first use)."""
        flags = os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC
        try:
            try:
                return os.open(folder, flags, 0o600)
            except FileNotFoundError:
                self._make_shard(folder)
                return os.open(folder, flags, 0o600)
        except OSError as exc:
            if exc.errno in _NO_TMPFILE:
                raise _Unsupported from exc
            raise StoreError(f"{folder}: cannot write message file: {exc.strerror}") from exc

    def _reuse(self, final: str, blob_id: str, size: int, sync_dir: bool) -> BlobRef:
        try:
            # Touch it so the garbage collector's grace period protects it again.
            os.utime(final)
            if sync_dir:  # its writer (another thread) may not have synced the folder yet
                _fsync_dir(os.path.dirname(final))
        except OSError as exc:
            raise StoreError(f"{self.root}: cannot write message file: {exc.strerror}") from exc
        return BlobRef(blob_id, size)

    def _put_renamed(self, data: bytes | BinaryIO, sync_dir: bool) -> BlobRef:
        """A named temporary file in ``root/tmp``, fsynced, renamed into place."""
        chunks: Iterable[bytes] = [data] if isinstance(data, bytes) else _read_chunks(data)
        try:
            fd, tmp_name = self._temporary()
        except OSError as exc:
            raise StoreError(f"{self._tmp}: cannot write message file: {exc.strerror}") from exc
        try:
            digest = hashlib.sha256()
            try:
                size = _write_synced(fd, chunks, digest)
            finally:
                os.close(fd)
            blob_id = digest.hexdigest()
            final = self._path(blob_id)
            if os.path.exists(final):
                os.unlink(tmp_name)
                return self._reuse(final, blob_id, size, sync_dir)
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
            # A str path: building a Path costs more than opening the file (IMAP FETCH
            # opens one per message).
            return open(self._path(blob_id), "rb")  # the caller closes it
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


def _write_synced(fd: int, chunks: Iterable[bytes], digest: hashlib._Hash | None) -> int:
    """Write every chunk to ``fd`` (feeding ``digest``, if any) and fsync it; return the size."""
    size = 0
    for chunk in chunks:
        if digest is not None:
            digest.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view):]
        size += len(chunk)
    os.fsync(fd)
    return size


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
