"""The asyncio driver of IMAP connections: bytes ⇄ reader ⇄ session.

Everything protocol-shaped is elsewhere (``protocol/`` reads and writes,
``session`` decides); this module owns the socket and time:

* limits: line length and literal size (in the reader; APPENDLIMIT is
  advertised), connections in all / per client address (here) and per
  identity (at authentication), inactivity (autologout after
  ``idle_timeout``; ``command_timeout`` for the rest of a started command);
* TLS: implicit on 993, STARTTLS on 143 with ``LOGINDISABLED`` and no
  ``AUTH=`` before it; bytes pipelined after STARTTLS are refused (they were
  sent in clear, RFC 2595 §3.1 / RFC 3207 §4.2 reasoning);
* IDLE: wait for DONE, a change notification, or the keep-alive timer;
* large literals are spooled to temporary files, never held in memory.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import logging
import ssl
import tempfile
from typing import IO, Any, cast

from mssgw.imap.commands import idle as idle_cmd
from mssgw.imap.protocol import (
    NEED_DATA,
    CommandReader,
    IdleDone,
    ImapProtocolError,
    LiteralData,
    LiteralEnd,
    LiteralStart,
    NeedContinuation,
    SaslResponse,
    writer,
)
from mssgw.imap.protocol.commands import Command
from mssgw.imap.service import ImapService
from mssgw.imap.session import Action, Connection, Session
from mssgw.tls import transport as _tls_transport  # noqa: F401  (installs the TLS protocol)
from mssgw.tls.context import verified_peer

log = logging.getLogger(__name__)

#: Reading stops while this much received data waits for the handler (a
#: large literal arriving faster than it is spooled), and resumes below
#: ``RESUME_READING``.
PAUSE_READING = 256 * 1024
RESUME_READING = 64 * 1024
#: After a fatal error, input is discarded until none came for LINGER_QUIET
#: seconds, at most LINGER_MAX seconds.
LINGER_QUIET = 0.2
LINGER_MAX = 5.0
#: Response chunks are joined up to this size before they reach the transport:
#: under TLS every ``write`` is at least one TLS record and one ``send``, and a
#: FETCH answer is made of many small chunks.  Larger chunks (bodies) pass as
#: they are, never copied.
COALESCE = 64 * 1024

class ImapConnection(asyncio.Protocol):
    """One client connection: transport callbacks feed the reader; a task runs
    only while there are events to handle.

    An idle connection (between commands, or in IDLE) holds no task, stream or
    future: the reader, the session, one timer and the transport.  The timer is
    lazy: it is moved only when it must fire sooner, and when it fires early it
    looks at the deadline and sleeps again.
    """

    __slots__ = (
        "closed",
        "connection",
        "counted",
        "current_spool",
        "deadline",
        "drain_waiter",
        "eof",
        "finished",
        "idle_since",
        "implicit_tls",
        "key",
        "linger_until",
        "lost",
        "reader",
        "reading_paused",
        "service",
        "session",
        "spools",
        "task",
        "timer",
        "transport",
        "writing_paused",
    )

    def __init__(self, service: ImapService, *, implicit_tls: bool) -> None:
        self.service = service
        self.implicit_tls = implicit_tls
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.drain_waiter: asyncio.Future[None] | None = None
        self.spools: dict[int, IO[bytes]] = {}
        self.current_spool: IO[bytes] | None = None
        self.deadline = 0.0
        self.idle_since = 0.0
        #: After a fatal protocol error: discard input until it stops (or until
        #: this time) before closing, so the client reads the BYE instead of a
        #: reset (closing a socket with unread data sends RST).
        self.linger_until = 0.0
        self.key = ""
        self.counted = False
        #: No more commands are read (BYE sent, LOGOUT, fatal error, or lost).
        self.closed = False
        self.lost = False
        self.eof = False
        self.finished = False
        self.reading_paused = False
        self.writing_paused = False

    # -- transport callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        service, limits = self.service, self.service.limits
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if peer else None
        self.key = key = ip or "unknown"
        self.connection = Connection(ip=ip, tls=self.implicit_tls, starttls=not self.implicit_tls)
        self.session = Session(service, self.connection, drain=self.flush, wake=self._wake)
        self.reader = self._new_reader()
        full = service.connections >= limits.max_connections
        if full or service.per_ip[key] >= limits.max_per_ip:
            transport.write(writer.bye("too many connections, try again later"))
            self.closed = True
            self._finish()
            return
        service.connections += 1
        service.per_ip[key] += 1
        self.counted = True
        if self.implicit_tls:
            self._tls_info()
        self.session.send(self.session.greeting())
        self._write_out()
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            if self.linger_until:
                now = asyncio.get_running_loop().time()
                self.deadline = min(now + LINGER_QUIET, self.linger_until)
            return
        self.reader.feed(data)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run())
        elif not self.reading_paused and self.reader.buffered > PAUSE_READING:
            self.reading_paused = True
            cast(asyncio.Transport, self.transport).pause_reading()

    def eof_received(self) -> bool:
        # Plain TCP: answer what was pipelined before the FIN, then close (under
        # TLS asyncio closes anyway: the client's close_notify ends the session).
        self.eof = True
        if self.task is None or self.connection.tls:
            self.closed = True
            if self.task is None:
                self._finish()
            return False
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.debug("IMAP connection from %s ended: %s", self.key, type(exc).__name__)
        self.lost = self.closed = True
        self._wake_writer()
        if self.task is None:
            self._finish()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_writer()

    def _wake_writer(self) -> None:
        waiter, self.drain_waiter = self.drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _new_reader(self) -> CommandReader:
        limits = self.service.limits
        return CommandReader(
            max_line_length=limits.max_line_length,
            max_literal_size=limits.max_literal,
            spool_threshold=limits.spool_threshold,
        )

    # -- output ----------------------------------------------------------------------------

    def _write_out(self) -> None:
        chunks = self.session.take_output()
        if not chunks or self.lost:
            return
        transport = cast(asyncio.Transport, self.transport)
        if len(chunks) == 1:
            transport.write(chunks[0])
        else:
            transport.writelines(coalesce(chunks))

    async def flush(self) -> None:
        """Send the session's output; wait while the transport's buffer is full."""
        self._write_out()
        while self.writing_paused and not self.lost:
            waiter = self.drain_waiter = asyncio.get_running_loop().create_future()
            await waiter
        if self.lost:
            raise ConnectionResetError("connection lost")

    # -- timers ------------------------------------------------------------------------------

    def _arm(self) -> None:
        """Between commands: autologout after ``idle_timeout`` (``command_timeout``
        inside a started command); in IDLE, the keep-alive or the IDLE limit."""
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        limits = self.service.limits
        now = loop.time()
        if self.session.idle_tag is not None:
            end = self.idle_since + limits.idle_timeout
            delay = max(0.0, min(limits.keepalive, end - now))
        elif self.reader.in_command:
            delay = limits.command_timeout
        else:
            delay = limits.idle_timeout
        self.deadline = now + delay
        timer = self.timer
        if timer is None or timer.when() > self.deadline:
            if timer is not None:
                timer.cancel()
            self.timer = loop.call_at(self.deadline, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        if self.finished or self.task is not None:
            return  # a running task re-arms when it ends
        loop = asyncio.get_running_loop()
        if loop.time() < self.deadline:
            self.timer = loop.call_at(self.deadline, self._on_timer)
            return
        if self.closed:  # lingering is over
            self._finish()
            return
        limits = self.service.limits
        if self.session.idle_tag is None:
            self.session.send(writer.bye("autologout: idle for too long"))
        elif loop.time() >= self.idle_since + limits.idle_timeout:
            self.session.send(writer.bye("IDLE for too long, reconnect"))
        else:
            idle_cmd.keepalive(self.session)
            self._write_out()
            self._arm()
            return
        self._write_out()
        self.closed = True
        self._finish()

    def _wake(self) -> None:
        """The selected folder changed: during IDLE, tell the client now."""
        if self.task is None and not self.closed and self.session.idle_tag is not None:
            self.task = asyncio.get_running_loop().create_task(self._run())

    # -- handling ----------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._process()
            session = self.session
            while not self.closed and session.idle_tag is not None and session.behind:
                await idle_cmd.changed(session)
                await self.flush()
        except (ConnectionError, ssl.SSLError) as exc:
            log.debug("IMAP connection from %s ended: %s", self.key, type(exc).__name__)
            self.closed = True
        except Exception:
            log.exception("IMAP connection from %s failed", self.key)
            self.closed = True
        finally:
            self.task = None
        if self.linger_until and not self.lost:
            loop = asyncio.get_running_loop()
            self.deadline = loop.time() + LINGER_QUIET
            if self.timer is not None:
                self.timer.cancel()
            self.timer = loop.call_at(self.deadline, self._on_timer)
            return
        if self.closed or self.eof:
            self.closed = True
            self._finish()
            return
        if self.reading_paused:
            self.reading_paused = False
            cast(asyncio.Transport, self.transport).resume_reading()
        self._arm()

    async def _process(self) -> None:
        """Handle every complete event the reader has."""
        session = self.session
        while not self.closed:
            try:
                event = self.reader.next_event()
            except ImapProtocolError as err:
                self._drop_spools()
                session.send(writer.error_response(err))
                await self.flush()
                if err.fatal:
                    self.closed = True
                    self.linger_until = asyncio.get_running_loop().time() + LINGER_MAX
                continue
            if event is NEED_DATA:
                return
            action: Action | None = None
            tag = ""
            if isinstance(event, Command):
                tag = event.tag
                if self.spools:
                    session.literal_files = cast(dict[int, Any], self.spools)
                    self.spools = {}
                try:
                    action = await session.handle(event)
                finally:
                    if session.literal_files:
                        for f in session.literal_files.values():
                            f.close()
                        session.literal_files = {}
            elif isinstance(event, NeedContinuation):
                session.send(writer.continuation("Ready for literal data"))
            elif isinstance(event, LiteralStart):
                spool = tempfile.TemporaryFile(prefix="mssgw-append-")  # noqa: SIM115 - closed after the command
                self.spools[event.index] = spool
                self.current_spool = spool
            elif isinstance(event, LiteralData):
                if self.current_spool is not None:
                    await asyncio.to_thread(self.current_spool.write, event.data)
                if self.reading_paused and self.reader.buffered < RESUME_READING:
                    self.reading_paused = False
                    cast(asyncio.Transport, self.transport).resume_reading()
            elif isinstance(event, LiteralEnd):
                self.current_spool = None
            elif isinstance(event, IdleDone):
                await idle_cmd.done(session, event.tag)
            elif isinstance(event, SaslResponse):
                tag = event.tag
                action = await session.handle(event)
            await self.flush()
            if action is not None:
                await self._act(action, tag)

    async def _act(self, action: Action, tag: str) -> None:
        if action is Action.CLOSE:
            self.closed = True
        elif action is Action.SASL_CHALLENGE:
            self.reader.expect_sasl_response(tag)
        elif action is Action.IDLE:
            self.reader.start_idle(tag)
            self.idle_since = asyncio.get_running_loop().time()
        elif action is Action.STARTTLS:
            await self._starttls()

    async def _starttls(self) -> None:
        trust = self.service.trust
        if trust is None or self.reader.buffered:
            # Commands sent in clear after STARTTLS could be an injection.
            self.session.send(writer.bye("no pipelining after STARTTLS"))
            await self.flush()
            self.closed = True
            return
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(
                cast(asyncio.Transport, self.transport),
                self,
                trust.client_tls.current,
                server_side=True,
            )
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            log.info("IMAP STARTTLS from %s failed: %s", self.connection.ip, exc)
            self.closed = True
            return
        if transport is None or self.lost:
            self.closed = True
            return
        self.transport = transport
        self.reader = self._new_reader()
        self.connection.tls = True
        self._tls_info()

    def _tls_info(self) -> None:
        obj = cast(asyncio.Transport, self.transport).get_extra_info("ssl_object")
        if obj is None:
            return
        cipher = obj.cipher()
        self.connection.tls_description = f"{obj.version()} {cipher[0] if cipher else ''}".strip()
        trust = self.service.trust
        if trust is not None:
            self.connection.peer_chain = lambda: verified_peer(obj, trust.anchors, trust.crls)

    def _drop_spools(self) -> None:
        for f in self.spools.values():
            f.close()
        self.spools.clear()
        self.current_spool = None

    def _finish(self) -> None:
        """Once, however the connection ends: release everything it counted."""
        if self.finished:
            return
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._drop_spools()
        self.session.close()
        if self.counted:
            service = self.service
            service.connections -= 1
            service.per_ip[self.key] -= 1
            if service.per_ip[self.key] <= 0:
                del service.per_ip[self.key]
        if self.transport is not None:
            self.transport.close()


def coalesce(chunks: list[bytes]) -> list[bytes]:
    """``chunks`` with runs of small ones joined (up to :data:`COALESCE` octets)."""
    out: list[bytes] = []
    run: list[bytes] = []
    size = 0
    for chunk in chunks:
        if len(chunk) >= COALESCE:
            if run:
                out.append(b"".join(run))
                run, size = [], 0
            out.append(chunk)
            continue
        run.append(chunk)
        size += len(chunk)
        if size >= COALESCE:
            out.append(b"".join(run))
            run, size = [], 0
    if run:
        out.append(b"".join(run))
    return out
