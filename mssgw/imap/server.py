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
import contextlib
import logging
import ssl
import tempfile
import threading
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
from mssgw.tls.context import verified_peer

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
#: Response chunks are joined up to this size before they reach the transport:
#: under TLS every ``write`` is at least one TLS record and one ``send``, and a
#: FETCH answer is made of many small chunks.  Larger chunks (bodies) pass as
#: they are, never copied.
COALESCE = 64 * 1024

#: asyncio's TLS transport gives every connection a 256 KiB read buffer
#: (``SSLProtocol.max_size``), which alone would cost 256 KiB per idle IMAP
#: connection.  A TLS record carries at most 16 KiB of data, so 32 KiB reads
#: lose nothing; this is process-wide (it also helps SMTP) and harmless.
TLS_READ_BUFFER = 32 * 1024
if getattr(asyncio.sslproto.SSLProtocol, "max_size", 0) > TLS_READ_BUFFER:
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


class _SharedBufferSSLProtocol(asyncio.sslproto.SSLProtocol):
    """asyncio's TLS protocol, with one receive buffer per thread instead of one
    per connection (32 KiB each, the largest part of an idle connection).

    The buffer only carries ciphertext from ``recv_into`` to the TLS object:
    the socket transport calls ``get_buffer``, receives into it and calls
    ``buffer_updated``, which copies it into the TLS object's input, all in one
    synchronous step of the event loop; so connections served by one thread
    can share it.
    """

    _shared = threading.local()
    _no_buffer = memoryview(bytearray())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ssl_buffer = bytearray()
        self._ssl_buffer_view = self._no_buffer

    def get_buffer(self, n: int) -> memoryview:
        view: memoryview | None = getattr(self._shared, "view", None)
        if view is None or len(view) < self.max_size:
            view = memoryview(bytearray(self.max_size))
            self._shared.view = view
        self._ssl_buffer_view = view
        return view

    def buffer_updated(self, nbytes: int) -> None:
        try:
            super().buffer_updated(nbytes)
        finally:
            self._ssl_buffer_view = self._no_buffer


# Every TLS connection of the process (asyncio looks the class up at each use).
if not issubclass(asyncio.sslproto.SSLProtocol, _SharedBufferSSLProtocol):
    asyncio.sslproto.SSLProtocol = _SharedBufferSSLProtocol  # type: ignore[misc]


async def serve_client(
    service: ImapService,
    stream: asyncio.StreamReader,
    out: asyncio.StreamWriter,
    *,
    implicit_tls: bool,
) -> None:
    """``asyncio.start_server`` callback for one connection."""
    peer = out.get_extra_info("peername")
    ip = str(peer[0]) if peer else None
    limits = service.limits
    key = ip or "unknown"
    if service.connections >= limits.max_connections or service.per_ip[key] >= limits.max_per_ip:
        out.write(writer.bye("too many connections, try again later"))
        with contextlib.suppress(OSError, ssl.SSLError):
            await out.drain()
        out.close()
        return
    service.connections += 1
    service.per_ip[key] += 1
    driver = Driver(
        service, stream, out, Connection(ip=ip, tls=implicit_tls, starttls=not implicit_tls)
    )
    try:
        await driver.run()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
        log.debug("IMAP connection from %s ended: %s", ip, type(exc).__name__)
    finally:
        driver.cleanup()
        service.connections -= 1
        service.per_ip[key] -= 1
        if service.per_ip[key] <= 0:
            del service.per_ip[key]
        out.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(out.wait_closed(), 1.0)


class Driver:
    def __init__(
        self,
        service: ImapService,
        stream: asyncio.StreamReader,
        out: asyncio.StreamWriter,
        connection: Connection,
    ) -> None:
        self.service = service
        self.stream = stream
        self.out = out
        self.connection = connection
        self.session = Session(service, connection, drain=self.flush)
        self.reader = self._new_reader()
        self.spools: dict[int, IO[bytes]] = {}
        self.current_spool: IO[bytes] | None = None
        self.read_task: asyncio.Task[bytes] | None = None
        self.closed = False
        self.idle_since = 0.0
        if connection.tls:
            self._tls_info()

    def _new_reader(self) -> CommandReader:
        limits = self.service.limits
        return CommandReader(
            max_line_length=limits.max_line_length,
            max_literal_size=limits.max_literal,
            spool_threshold=limits.spool_threshold,
        )

    # -- output ------------------------------------------------------------------------

    async def flush(self) -> None:
        chunks = self.session.take_output()
        if chunks:
            if len(chunks) == 1:
                self.out.write(chunks[0])
            else:
                self.out.writelines(coalesce(chunks))
            await self.out.drain()

    # -- main loop -------------------------------------------------------------------------

    async def run(self) -> None:
        self.session.send(self.session.greeting())
        await self.flush()
        limits = self.service.limits
        while not self.closed:
            if self.session.idle_tag is not None:
                await self._idle_round()
                continue
            wait = limits.command_timeout if self.reader.in_command else limits.idle_timeout
            data = await self._read(wait)
            if data is None:
                self.session.send(writer.bye("autologout: idle for too long"))
                await self.flush()
                return
            if not data:
                return
            self.reader.feed(data)
            await self._process()

    async def _read(self, wait: float) -> bytes | None:
        """Next data, ``b""`` at end of stream, ``None`` after ``wait`` seconds."""
        if self.read_task is None:
            self.read_task = asyncio.ensure_future(self.stream.read(READ_SIZE))
        done, _ = await asyncio.wait({self.read_task}, timeout=wait)
        if not done:
            return None
        task, self.read_task = self.read_task, None
        return task.result()

    async def _idle_round(self) -> None:
        """One wait during IDLE: client data, a change, or the keep-alive timer."""
        loop = asyncio.get_running_loop()
        limits = self.service.limits
        if self.read_task is None:
            self.read_task = asyncio.ensure_future(self.stream.read(READ_SIZE))
        waiters: set[asyncio.Future[Any]] = {self.read_task}
        sub = self.session.subscription
        change: asyncio.Task[Any] | None = None
        if sub is not None:
            change = asyncio.ensure_future(sub.changed.wait())
            waiters.add(change)
        remaining = self.idle_since + limits.idle_timeout - loop.time()
        done, _ = await asyncio.wait(
            waiters,
            timeout=max(0.0, min(limits.keepalive, remaining)),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if change is not None and not change.done():
            change.cancel()
        if self.read_task in done:
            task, self.read_task = self.read_task, None
            data = task.result()
            if not data:
                self.closed = True
                return
            self.reader.feed(data)
            await self._process()
        elif change is not None and change in done:
            await idle_cmd.changed(self.session)
            await self.flush()
        elif loop.time() >= self.idle_since + limits.idle_timeout:
            self.session.send(writer.bye("IDLE for too long, reconnect"))
            await self.flush()
            self.closed = True
        else:
            idle_cmd.keepalive(self.session)
            await self.flush()

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
                continue
            if event is NEED_DATA:
                return
            action: Action | None = None
            tag = ""
            if isinstance(event, NeedContinuation):
                session.send(writer.continuation("Ready for literal data"))
            elif isinstance(event, LiteralStart):
                spool = tempfile.TemporaryFile(prefix="mssgw-append-")  # noqa: SIM115 - closed after the command
                self.spools[event.index] = spool
                self.current_spool = spool
            elif isinstance(event, LiteralData):
                if self.current_spool is not None:
                    await asyncio.to_thread(self.current_spool.write, event.data)
            elif isinstance(event, LiteralEnd):
                self.current_spool = None
            elif isinstance(event, IdleDone):
                await idle_cmd.done(session, event.tag)
            elif isinstance(event, SaslResponse):
                tag = event.tag
                action = await session.handle(event)
            elif isinstance(event, Command):
                tag = event.tag
                session.literal_files = cast(dict[int, Any], self.spools)
                self.spools = {}
                try:
                    action = await session.handle(event)
                finally:
                    for f in session.literal_files.values():
                        f.close()
                    session.literal_files = {}
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
        buffered = len(getattr(self.stream, "_buffer", b"")) + self.reader.buffered
        if trust is None or buffered:
            # Commands sent in clear after STARTTLS could be an injection.
            self.session.send(writer.bye("no pipelining after STARTTLS"))
            await self.flush()
            self.closed = True
            return
        try:
            await self.out.start_tls(trust.client_tls.current)
        except (ssl.SSLError, ConnectionError, OSError) as exc:
            log.info("IMAP STARTTLS from %s failed: %s", self.connection.ip, exc)
            self.closed = True
            return
        self.reader = self._new_reader()
        self.connection.tls = True
        self._tls_info()

    def _tls_info(self) -> None:
        obj = self.out.get_extra_info("ssl_object")
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

    def cleanup(self) -> None:
        self._drop_spools()
        if self.read_task is not None:
            self.read_task.cancel()
            self.read_task = None
        self.session.close()


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
