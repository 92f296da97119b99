"""IMAP change notifications between nodes, through PostgreSQL LISTEN/NOTIFY.

Why: with several nodes on one PostgreSQL database, a message delivered on
node A must wake the IDLE sessions of node B at once (SPEC STORE-3: IDLE
pushes EXISTS), not when their client next sends a command (Thunderbird
re-issues IDLE only every 29 minutes).  Each node keeps its in-process
:class:`~mssgw.imap.notify.LocalChannel`; this bridge carries the same tiny
message, "folder F reached MODSEQ m", between nodes:

* the gateway (``App``) runs one bridge per node on PostgreSQL; after a local
  commit (a delivery on any listener, an IMAP change), the store's observers
  hand ``(F, m)`` to the bridge,
  which sends ``pg_notify('mssgw_folders', 'F:m')`` on its own connection
  (never holding up the reply that caused the change; notifications of the
  same folder waiting to be sent are merged: only the highest MODSEQ counts);
* the same connection LISTENs, and each notification is published to the
  local channel (a node also hears its own: the channel ignores a MODSEQ
  that is not higher than what it announced);
* PostgreSQL delivers a notification only once the sender's transaction is
  committed, and ours are sent after the change committed, so no session
  wakes up before the change is visible to it;
* when the connection is lost, notifications may have been missed: after
  reconnecting, every subscription is marked stale (``LocalChannel.poke_all``),
  so each selected session asks the store once what changed.  Sessions read
  changes by MODSEQ, so a lost, repeated or merged notification never shows a
  client anything out of order (see ``notify.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from mssgw.aio import cancel_and_wait
from mssgw.errors import brief
from mssgw.imap.notify import LocalChannel
from mssgw.text import is_digits

log = logging.getLogger(__name__)

CHANNEL = "mssgw_folders"
#: Seconds between attempts to (re)connect, doubling up to ``_MAX_BACKOFF``.
_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 30.0
#: Seconds without traffic after which the link is checked (a lost peer that
#: sent no FIN is noticed by the next query).
HEARTBEAT = 60.0
_NOTIFY = f"SELECT pg_notify('{CHANNEL}', payload) FROM unnest($1::text[]) AS payload"


def asyncpg_dsn(store_url: str) -> str:
    """The libpq-style DSN asyncpg wants, from the store's SQLAlchemy URL."""
    return make_url(store_url).set(drivername="postgresql").render_as_string(hide_password=False)


def parse(payload: str) -> tuple[int, int] | None:
    """``"F:m"`` → ``(F, m)``; None for anything else (never trusted blindly)."""
    folder, sep, modseq = payload.partition(":")
    if not sep or not is_digits(folder) or not is_digits(modseq):
        return None
    return int(folder), int(modseq)


class PostgresBridge:
    """One node's link to the others: a LISTEN connection that also sends."""

    def __init__(self, dsn: str, local: LocalChannel | None = None) -> None:
        self.dsn = dsn
        #: Where notifications from the nodes go: the IMAP service's channel,
        #: once this node serves IMAP (a node may only receive SMTP).
        self.local = local
        #: Folder → highest MODSEQ waiting to be sent.
        self._outbox: dict[int, int] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.sent = 0
        self.received = 0

    def begin(self) -> None:
        """Connect and listen in the background (reconnecting until stopped)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="mssgw-imap-pgnotify"
            )

    async def connected(self) -> None:
        """Wait until the link is up (tests; the daemon does not wait)."""
        await self._connected.wait()

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def publish(self, folder_id: int, modseq: int) -> None:
        """Observer of local commits: queue ``(folder, modseq)`` for the other nodes."""
        if modseq > self._outbox.get(folder_id, 0):
            self._outbox[folder_id] = modseq
        self._wakeup.set()

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        parsed = parse(payload)
        if parsed is None:
            log.warning("IMAP notifications: ignored a malformed payload on %s", CHANNEL)
            return
        self.received += 1
        if self.local is not None:
            self.local.publish(*parsed)

    async def _run(self) -> None:
        backoff = _FIRST_BACKOFF
        while True:
            try:
                conn = await asyncpg.connect(self.dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("IMAP notifications: cannot connect to PostgreSQL: %s", brief(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            try:
                # A connection closed by the server (restart, pg_terminate_backend)
                # must be noticed even by a node that has nothing to send.
                conn.add_termination_listener(lambda _conn: self._wakeup.set())
                await conn.add_listener(CHANNEL, self._on_notification)
                if self._connected.is_set() and self.local is not None:
                    self.local.poke_all()  # a reconnection: we may have missed some
                self._connected.set()
                backoff = _FIRST_BACKOFF
                await self._send_forever(conn)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("IMAP notifications: connection lost: %s", brief(exc))
            finally:
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)

    async def _send_forever(self, conn: Any) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), HEARTBEAT)
            self._wakeup.clear()
            if conn.is_closed():
                raise ConnectionError("closed by the server")
            if not self._outbox:
                # A silent network loss shows only when something is sent.
                await conn.execute("SELECT 1")
                continue
            batch, self._outbox = self._outbox, {}
            payloads = [f"{folder}:{modseq}" for folder, modseq in batch.items()]
            try:
                await conn.execute(_NOTIFY, payloads)
            except BaseException:
                for folder, modseq in batch.items():  # resend after reconnecting
                    self.publish(folder, modseq)
                raise
            self.sent += len(payloads)
