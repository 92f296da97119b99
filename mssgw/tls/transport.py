"""asyncio's TLS protocol, adapted for a server of many TLS connections.

Installed process-wide on import (asyncio looks ``sslproto.SSLProtocol`` up
at each new TLS connection): the IMAP driver, the SMTP sessions and the
relay client import this module.  It changes three things, none visible to
the protocols above it:

* **one receive buffer per thread** instead of one per connection (asyncio
  gives each 256 KiB; 32 KiB each would still be the largest part of an idle
  IMAP connection);
* **the peer certificate decoded when asked for**, not kept decoded in every
  connection (~3 KiB of dicts and strings with a client certificate);
* **handshake steps run in worker threads.**  A TLS 1.2 handshake with a
  client certificate costs the server about 2 ms of CPU (signing its key
  exchange, verifying the client's chain and signature), more than everything
  else a port-25 delivery costs; OpenSSL works without the GIL, so in a
  thread the handshakes of new connections use the other cores while the
  event loop keeps serving the connections already open.

How a step runs in a thread without racing the event loop: the ``SSLObject``
and its two memory BIOs are left to the worker for the length of the step.
Meanwhile, ciphertext that arrives is kept aside and written to the incoming
BIO once the step is over; nothing reads the outgoing BIO (``_process_outgoing``
waits for the step); and a connection lost meanwhile is processed once the
step is over (``connection_lost`` reads the outgoing BIO).  The step's result
is handed back to the event loop, which goes on exactly as asyncio would
have after calling ``do_handshake`` itself.

This relies on asyncio's ``SSLProtocol`` internals (Python 3.11-3.13: state
``DO_HANDSHAKE``, ``_do_handshake``, ``_incoming``/``_outgoing``,
``_process_outgoing``, ``_on_handshake_complete``); the tests in
``tests/tls/test_transport.py`` exercise every path above, and must be run
again on a Python upgrade.
"""

from __future__ import annotations

import asyncio.sslproto as sslproto
import concurrent.futures
import os
import ssl
import threading
from typing import Any

#: asyncio's TLS transport gives every connection a 256 KiB read buffer
#: (``SSLProtocol.max_size``).  A TLS record carries at most 16 KiB of data, so
#: 32 KiB reads lose nothing.
TLS_READ_BUFFER = 32 * 1024
if getattr(sslproto.SSLProtocol, "max_size", 0) > TLS_READ_BUFFER:
    sslproto.SSLProtocol.max_size = TLS_READ_BUFFER

#: Threads running handshake steps: one per core (a step is pure CPU work).
#: With a single core there is nothing to gain, and steps stay in the loop.
HANDSHAKE_THREADS = os.cpu_count() or 1
_HANDSHAKERS: concurrent.futures.ThreadPoolExecutor | None = None
_HANDSHAKERS_LOCK = threading.Lock()
#: A step that needs more input from the peer (asyncio's ``SSLAgainErrors``).
_AGAIN = object()


def offloading() -> bool:
    """Whether handshake steps run in worker threads in this process."""
    return HANDSHAKE_THREADS > 1


def _handshakers() -> concurrent.futures.ThreadPoolExecutor:
    global _HANDSHAKERS
    if _HANDSHAKERS is None:
        with _HANDSHAKERS_LOCK:
            if _HANDSHAKERS is None:
                _HANDSHAKERS = concurrent.futures.ThreadPoolExecutor(
                    HANDSHAKE_THREADS, thread_name_prefix="mssgw-tls"
                )
    return _HANDSHAKERS


def _step(sslobj: ssl.SSLObject | None) -> object:
    """One handshake step, in a worker thread: None (done), ``_AGAIN`` or the error."""
    if sslobj is None:  # closed before the step could start
        return ssl.SSLError("connection closed during the TLS handshake")
    try:
        sslobj.do_handshake()
    except sslproto.SSLAgainErrors:
        return _AGAIN
    except ssl.SSLError as exc:
        return exc
    return None


class ServerSSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS protocol with the three changes of the module docstring."""

    _shared = threading.local()
    _no_buffer = memoryview(bytearray())
    # asyncio's private attributes used here (typeshed does not declare them).
    _incoming: ssl.MemoryBIO
    _sslobj: ssl.SSLObject | None
    _state: sslproto.SSLProtocolState

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ssl_buffer = bytearray()
        self._ssl_buffer_view = self._no_buffer
        # Used only with append, [0], del [0], clear and len, which a list
        # has too; an empty deque costs 600 octets per connection.
        self._write_backlog = []  # type: ignore[assignment]
        #: A handshake step is running in a worker thread.
        self._stepping = False
        #: Ciphertext received while a step runs, for the incoming BIO after it
        #: (a list only while there is some: idle connections are many).
        self._held: list[bytes] | None = None
        #: ``connection_lost`` arrived while a step ran: (exc,) to replay after it.
        self._lost_meanwhile: tuple[BaseException | None] | None = None

    # ---------------------------------------------------------------- buffers

    def get_buffer(self, n: int) -> memoryview:
        view: memoryview | None = getattr(self._shared, "view", None)
        if view is None or len(view) < self.max_size:
            view = memoryview(bytearray(self.max_size))
            self._shared.view = view
        self._ssl_buffer_view = view
        return view

    def buffer_updated(self, nbytes: int) -> None:
        try:
            if self._stepping:  # the incoming BIO is the worker's until the step ends
                if self._held is None:
                    self._held = []
                self._held.append(bytes(self._ssl_buffer_view[:nbytes]))
                return
            super().buffer_updated(nbytes)
        finally:
            self._ssl_buffer_view = self._no_buffer

    # ------------------------------------------------------- handshake steps

    def _do_handshake(self) -> None:
        if self._stepping:
            return  # the running step's end looks at what arrived meanwhile
        if not offloading() or not self._incoming.pending:
            # Nothing received to work on (a server waiting for the ClientHello,
            # a client writing its own): a cheap step, not worth a thread hop.
            super()._do_handshake()  # type: ignore[misc]
            return
        self._stepping = True
        sslobj = self._sslobj
        loop = self._loop
        future = _handshakers().submit(_step, sslobj)

        def stepped(done: concurrent.futures.Future[object]) -> None:
            try:
                loop.call_soon_threadsafe(self._stepped, sslobj, done)
            except RuntimeError:  # the loop is closed: nothing is waiting any more
                pass

        future.add_done_callback(stepped)

    def _stepped(
        self, sslobj: ssl.SSLObject | None, done: concurrent.futures.Future[object]
    ) -> None:
        """Back in the event loop after a step: go on as ``_do_handshake`` would."""
        self._stepping = False
        held, self._held = self._held or [], None
        if self._sslobj is sslobj:
            for data in held:
                self._incoming.write(data)
        if self._lost_meanwhile is not None:
            (exc,) = self._lost_meanwhile
            self._lost_meanwhile = None
            super().connection_lost(exc)
            return
        if self._state != sslproto.SSLProtocolState.DO_HANDSHAKE or self._sslobj is not sslobj:
            return  # aborted meanwhile (timeout, EOF, close): already dealt with
        error = done.exception()
        result = error if error is not None else done.result()
        if result is _AGAIN:
            self._process_outgoing()
            if held:  # the peer's next flight may already be here
                self._do_handshake()
        elif isinstance(result, BaseException):
            self._on_handshake_complete(result)
        else:
            self._on_handshake_complete(None)

    def _process_outgoing(self) -> None:
        if self._stepping:
            return  # the outgoing BIO is the worker's: the step's end sends it
        super()._process_outgoing()  # type: ignore[misc]

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._stepping:  # connection_lost reads the outgoing BIO: after the step
            self._lost_meanwhile = (exc,)
            return
        super().connection_lost(exc)

    # ------------------------------------------------------- peer certificate

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        super()._on_handshake_complete(handshake_exc)
        self._extra.pop("peercert", None)

    def _get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peercert" and "ssl_object" in self._extra:
            return self._extra["ssl_object"].getpeercert()
        return super()._get_extra_info(name, default)


def install() -> None:
    """Make every new TLS connection of the process use :class:`ServerSSLProtocol`."""
    if not issubclass(sslproto.SSLProtocol, ServerSSLProtocol):
        sslproto.SSLProtocol = ServerSSLProtocol  # type: ignore[misc]


install()
