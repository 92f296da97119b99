"""IMAP change notifications between the worker processes of one gateway.

Why: with ``gateway.workers`` > 1 on SQLite, Thunderbird's connections land in
different processes; a message delivered (or a flag changed) in worker 1 must
wake an IDLE session of worker 0 at once (SPEC STORE-3), as the in-process
:class:`~mssgw.imap.notify.LocalChannel` does within one process.  On
PostgreSQL every worker is a node and :mod:`mssgw.imap.pgnotify` already does
this; SQLite has no LISTEN/NOTIFY, so the workers tell each other directly.

How: each worker binds a Unix datagram socket ``<run_dir>/imap-<index>.sock``
(the folder is ``0700``, the gateway's own).  After a local commit the store's
observers hand ``(folder, modseq)`` here; on the next turn of the event loop
the pending changes, merged per folder (only the highest MODSEQ counts), are
sent to every sibling as ``b"F:m F:m ..."``; a received datagram is published
to the local channel.  The bridge carries the same message as the PostgreSQL
one, with the same guarantees:

* the notice is sent after the commit, so no session wakes before the change
  is visible to it;
* nothing received is trusted blindly: a malformed token is ignored, and a
  notice only makes a session ask the store what changed since its MODSEQ, so
  a repeated, merged or forged notice never shows a client anything wrong;
* a sibling whose receive queue is full keeps its pending notices, retried
  shortly (never dropped); a sibling that is not running (restarting) has no
  sessions to wake, so its notices are dropped, and a restarted worker starts
  with no selected folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
from pathlib import Path

from mssgw.imap.notify import LocalChannel
from mssgw.imap.pgnotify import parse

log = logging.getLogger(__name__)

#: Tokens per datagram (each at most ~40 octets): far below the socket's buffer.
MAX_TOKENS = 256
#: Seconds before sending again to a sibling whose receive queue was full.
RETRY_DELAY = 0.005
#: Octets read per datagram (a batch of MAX_TOKENS fits).
_RECV_SIZE = 65536


def socket_path(run_dir: Path, index: int) -> Path:
    return run_dir / f"imap-{index}.sock"


def _chunks(changes: dict[int, int]) -> list[dict[int, int]]:
    """``changes`` cut into pieces of at most ``MAX_TOKENS`` folders (one datagram each)."""
    items = iter(changes.items())
    return [dict(chunk) for chunk in iter(lambda: list(itertools.islice(items, MAX_TOKENS)), [])]


def _datagram(chunk: dict[int, int]) -> bytes:
    return b" ".join(b"%d:%d" % item for item in chunk.items())


def encode(changes: dict[int, int]) -> list[bytes]:
    """``{F: m}`` → datagrams of at most ``MAX_TOKENS`` ``F:m`` tokens each."""
    return [_datagram(chunk) for chunk in _chunks(changes)]


def decode(datagram: bytes) -> tuple[list[tuple[int, int]], int]:
    """A datagram → its well-formed ``(F, m)`` pairs and how many tokens were not."""
    pairs: list[tuple[int, int]] = []
    bad = 0
    for token in datagram.split():
        parsed = parse(token.decode("ascii", "replace"))
        if parsed is None:
            bad += 1
        else:
            pairs.append(parsed)
    return pairs, bad


class SiblingBridge:
    """One worker's link to the other workers of the same gateway."""

    def __init__(
        self, run_dir: Path, index: int, count: int, local: LocalChannel | None = None
    ) -> None:
        self.run_dir = run_dir
        self.index = index
        self.count = count
        #: The IMAP service's channel once this worker serves IMAP.
        self.local = local
        #: Sibling index → folder → highest MODSEQ waiting to be sent there.
        self._outbox: dict[int, dict[int, int]] = {}
        self._sock: socket.socket | None = None
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent = 0
        self.received = 0
        self.dropped = 0

    @property
    def siblings(self) -> list[int]:
        return [i for i in range(self.count) if i != self.index]

    def begin(self) -> None:
        """Bind this worker's socket and start reading (replacing a stale one)."""
        if self._sock is not None:
            return
        self._loop = asyncio.get_running_loop()
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.run_dir, 0o700)
        path = socket_path(self.run_dir, self.index)
        path.unlink(missing_ok=True)  # left by a worker that died
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(str(path))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._on_readable)

    async def connected(self) -> None:
        """Nothing to wait for (same interface as the PostgreSQL bridge)."""

    async def stop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
        sock.close()
        with contextlib.suppress(OSError):
            socket_path(self.run_dir, self.index).unlink()

    def publish(self, folder_id: int, modseq: int) -> None:
        """Observer of local commits: queue ``(folder, modseq)`` for every sibling."""
        for sibling in self.siblings:
            box = self._outbox.setdefault(sibling, {})
            if modseq > box.get(folder_id, 0):
                box[folder_id] = modseq
        self._schedule(0.0)

    def _schedule(self, delay: float) -> None:
        if self._flush_scheduled or self._sock is None or self._loop is None:
            return
        self._flush_scheduled = True
        if delay:
            self._loop.call_later(delay, self._flush)
        else:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        sock = self._sock
        if sock is None:
            return
        for sibling, box in list(self._outbox.items()):
            if self._send_to(sock, sibling, box):
                del self._outbox[sibling]
        if self._outbox:
            self._schedule(RETRY_DELAY)

    def _send_to(self, sock: socket.socket, sibling: int, box: dict[int, int]) -> bool:
        """Send ``box`` to ``sibling``, removing what was sent from it; False to
        try the rest later (its receive queue is full)."""
        target = str(socket_path(self.run_dir, sibling))
        for chunk in _chunks(box):
            try:
                sock.sendto(_datagram(chunk), target)
            except BlockingIOError:
                return False
            except (FileNotFoundError, ConnectionRefusedError):
                self.dropped += 1  # not running: no session there to wake
                return True
            except OSError as exc:
                log.warning("IMAP notifications to worker %d: %s", sibling, exc.strerror)
                self.dropped += 1
                return True
            self.sent += 1
            for folder_id in chunk:
                del box[folder_id]
        return True

    def _on_readable(self) -> None:
        sock = self._sock
        while sock is not None:
            try:
                datagram = sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("IMAP notifications from the other workers: %s", exc.strerror)
                return
            pairs, bad = decode(datagram)
            if bad:
                log.warning("IMAP notifications: ignored %d malformed token(s)", bad)
            self.received += len(pairs)
            if self.local is not None:
                for folder_id, modseq in pairs:
                    self.local.publish(folder_id, modseq)
