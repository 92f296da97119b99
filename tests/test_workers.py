"""``mssgw serve`` with ``gateway.workers`` > 1: a supervisor and its workers,
as real processes sharing real listening sockets (``mssgw.workers``)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from mssgw import config
from mssgw.auth.ratelimit import RateLimiter
from mssgw.errors import MssgwError
from mssgw.store import Store
from mssgw.store.delivery import LocalTarget
from mssgw.store.mailboxes import NewMailbox
from mssgw.store.models import MailboxType
from mssgw.workers import parse_role
from tests.imap.server_support import Raw, message
from tests.support import process
from tests.support.gateway import gateway_config

_READY = re.compile(rb"\[supervisor\] mssgw: listener imaps on 127\.0\.0\.1:(\d+)")


def _ready_port(line: bytes) -> int | None:
    found = _READY.search(line)
    return int(found.group(1)) if found else None


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return sorted(int(p) for p in out.stdout.split())


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie waiting for its parent counts as gone.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def _wait(predicate: Any, what: str, wait: float = 20.0) -> None:
    deadline = time.monotonic() + wait
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def owner_of(client_port: int, server_port: int, pids: list[int]) -> int:
    """The worker holding the server end of the connection from ``client_port``."""
    wanted = f":{server_port:04X}", f":{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(wanted[0]) and fields[2].endswith(wanted[1]):
            for pid in pids:
                if fields[9] in _socket_inodes(pid):
                    return pid
    raise AssertionError(f"no worker holds the connection from port {client_port}")


class Gateway:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, cfg: Path) -> None:
        self.proc, self.port, self.cfg = proc, port, cfg

    @property
    def workers(self) -> list[int]:
        return _children(self.proc.pid)


async def _add_user(cfg: Path, trust_space: dict[str, Any]) -> tuple[str, str]:
    store = await Store.open(config.load(cfg, env={}), check_schema=False)
    try:
        await store.upgrade()
        domain = trust_space["operators"][0]["domain"]
        await store.mailboxes.ensure_domain(domain)
        address = f"claire.dupont@{domain}"
        national_id = trust_space["professional"]["national_id"]
        await store.mailboxes.add(NewMailbox(address, MailboxType.PER, national_id))
        await store.messages.deliver(message(1), [LocalTarget(address)])
        return address, (await store.credentials.issue(address)).password
    finally:
        await store.close()


async def _upgrade(cfg: Path) -> None:
    store = await Store.open(config.load(cfg, env={}), check_schema=False)
    try:
        await store.upgrade()
    finally:
        await store.close()


def _serve(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mssgw", "--config", str(cfg), "serve", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )


@asynccontextmanager
async def supervised(
    tmp: Path, trust_space: dict[str, Any], *, workers: int = 2, url: str | None = None
) -> AsyncIterator[Gateway]:
    cfg = gateway_config(tmp, trust_space, url=url, listeners=("mta", "imaps", "http"))
    await _upgrade(cfg)
    argv = [sys.executable, "-m", "mssgw", "--config", str(cfg), "serve", "--workers", str(workers)]
    proc, port = await asyncio.to_thread(process.start, argv, _ready_port, timeout=90)
    try:
        yield Gateway(proc, port, cfg)
    finally:
        if proc.poll() is None:
            await asyncio.to_thread(process.stop, proc, 40)


def _client_context(trust_space: dict[str, Any]) -> Any:
    import ssl

    ctx = ssl.create_default_context(cafile=trust_space["root"])
    ctx.check_hostname = False
    return ctx


async def _on_two_workers(gw: Gateway, ctx: Any) -> tuple[Raw, Raw]:
    """Open connections until two are served by different workers."""
    pids = gw.workers
    assert len(pids) == 2
    opened: list[Raw] = []
    by_worker: dict[int, Raw] = {}
    try:
        for _ in range(60):
            raw = await Raw.connect(gw.port, ctx)
            opened.append(raw)
            client_port = raw.writer.get_extra_info("sockname")[1]
            owner = await asyncio.to_thread(owner_of, client_port, gw.port, pids)
            by_worker.setdefault(owner, raw)
            if len(by_worker) == 2:
                break
        assert len(by_worker) == 2, "every connection went to one worker"
        keep = list(by_worker.values())
        return keep[0], keep[1]
    finally:
        for raw in opened:
            if raw not in by_worker.values():
                await raw.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_idle_in_one_worker_sees_changes_made_in_the_other(
    tmp_path: Path, trust_space: dict[str, Any], backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    cfg = gateway_config(tmp_path, trust_space, url=url, listeners=("mta", "imaps", "http"))
    user, password = await _add_user(cfg, trust_space)
    async with supervised(tmp_path, trust_space, url=url) as gw:
        idler, actor = await _on_two_workers(gw, _client_context(trust_space))
        for raw in (idler, actor):
            await raw.login(user, password)
            await raw.command("SELECT INBOX")
        await idler.send(b"i1 IDLE\r\n")
        assert (await idler.line()).startswith(b"+ ")

        data = message(2)
        lines = await actor.command(b"APPEND INBOX {%d+}\r\n" % len(data) + data)
        assert b"OK" in lines[-1]
        while b"* 2 EXISTS" not in (line := await idler.line(5.0)):
            pass
        await actor.command("STORE 1 +FLAGS (\\Flagged)")
        while b"* 1 FETCH" not in (line := await idler.line(5.0)):
            pass
        assert b"\\Flagged" in line
        await idler.send(b"DONE\r\n")
        assert b"i1 OK" in (await idler.until(b"i1"))[-1]
        for raw in (idler, actor):
            await raw.close()


async def test_a_dead_worker_is_started_again_and_sigterm_stops_them_all(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with supervised(tmp_path, trust_space) as gw:
        first = gw.workers
        assert len(first) == 2
        os.kill(first[1], signal.SIGKILL)
        _wait(lambda: len(gw.workers) == 2 and first[1] not in gw.workers, "no new worker")
        # Both workers serve: every new connection is answered.
        ctx = _client_context(trust_space)
        for _ in range(6):
            raw = await Raw.connect(gw.port, ctx)
            await raw.command("NOOP")
            await raw.close()
        workers = gw.workers
        gw.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(gw.proc.wait, 40) == 0
        assert [pid for pid in workers if not _gone(pid)] == []


async def test_a_second_daemon_on_the_same_state_is_refused(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    """SO_REUSEPORT would let it share our ports silently: the state lock refuses it."""
    async with supervised(tmp_path, trust_space) as gw:
        second = await asyncio.to_thread(_serve, gw.cfg)
        assert second.returncode != 0
        assert f"(pid {gw.proc.pid}) already runs on this state folder" in second.stderr
        assert gw.proc.poll() is None


async def test_workers_stop_by_themselves_when_the_supervisor_is_killed(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with supervised(tmp_path, trust_space) as gw:
        workers = gw.workers
        gw.proc.kill()
        gw.proc.wait(10)
        _wait(lambda: all(_gone(pid) for pid in workers), "workers still running")


async def test_a_worker_that_cannot_start_stops_the_daemon_with_its_reason(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    cfg = gateway_config(tmp_path, trust_space, listeners=("imaps",))
    await _upgrade(cfg)
    text = cfg.read_text()
    key = trust_space["operators"][0]["key"]
    assert key in text
    cfg.write_text(text.replace(key, str(tmp_path / "missing.key")))
    proc = await asyncio.to_thread(_serve, cfg)
    assert proc.returncode != 0
    assert "missing.key" in proc.stderr
    assert "could not start" in proc.stderr


async def test_a_listener_in_use_is_refused_by_the_supervisor_naming_it(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        extra = f"[listeners.imaps]\nport = {port}\n"
        cfg = gateway_config(tmp_path, trust_space, listeners=("imaps",), extra=extra)
        await _upgrade(cfg)
        proc = await asyncio.to_thread(_serve, cfg)
    assert proc.returncode != 0
    assert f"listeners.imaps: cannot listen on 127.0.0.1:{port}" in proc.stderr


async def test_only_worker_0_serves_http_and_runs_the_housekeeping(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    from mssgw.workers import WorkerRole
    from tests.support.gateway import running_gateway

    async with running_gateway(
        tmp_path / "w1", trust_space, listeners=("imaps", "http"), role=WorkerRole(1, 2)
    ) as second:
        assert "http" not in second.ports  # worker 0's figures only
        assert second.app._housekeeping is None
        assert second.app.auth.limiter.account.max_failures == 5
    async with running_gateway(
        tmp_path / "w0", trust_space, listeners=("imaps", "http"), role=WorkerRole(0, 2)
    ) as first:
        assert "http" in first.ports
        assert first.app._housekeeping is not None


def test_rate_limit_budgets_are_divided_between_workers() -> None:
    table = [(1, 10, 30), (2, 5, 15), (3, 3, 10), (4, 2, 7), (16, 1, 1), (64, 1, 1)]
    for workers, account, address in table:
        limiter = RateLimiter.shared_by(workers)
        assert (limiter.account.max_failures, limiter.address.max_failures) == (
            account,
            address,
        ), workers
        assert workers * account <= max(10, workers)  # never more guesses than one process
        assert limiter.account.window == RateLimiter().account.window


def test_worker_arguments_are_checked() -> None:
    for spec, fds in (("2/2", ""), ("x/2", ""), ("0/2", "imaps=notanfd"), ("1", "")):
        with pytest.raises(MssgwError):
            parse_role(spec, fds)
    role = parse_role("1/3", "")
    assert (role.index, role.count, role.primary, role.label) == (1, 3, False, "worker 1/3")
