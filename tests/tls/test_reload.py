"""Hot reload under a running listener (TLS-4)."""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from mssgw.tls.context import TlsConfigError
from mssgw.tls.reload import ReloadingContext, TlsFiles, on_sighup
from tests.tls.pki import DevPki
from tests.tls.tlsutil import raw_client


def install(dev_pki: DevPki, k: int, target: Path) -> None:
    """Replace the served pair atomically, as a deploy tool would."""
    op = dev_pki.op(k)
    for src, name in ((op["certificate"], "server.pem"), (op["key"], "server.key")):
        tmp = target / f".{name}.tmp"
        shutil.copy(src, tmp)
        os.replace(tmp, target / name)


@pytest.fixture
def holder(dev_pki: DevPki, tmp_path: Path) -> ReloadingContext:
    install(dev_pki, 1, tmp_path)
    shutil.copy(dev_pki.manifest["crl"], tmp_path / "crl.pem")
    files = TlsFiles(
        str(tmp_path / "server.pem"),
        str(tmp_path / "server.key"),
        dev_pki.manifest["anchors"],
        [str(tmp_path / "crl.pem")],
    )
    return ReloadingContext(files, client_cert="optional")


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while line := await reader.readline():
        writer.write(line)
        await writer.drain()
    writer.close()


def served_cn(writer: asyncio.StreamWriter) -> str:
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    cn = x509.load_der_x509_certificate(der).subject.rfc4514_string().split(",")[0]
    return cn.removeprefix("CN=")


async def roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, text: bytes
) -> bytes:
    writer.write(text + b"\n")
    await writer.drain()
    return (await asyncio.wait_for(reader.readline(), 5)).strip()


async def test_swap_certificate_under_running_implicit_tls_listener(
    dev_pki: DevPki, holder: ReloadingContext, tmp_path: Path
) -> None:
    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=holder.listener_context)
    port = server.sockets[0].getsockname()[1]
    client = raw_client()
    try:
        r1, w1 = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        assert served_cn(w1) == "mx.op1.mssante.test"
        assert await roundtrip(r1, w1, b"before") == b"before"

        install(dev_pki, 2, tmp_path)
        assert holder.maybe_reload() is True
        assert holder.generation == 2

        r2, w2 = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        assert served_cn(w2) == "mx.op2.mssante.test"
        # the connection made before the reload is still alive
        assert await roundtrip(r1, w1, b"after") == b"after"
        assert await roundtrip(r2, w2, b"new") == b"new"
        for w in (w1, w2):
            w.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_starttls_uses_current_context(
    dev_pki: DevPki, holder: ReloadingContext, tmp_path: Path
) -> None:
    async def starttls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert (await reader.readline()).strip() == b"STARTTLS"
        writer.write(b"220 go\n")
        await writer.drain()
        await writer.start_tls(holder.current)  # per-connection: the newest context
        await echo(reader, writer)

    server = await asyncio.start_server(starttls, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"STARTTLS\n")
        assert (await reader.readline()).startswith(b"220")
        await writer.start_tls(raw_client())
        return reader, writer

    try:
        r1, w1 = await connect()
        assert served_cn(w1) == "mx.op1.mssante.test"
        install(dev_pki, 2, tmp_path)
        holder.reload()
        _r2, w2 = await connect()
        assert served_cn(w2) == "mx.op2.mssante.test"
        assert await roundtrip(r1, w1, b"old") == b"old"
        for w in (w1, w2):
            w.close()
    finally:
        server.close()
        await server.wait_closed()


def test_failed_reload_keeps_previous_context(holder: ReloadingContext, tmp_path: Path) -> None:
    before = holder.current
    (tmp_path / "server.key").write_text("-----BEGIN PRIVATE KEY-----\nhalf written")
    with pytest.raises(TlsConfigError):
        holder.reload()
    assert holder.current is before
    assert holder.maybe_reload() is False  # logged, not raised
    assert holder.current is before


def test_broken_crl_keeps_last_valid_crl(holder: ReloadingContext, tmp_path: Path) -> None:
    crls = holder.crls
    (tmp_path / "crl.pem").write_bytes(b"garbage")
    assert holder.maybe_reload() is True  # certificates reloaded ...
    assert holder.crls == crls  # ... with the last valid CRL


def test_initial_missing_crl_is_an_error(dev_pki: DevPki, tmp_path: Path) -> None:
    install(dev_pki, 1, tmp_path)
    files = TlsFiles(
        str(tmp_path / "server.pem"),
        str(tmp_path / "server.key"),
        dev_pki.manifest["anchors"],
        [str(tmp_path / "missing.pem")],
    )
    with pytest.raises(TlsConfigError, match=r"missing\.pem"):
        ReloadingContext(files)


async def test_watch_and_sighup_handler(
    dev_pki: DevPki, holder: ReloadingContext, tmp_path: Path
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(holder.watch(0.02, stop))
    install(dev_pki, 2, tmp_path)
    for _ in range(250):
        if holder.generation == 2:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await task
    assert holder.generation == 2
    on_sighup([holder])()
    assert holder.generation == 3


def test_client_side_holder(dev_pki: DevPki) -> None:
    op = dev_pki.op(1)
    files = TlsFiles(op["certificate"], op["key"], dev_pki.manifest["anchors"])
    relay = ReloadingContext(files, side="client")
    assert relay.current.verify_mode == ssl.CERT_REQUIRED
    assert relay.certificate_not_after() is not None
