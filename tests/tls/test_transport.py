"""The process-wide asyncio TLS protocol (``mssgw.tls.transport``), over real loopback TLS."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import pytest

from mssgw.tls import transport
from mssgw.tls.context import client_context
from tests.tls.pki import DevPki


def _server_ctx(dev_pki: DevPki, profile: str = "mssante") -> ssl.SSLContext:
    return dev_pki.server_ctx(profile=profile, client_cert="required")


def _client_ctx(dev_pki: DevPki, which: str = "op2", profile: str = "mssante") -> ssl.SSLContext:
    m = dev_pki.manifest
    pair = dev_pki.op(2) if which == "op2" else m["bad"][which]
    return client_context(pair["certificate"], pair["key"], m["anchors"], profile=profile)


class _Echo(asyncio.Protocol):
    """Echoes one line; records what happened to it."""

    made: ClassVar[list[_Echo]] = []

    def __init__(self) -> None:
        self.lost = False

    def connection_made(self, tr: asyncio.BaseTransport) -> None:
        self.transport = tr
        _Echo.made.append(self)

    def data_received(self, data: bytes) -> None:
        assert isinstance(self.transport, asyncio.Transport)
        self.transport.write(b"echo " + data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


@asynccontextmanager
async def _echo_server(ctx: ssl.SSLContext) -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
    """A TLS echo server on a free port; yields the port and the loop's uncaught errors."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    _Echo.made = []
    server = await loop.create_server(_Echo, "127.0.0.1", 0, ssl=ctx, ssl_handshake_timeout=5)
    try:
        yield server.sockets[0].getsockname()[1], errors
    finally:
        server.close()
        await server.wait_closed()
        loop.set_exception_handler(None)


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the threads that ran offloaded handshake steps."""
    ran: list[str] = []
    real = transport._step

    def counted(sslobj: ssl.SSLObject | None) -> object:
        ran.append(threading.current_thread().name)
        return real(sslobj)

    monkeypatch.setattr(transport, "_step", counted)
    monkeypatch.setattr(transport, "HANDSHAKE_THREADS", 2)
    return ran


def _slow_steps(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    real = transport._step

    def slow(sslobj: ssl.SSLObject | None) -> object:
        time.sleep(seconds)
        return real(sslobj)

    monkeypatch.setattr(transport, "_step", slow)
    monkeypatch.setattr(transport, "HANDSHAKE_THREADS", 2)


async def _hello_then_vanish(port: int, *, pause: float = 0.0) -> None:
    """A client that sends a ClientHello and, ``pause`` seconds later, aborts."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sslobj = ssl.create_default_context().wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO())
    with pytest.raises(ssl.SSLWantReadError):
        sslobj.do_handshake()
    writer.write(out.read())
    await writer.drain()
    await asyncio.sleep(pause)
    writer.transport.abort()


def test_every_tls_connection_of_the_process_uses_it() -> None:
    assert issubclass(asyncio.sslproto.SSLProtocol, transport.ServerSSLProtocol)
    assert asyncio.sslproto.SSLProtocol.max_size <= transport.TLS_READ_BUFFER


async def _exchange(
    port: int, ctx: ssl.SSLContext, line: bytes = b"ping\r\n", *, pause: float = 0.0
) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        await asyncio.sleep(pause)
        writer.write(line)
        return await asyncio.wait_for(reader.readexactly(5 + len(line)), 5)
    finally:
        writer.close()


async def test_handshakes_run_in_worker_threads_and_connections_work(
    dev_pki: DevPki, steps: list[str]
) -> None:
    async with _echo_server(_server_ctx(dev_pki)) as (port, errors):
        answers = await asyncio.gather(
            *(_exchange(port, _client_ctx(dev_pki), b"n%d\r\n" % i) for i in range(20))
        )
    assert answers == [b"echo n%d\r\n" % i for i in range(20)]
    # Both sides' steps with input to work on went to the workers, none ran in the loop.
    assert len(steps) >= 20 * 2 and all(name.startswith("mssgw-tls") for name in steps)
    assert errors == []


async def test_without_offload_steps_stay_in_the_loop(
    dev_pki: DevPki, steps: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport, "HANDSHAKE_THREADS", 1)
    async with _echo_server(_server_ctx(dev_pki)) as (port, errors):
        assert await _exchange(port, _client_ctx(dev_pki)) == b"echo ping\r\n"
    assert steps == [] and errors == []


async def test_data_sent_during_a_step_is_kept_for_after_it(
    dev_pki: DevPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TLS 1.3: the client is done once it sent its Finished and may write at
    # once; with slow steps its data arrives while the server's last step runs.
    _slow_steps(monkeypatch, 0.3)
    held: list[int] = []
    real = transport.ServerSSLProtocol.buffer_updated

    def spying(self: transport.ServerSSLProtocol, nbytes: int) -> None:
        if self._stepping:
            held.append(nbytes)
        real(self, nbytes)

    monkeypatch.setattr(transport.ServerSSLProtocol, "buffer_updated", spying)
    async with _echo_server(_server_ctx(dev_pki, "modern")) as (port, errors):
        ctx = _client_ctx(dev_pki, profile="modern")
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        assert await _exchange(port, ctx, b"early\r\n", pause=0.1) == b"echo early\r\n"
    assert held  # the data did arrive during a step, and was answered after it
    assert errors == []


async def test_refused_client_certificate_fails_the_handshake_in_a_step(
    dev_pki: DevPki, steps: list[str]
) -> None:
    async with _echo_server(_server_ctx(dev_pki)) as (port, errors):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await _exchange(port, _client_ctx(dev_pki, "expired"))
        assert await _exchange(port, _client_ctx(dev_pki)) == b"echo ping\r\n"  # still serving
    assert steps and _Echo.made and all(not e.get("exception") for e in errors if _fatal(e))


def _fatal(context: dict[str, Any]) -> bool:
    """An uncaught error other than asyncio's report of a failed handshake."""
    return "SSL handshake failed" not in str(context.get("message", ""))


async def test_connection_lost_during_a_step_is_processed_after_it(
    dev_pki: DevPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    _slow_steps(monkeypatch, 0.3)
    created: list[transport.ServerSSLProtocol] = []
    real_init: Callable[..., None] = transport.ServerSSLProtocol.__init__

    def recording(self: transport.ServerSSLProtocol, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        created.append(self)

    monkeypatch.setattr(transport.ServerSSLProtocol, "__init__", recording)
    async with _echo_server(_server_ctx(dev_pki)) as (port, errors):
        # A client that sends its ClientHello, then goes away mid-handshake,
        # once the server's step has started.
        await _hello_then_vanish(port, pause=0.05)
        server_side = next(p for p in created if p._stepping)
        await asyncio.sleep(0.6)  # the step ends, then the loss is processed
        assert not server_side._stepping and server_side._lost_meanwhile is None
        assert server_side._state == asyncio.sslproto.SSLProtocolState.UNWRAPPED
        assert _Echo.made == []  # the application never saw this connection
        assert await _exchange(port, _client_ctx(dev_pki)) == b"echo ping\r\n"
    assert [e for e in errors if _fatal(e)] == []


async def test_mixed_clients_at_once_good_bad_and_vanishing(
    dev_pki: DevPki, steps: list[str]
) -> None:
    """Good clients, refused certificates and clients that vanish mid-handshake,
    all at once: every good one is served, nothing escapes to the loop."""

    async def refused(port: int) -> bool:
        try:
            await _exchange(port, _client_ctx(dev_pki, "expired"))
        except (ssl.SSLError, ConnectionError):
            return True
        return False

    async with _echo_server(_server_ctx(dev_pki)) as (port, errors):
        jobs: list[Any] = []
        for i in range(30):
            kind = i % 3
            if kind == 0:
                jobs.append(_exchange(port, _client_ctx(dev_pki), b"g%d\r\n" % i))
            elif kind == 1:
                jobs.append(refused(port))
            else:
                jobs.append(_hello_then_vanish(port))
        results = await asyncio.gather(*jobs)
        await asyncio.sleep(0.2)
    good = [r for i, r in enumerate(results) if i % 3 == 0]
    assert good == [b"echo g%d\r\n" % i for i in range(0, 30, 3)]
    assert all(r is True for i, r in enumerate(results) if i % 3 == 1)
    assert steps and [e for e in errors if _fatal(e)] == []
