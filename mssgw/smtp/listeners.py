"""SMTP listener factories, discovered by ``mssgw.app`` (``EDGE_MODULES``).

``LISTENERS`` maps a listener name of ``[listeners.*]`` to a coroutine
building its ``asyncio.Server``.  ``mta`` is port 25 (other operators,
``mssgw.smtp.inbound``); submission adds its own entries here.

Shared by every SMTP listener: ``listener_env`` (limits, connection gate,
counters, spool folder, TLS context holder) and ``serve`` (the server, plus
a watcher that closes open sessions with ``421`` once the server is closed,
since ``asyncio.Server.close`` leaves established connections running).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from mssgw.config import ListenerSettings
from mssgw.errors import MssgwError
from mssgw.smtp.inbound import InboundService, InboundSession
from mssgw.smtp.session import ConnectionGate, EsmtpSession, ListenerEnv, SessionLimits
from mssgw.smtp.stats import stats_for
from mssgw.tls.reload import ReloadingContext

if TYPE_CHECKING:
    from mssgw.app import App, ListenerFactory

log = logging.getLogger(__name__)

#: How often the shutdown watcher looks whether its server was closed.
_WATCH_INTERVAL = 0.2


def listener_env(
    app: App, name: str, tls: ReloadingContext | None, *, require_tls: bool = True
) -> ListenerEnv:
    """Everything the sessions of listener ``name`` share; creates the spool folder."""
    limits = app.settings.limits
    spool = app.settings.state_dir / "spool"
    try:
        spool.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MssgwError(f"{spool}: cannot create the SMTP spool folder: {exc.strerror}") from None
    # aiosmtpd logs every connection at INFO on "mail.log"; the sessions log
    # what matters themselves (never content).
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    return ListenerEnv(
        name=name,
        hostname=app.settings.gateway.hostname,
        limits=SessionLimits.from_settings(limits),
        gate=ConnectionGate(limits.max_connections, limits.max_connections_per_ip),
        stats=stats_for(app, name),
        spool_dir=spool,
        tls=tls,
        require_tls=require_tls,
    )


async def serve(
    app: App, env: ListenerEnv, lst: ListenerSettings, factory: Callable[[], EsmtpSession]
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, **app.bind(env.name, lst), backlog=512)
    env.spawn(_close_sessions_after(server, env))
    return server


async def _close_sessions_after(server: asyncio.Server, env: ListenerEnv) -> None:
    # asyncio.Server has no "closed" callback: poll (cheap, and only one per listener).
    while server.is_serving():  # noqa: ASYNC110
        await asyncio.sleep(_WATCH_INTERVAL)
    for session in list(env.gate.sessions):
        transport = session.transport
        if transport is not None and not transport.is_closing():
            # RFC 5321 §3.8: 421 before closing when the service shuts down.
            transport.write(f"421 4.3.2 {env.hostname} shutting down\r\n".encode())  # type: ignore[attr-defined]
            transport.close()


async def mta_listener(app: App, lst: ListenerSettings) -> asyncio.Server:
    """Port 25: STARTTLS mandatory, client certificate required (SPEC TLS-2)."""
    if lst.tls != "starttls":
        raise MssgwError(
            f"listeners.mta.tls = {lst.tls!r}: the operator port must use 'starttls' (SPEC TLS-2)"
        )
    if app.trust is None:
        raise MssgwError("listeners.mta: needs tls.certificate, tls.key and tls.anchors")
    env = listener_env(app, "mta", app.trust.operator_tls)
    service = InboundService(app, env)
    loop = asyncio.get_running_loop()
    return await serve(app, env, lst, lambda: InboundSession(service, loop))


from mssgw.smtp.submission import submission_listener, submissions_listener  # noqa: E402

LISTENERS: dict[str, ListenerFactory] = {
    "mta": mta_listener,
    "submission": submission_listener,
    "submissions": submissions_listener,
}
