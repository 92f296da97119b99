"""``mssgw serve``: run the gateway."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path
from typing import Any

from mssgw import dev, logsetup, runtime
from mssgw.app import App
from mssgw.cli._common import settings_from
from mssgw.config import Settings
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
    p.set_defaults(handler=serve)


def serve(args: argparse.Namespace) -> int:
    if args.dev and not 1024 <= args.port_base <= 64000:
        raise MssgwError(
            f"--port-base {args.port_base}: expected 1024..64000 (dev listeners use high ports)"
        )
    args.state = os.path.abspath(args.state)
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    if args.dev:
        logsetup.setup()
        settings, pki = await dev.prepare(Path(args.state), args.port_base)
    else:
        settings, pki = settings_from(args), None
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


async def _run_until_stopped(app: App) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(app.reload()))
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
