"""Several worker processes serving the same listeners (``gateway.workers``).

Why: one Python process runs its protocol code on one core at a time (the
event loop holds the GIL); Postfix and Dovecot use every core of the machine
with one process per connection or per service.  With ``workers = N`` the
``mssgw serve`` process becomes a small supervisor:

1. it binds every enabled listener itself (so port 0, ports below 1024 and
   "address already in use" behave exactly as with one process, and the
   error names the listener), then
2. starts N workers, ``python -m mssgw serve --worker K/N``, which inherit
   listening sockets (one per worker and listener, bound with ``SO_REUSEPORT``:
   the kernel spreads new connections evenly over the workers) and each run
   the whole gateway (:class:`mssgw.app.App`) on them;
3. waits until every worker says it is serving (a worker that fails to start,
   say on a bad certificate, stops the whole daemon with its message), then
   supervises: a worker that dies (a crash, a kill) is started again, with a
   growing delay if it keeps dying; SIGHUP is passed on (reload); SIGTERM or
   SIGINT stops every worker (SIGTERM, then SIGKILL after ``STOP_TIMEOUT``)
   and the supervisor last.

What the workers share, and how (see docs/operations.md):

* the database: SQLite serialises the writers of all processes (each
  worker's group committer waits its turn), PostgreSQL as with several nodes;
  the outbound queue is claimed with leases, so each worker relays its own
  submissions and any worker may take a due retry;
* IMAP change notifications: :mod:`mssgw.imap.siblings` on SQLite, the
  LISTEN/NOTIFY link on PostgreSQL;
* what runs once: the http listener (/healthz, /metrics: worker 0's figures)
  and the daily housekeeping run in worker 0 only;
* limits: connection limits apply in each worker; the failed-authentication
  budget is divided between them (``RateLimiter.shared_by``).

A worker watches a "lifeline" pipe from the supervisor: if the supervisor
disappears (``kill -9``), the pipe reaches end of file and the worker stops
by itself rather than serving on unsupervised.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mssgw.config import ListenerSettings, Settings
from mssgw.errors import MssgwError

if TYPE_CHECKING:
    from collections.abc import Iterable

log = logging.getLogger(__name__)

#: Seconds a worker may take to start serving before the daemon gives up.
START_TIMEOUT = 120.0
#: Seconds the workers have to stop after SIGTERM before they are killed.
STOP_TIMEOUT = 30.0
#: Delay before restarting a dead worker, doubling up to ``MAX_RESTART_DELAY``
#: while it keeps dying within ``STABLE_AFTER`` seconds of its start.
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 60.0
#: Listeners served by worker 0 only (their figures are per process).
PRIMARY_ONLY = frozenset({"http"})
_BACKLOG = 512


@dataclass(frozen=True)
class WorkerRole:
    """Which worker this process is, and the listening sockets it inherited."""

    index: int = 0
    count: int = 1
    sockets: dict[str, socket.socket] = field(default_factory=dict)

    @property
    def primary(self) -> bool:
        """Worker 0 (or the only process): runs what must run once."""
        return self.index == 0

    @property
    def label(self) -> str:
        return f"worker {self.index}/{self.count}"


def worker_count(settings: Settings) -> int:
    """``gateway.workers``, 0 meaning one per core."""
    return settings.gateway.workers or max(1, os.cpu_count() or 1)


def parse_role(spec: str, fds: str) -> WorkerRole:
    """``--worker K/N --listen-fds name=fd,...`` → the role (hidden options)."""
    index_text, _, count_text = spec.partition("/")
    try:
        index, count = int(index_text), int(count_text)
        sockets = {}
        for item in filter(None, fds.split(",")):
            name, _, fd = item.partition("=")
            sockets[name] = socket.socket(fileno=int(fd))
    except (ValueError, OSError) as exc:
        raise MssgwError(
            f"--worker {spec} --listen-fds {fds}: not a worker's arguments ({exc})"
        ) from None
    if not 0 <= index < count:
        raise MssgwError(f"--worker {spec}: expected K/N with 0 <= K < N")
    return WorkerRole(index, count, sockets)


def enabled_listeners(settings: Settings, available: Iterable[str]) -> dict[str, ListenerSettings]:
    known = set(available)
    out: dict[str, ListenerSettings] = {}
    for f in fields(settings.listeners):
        lst: ListenerSettings = getattr(settings.listeners, f.name)
        if lst.enabled and f.name in known:
            out[f.name] = lst
    return out


def bind_listeners(
    listeners: dict[str, ListenerSettings], count: int
) -> list[dict[str, socket.socket]]:
    """Bind every listener once per worker (``SO_REUSEPORT``); item K is worker
    K's sockets.  Each worker accepts on sockets of its own: the kernel spreads
    new connections evenly over them (a shared socket would let the first
    worker to wake take a whole burst, asyncio accepting up to the backlog at
    once).  The supervisor keeps them all open, so connections that arrive
    while a worker restarts wait in its backlog.  Listeners in
    ``PRIMARY_ONLY`` get one socket, worker 0's."""
    per_worker: list[dict[str, socket.socket]] = [{} for _ in range(count)]
    try:
        for name, lst in listeners.items():
            if name in PRIMARY_ONLY:  # one socket: no port group to join
                per_worker[0][name] = _bind(name, lst, reuse_port=False)
                continue
            first = _bind(name, lst, reuse_port=count > 1)
            per_worker[0][name] = first
            same = replace(lst, port=int(first.getsockname()[1]))  # port 0: the one chosen
            for k in range(1, count):
                per_worker[k][name] = _bind(name, same, reuse_port=True)
    except BaseException:
        close_all(per_worker)
        raise
    return per_worker


def lock_state(run_dir: Path) -> int:
    """Hold ``run_dir/supervisor.lock`` for this supervisor's life, or refuse: a
    second daemon on the same state would silently share our ports
    (``SO_REUSEPORT`` lets sockets of the same user join the group)."""
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = run_dir / "supervisor.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise MssgwError(
            f"{path}: another 'mssgw serve' (pid {holder}) already runs on this state folder;"
            " stop it first"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def close_all(per_worker: list[dict[str, socket.socket]]) -> None:
    for sockets in per_worker:
        for sock in sockets.values():
            sock.close()


def _bind(name: str, lst: ListenerSettings, *, reuse_port: bool) -> socket.socket:
    try:
        infos = socket.getaddrinfo(
            lst.address or None, lst.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise MssgwError(
            f"listeners.{name}: cannot listen on {lst.address}:{lst.port}: {exc.strerror or exc}"
        ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            # Only sockets of the same user may join the group (Linux).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise MssgwError(
            f"listeners.{name}: cannot listen on {lst.address}:{lst.port}: {exc.strerror}"
        ) from None
    return sock


def bound_ports(sockets: dict[str, socket.socket]) -> dict[str, int]:
    return {name: int(sock.getsockname()[1]) for name, sock in sockets.items()}


# --------------------------------------------------------------------------- worker side


def watch_lifeline(fd: int, stop: Callable[[], None]) -> None:
    """Call ``stop`` when the supervisor's end of the lifeline pipe closes."""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            log.warning("the supervisor is gone: stopping")
            stop()

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)


def report_ready(fd: int) -> None:
    """Tell the supervisor this worker serves (one byte, then close)."""
    try:
        os.write(fd, b"1")
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- supervisor


@dataclass
class _Child:
    index: int
    process: asyncio.subprocess.Process
    started: float
    delay: float = FIRST_RESTART_DELAY


class Supervisor:
    """Starts, watches and stops the workers of one ``mssgw serve``."""

    def __init__(
        self,
        config_path: str,
        sockets: list[dict[str, socket.socket]],
        *,
        python: str = sys.executable,
    ) -> None:
        self.config_path = config_path
        #: Item K: worker K's listening sockets (``bind_listeners``).
        self.sockets = sockets
        self.count = len(sockets)
        self.python = python
        self.children: dict[int, _Child] = {}
        self.stopping = False
        self.restarts = 0
        self._changed = asyncio.Event()
        self._life_read, self._life_write = os.pipe()

    def command(self, index: int, ready_fd: int) -> list[str]:
        fds = ",".join(f"{name}={sock.fileno()}" for name, sock in self.sockets[index].items())
        return [
            self.python,
            "-m",
            "mssgw",
            "--config",
            self.config_path,
            "serve",
            "--worker",
            f"{index}/{self.count}",
            "--listen-fds",
            fds,
            "--control-fds",
            f"{self._life_read},{ready_fd}",
        ]

    async def start(self) -> None:
        """Start every worker and wait until each serves; stop them all on a failure."""
        try:
            await asyncio.gather(*(self._spawn(i) for i in range(self.count)))
        except BaseException:
            await self.stop()
            raise
        log.info("%d workers serving", self.count)

    async def _spawn(self, index: int) -> None:
        """Start worker ``index`` and wait until it serves.  It is registered at
        once, so a stop while it starts stops it too."""
        ready_read, ready_write = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command(index, ready_write),
                pass_fds=[s.fileno() for s in self.sockets[index].values()]
                + [self._life_read, ready_write],
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            os.close(ready_write)
        previous = self.children.get(index)
        child = _Child(index, process, time.monotonic())
        if previous is not None:
            child.delay = previous.delay
        self.children[index] = child
        try:
            await self._wait_ready(index, process, ready_read)
        finally:
            os.close(ready_read)
        asyncio.get_running_loop().create_task(self._watch(child), name=f"mssgw-worker-{index}")

    async def _wait_ready(
        self, index: int, process: asyncio.subprocess.Process, ready_read: int
    ) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[bytes] = loop.create_future()

        def readable() -> None:
            if not ready.done():
                try:
                    ready.set_result(os.read(ready_read, 1))
                except OSError:
                    ready.set_result(b"")

        loop.add_reader(ready_read, readable)
        exited: asyncio.Future[int] = asyncio.ensure_future(process.wait())
        waiting: set[asyncio.Future[Any]] = {ready, exited}
        try:
            done, _ = await asyncio.wait(
                waiting, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            loop.remove_reader(ready_read)
        if ready in done and ready.result() == b"1":
            exited.cancel()
            return
        if ready in done:  # end of file: the worker is exiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(exited), STOP_TIMEOUT)
        if not exited.done():
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise MssgwError(f"worker {index}: not serving after {START_TIMEOUT:.0f} s: stopped")
        raise MssgwError(
            f"worker {index} could not start ({_exit_text(process.returncode)}); "
            "its messages above say why"
        )

    async def _watch(self, child: _Child) -> None:
        code = await child.process.wait()
        self._changed.set()
        if self.stopping or self.children.get(child.index) is not child:
            return
        if code == 0:
            log.info("worker %d stopped (exit 0): not restarted", child.index)
            del self.children[child.index]
            return
        lived = time.monotonic() - child.started
        delay = FIRST_RESTART_DELAY if lived >= STABLE_AFTER else child.delay
        log.error(
            "worker %d %s after %.0f s: starting it again in %.0f s",
            child.index,
            _exit_text(code),
            lived,
            delay,
        )
        await asyncio.sleep(delay)
        if self.stopping:
            return
        child.delay = min(delay * 2, MAX_RESTART_DELAY)
        try:
            await self._spawn(child.index)
            self.restarts += 1
        except MssgwError as exc:
            if self.stopping:
                return
            log.error("%s", exc)
            # Keep trying, more slowly (its delay doubled): the others still serve.
            again = self.children[child.index]
            asyncio.get_running_loop().create_task(self._watch(again))

    def signal_all(self, sig: int) -> None:
        for child in self.children.values():
            if child.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(sig)

    async def wait_all_stopped(self) -> None:
        """Return once no worker is left (each exited 0, not restarted)."""
        while self.children:
            self._changed.clear()
            await self._changed.wait()

    async def stop(self) -> None:
        """SIGTERM every worker, SIGKILL those still running after ``STOP_TIMEOUT``."""
        self.stopping = True
        self.signal_all(signal.SIGTERM)
        waits = [c.process.wait() for c in self.children.values()]
        if waits:
            _, pending = await asyncio.wait(
                [asyncio.ensure_future(w) for w in waits], timeout=STOP_TIMEOUT
            )
            if pending:
                log.error(
                    "%d worker(s) still running after %.0f s: killed", len(pending), STOP_TIMEOUT
                )
                self.signal_all(signal.SIGKILL)
                await asyncio.wait(pending)
        self.children.clear()
        for fd in (self._life_read, self._life_write):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._life_read = self._life_write = -1

    def pids(self) -> list[int]:
        return [c.process.pid for c in self.children.values()]


def _exit_text(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exited with code {code}"
