"""``mssgw serve``: run the gateway."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mssgw import dev, logsetup, runtime, workers
from mssgw.app import App, listener_factories
from mssgw.cli._common import settings_from
from mssgw.config import MAX_WORKERS, Settings
from mssgw.errors import MssgwError
from mssgw.store import Store

log = logging.getLogger("mssgw")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run the gateway daemon",
        description="Run every configured listener until SIGTERM/SIGINT; SIGHUP reloads "
        "certificates and lists. With --dev, create (once) and run a complete development "
        "trust space on loopback.",
    )
    p.add_argument("--dev", action="store_true", help="development mode (ignores --config)")
    p.add_argument(
        "--state", default="var/dev", metavar="DIR", help="dev mode state folder (default var/dev)"
    )
    p.add_argument(
        "--port-base",
        type=int,
        default=dev.DEFAULT_PORT_BASE,
        metavar="N",
        help=f"dev mode: listeners on N+25, N+587, N+465, N+143, N+993, N+80 "
        f"(default {dev.DEFAULT_PORT_BASE})",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes serving the listeners (overrides gateway.workers; 0: one per core)",
    )
    # A worker started by the supervisor (mssgw.workers); not for people.
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--listen-fds", default="", help=argparse.SUPPRESS)
    p.add_argument("--control-fds", default="", help=argparse.SUPPRESS)
    p.set_defaults(handler=serve)


def serve(args: argparse.Namespace) -> int:
    if args.dev and not 1024 <= args.port_base <= 64000:
        raise MssgwError(
            f"--port-base {args.port_base}: expected 1024..64000 (dev listeners use high ports)"
        )
    if args.workers is not None and not 0 <= args.workers <= MAX_WORKERS:
        raise MssgwError(
            f"--workers {args.workers}: expected 1..{MAX_WORKERS}, or 0 for one per core"
        )
    args.state = os.path.abspath(args.state)
    if args.worker:
        return asyncio.run(_serve_worker(args))
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    if args.dev:
        logsetup.setup()
        settings, pki = await dev.prepare(Path(args.state), args.port_base)
    else:
        settings, pki = settings_from(args), None
    if args.workers is not None:
        gateway = dataclasses.replace(settings.gateway, workers=args.workers)
        settings = dataclasses.replace(settings, gateway=gateway)
    count = workers.worker_count(settings)
    if count > 1:
        return await _supervise(args, settings, pki, count)
    logsetup.setup(settings.logging.level, settings.logging.format)
    trust = runtime.build(settings) if settings.tls.certificate else None
    store = await Store.open(settings)
    app = App(settings, store, trust)
    try:
        ports = await app.start()
        if pki is not None:
            await _announce_dev(args, settings, store, pki, ports)
        await _run_until_stopped(app)
    finally:
        await app.stop()
        await store.close()
    log.info("stopped")
    return 0


async def _supervise(
    args: argparse.Namespace, settings: Settings, pki: dict[str, Any] | None, count: int
) -> int:
    """``gateway.workers`` > 1: bind the listeners, start the workers, watch them."""
    logsetup.setup(settings.logging.level, settings.logging.format, "supervisor")
    lock = workers.lock_state(settings.state_dir / "run")  # before touching anything
    try:
        store = await Store.open(settings)  # refuses an old schema before any worker starts
        try:
            users = None
            if pki is not None:
                domain = pki["operators"][0]["domain"]
                users_file = Path(args.state) / "users.json"
                users = await dev.ensure_demo_data(store, domain, pki, users_file)
        finally:
            await store.close()
        listeners = workers.enabled_listeners(settings, listener_factories())
        sockets = workers.bind_listeners(listeners, count)
    except BaseException:
        os.close(lock)
        raise
    supervisor = workers.Supervisor(settings.source, sockets)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: supervisor.signal_all(signal.SIGHUP))
    try:
        await supervisor.start()
        ports = workers.bound_ports(sockets[0])
        for name, port in ports.items():
            log.info("listener %s on %s:%d", name, listeners[name].address, port)
        if pki is not None and users is not None:
            state = Path(args.state)
            path = dev.write_dev_json(state, ports, pki, users, state / "mssgw.toml")
            log.info("development gateway ready: %s", path)
        every_worker_gone = asyncio.ensure_future(supervisor.wait_all_stopped())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({every_worker_gone, stopped}, return_when=asyncio.FIRST_COMPLETED)
        every_worker_gone.cancel()
        stopped.cancel()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await supervisor.stop()
        workers.close_all(sockets)
        os.close(lock)
    log.info("stopped")
    return 0


async def _serve_worker(args: argparse.Namespace) -> int:
    """One worker of a supervisor (``--worker K/N``): the whole gateway on its sockets."""
    # The supervisor turns Ctrl-C into SIGTERM for each worker, once; a reload
    # asked for before this worker serves is moot (it reads everything afresh).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    role = workers.parse_role(args.worker, args.listen_fds)
    lifeline, ready = _control_fds(args.control_fds)
    settings = settings_from(args)
    logsetup.setup(settings.logging.level, settings.logging.format, role.label)
    trust = runtime.build(settings) if settings.tls.certificate else None
    store = await Store.open(settings)
    app = App(settings, store, trust, role=role)
    try:
        await app.start()
        await _run_until_stopped(
            app,
            lifeline=lifeline,
            interrupt=False,
            ready=lambda: workers.report_ready(ready),
        )
    finally:
        await app.stop()
        await store.close()
    log.info("stopped")
    return 0


def _control_fds(text: str) -> tuple[int, int]:
    try:
        lifeline, ready = (int(part) for part in text.split(","))
    except ValueError:
        raise MssgwError(f"--control-fds {text!r}: expected LIFELINE,READY") from None
    return lifeline, ready


async def _announce_dev(
    args: argparse.Namespace,
    settings: Settings,
    store: Store,
    pki: dict[str, Any],
    ports: dict[str, int],
) -> None:
    state = Path(args.state)
    domain = pki["operators"][0]["domain"]
    users = await dev.ensure_demo_data(store, domain, pki, state / "users.json")
    path = dev.write_dev_json(state, ports, pki, users, state / "mssgw.toml")
    log.info("development gateway ready: %s", path)


async def _run_until_stopped(
    app: App,
    *,
    lifeline: int | None = None,
    interrupt: bool = True,
    ready: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGTERM (and SIGINT when ``interrupt``); SIGHUP reloads.
    ``ready`` is called once the handlers are in place (a worker tells its
    supervisor then, so a SIGHUP passed on at once is a reload, never a kill)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT) if interrupt else (signal.SIGTERM,):
        loop.add_signal_handler(sig, stop.set)
    if lifeline is not None:
        workers.watch_lifeline(lifeline, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(app.reload()))
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
