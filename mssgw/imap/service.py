"""What every IMAP connection of one gateway shares.

One :class:`ImapService` per running gateway (both listeners, 143 and 993,
use it): the folder/message operations (``store.mail.Mail``), the change
channel, the authentication service and its rate limiter, connection
counters, and the limits.  Building it also installs the store hooks that
keep IMAP in step with delivery: the MIME cache (``Messages.annotate``) and
the notification of new mail (``Messages.observers``).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mssgw import __version__
from mssgw.auth.service import AuthService
from mssgw.errors import MssgwError
from mssgw.imap import cache
from mssgw.imap.notify import LocalChannel
from mssgw.store import Store
from mssgw.store.mail import Mail
from mssgw.store.traces import TraceRecord

if TYPE_CHECKING:
    from mssgw.app import App
    from mssgw.runtime import TrustSpace

log = logging.getLogger(__name__)

#: RFC 7162 §4: servers should accept command lines of at least 8192 octets;
#: Thunderbird's UID sets can be long, so IMAP never goes below this.
MIN_LINE_LENGTH = 8192


@dataclass(frozen=True)
class ImapLimits:
    """Bounds of one connection; see docs/imap.md."""

    max_line_length: int = 64 * 1024
    max_literal: int = 50 * 1024 * 1024
    #: Inactivity before autologout, and longest IDLE (RFC 3501 §5.4: ≥ 30 min).
    idle_timeout: float = 1800.0
    #: Longest wait for the rest of a command once it has started.
    command_timeout: float = 300.0
    #: Untagged "* OK Still here" during IDLE, so NAT boxes keep the flow.
    keepalive: float = 120.0
    max_connections: int = 1000
    max_per_ip: int = 50
    #: Thunderbird opens up to 5 per account; a delegate has several accounts.
    max_per_identity: int = 20
    #: Literals from this size on go to a temporary file, not to memory.
    spool_threshold: int = 256 * 1024
    #: Messages fetched per store round trip.
    fetch_batch: int = 200


class ImapService:
    def __init__(
        self,
        store: Store,
        *,
        limits: ImapLimits | None = None,
        trust: TrustSpace | None = None,
        hostname: str = "localhost",
        auth: AuthService | None = None,
    ) -> None:
        self.store = store
        self.limits = limits or ImapLimits()
        self.trust = trust
        self.hostname = hostname
        self.mail = Mail(store)
        self.channel = LocalChannel()
        #: Shared with submission when given (one failure budget per account, AUTH-4).
        self.auth = auth or AuthService(store)
        self.per_ip: Counter[str] = Counter()
        self.per_identity: Counter[str] = Counter()
        self.connections = 0
        self._background: set[asyncio.Task[None]] = set()
        if store.messages.annotate is None:
            store.messages.annotate = cache.annotate
        store.messages.observers.append(self.channel.publish)
        self.mail.observers.append(self.channel.publish)

    def id_params(self) -> dict[str, str | None]:
        return {"name": "mssgw", "version": __version__, "vendor": "mssgw"}

    def trace(self, record: TraceRecord) -> None:
        """Record a client action (TRACE-1) without delaying the reply."""

        async def write() -> None:
            try:
                await self.store.traces.add(record)
            except MssgwError as exc:
                log.error("cannot record IMAP trace: %s", exc)

        task = asyncio.get_running_loop().create_task(write())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait for pending traces (tests, shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def close(self) -> None:
        if self.channel.publish in self.store.messages.observers:
            self.store.messages.observers.remove(self.channel.publish)


_SERVICES: weakref.WeakKeyDictionary[App, ImapService] = weakref.WeakKeyDictionary()




def for_app(app: App) -> ImapService:
    """The one service of a gateway, built on first use from its settings."""
    service = _SERVICES.get(app)
    if service is None:
        lim = app.settings.limits
        limits = ImapLimits(
            max_line_length=max(lim.max_line_length, MIN_LINE_LENGTH),
            max_literal=lim.imap_max_literal,
            idle_timeout=float(lim.idle_timeout),
            command_timeout=float(lim.command_timeout),
            max_connections=lim.max_connections,
            max_per_ip=lim.max_connections_per_ip,
            max_per_identity=lim.imap_max_connections_per_identity,
        )
        service = ImapService(
            app.store,
            limits=limits,
            trust=app.trust,
            hostname=app.settings.gateway.hostname,
            auth=app.auth,
        )
        _SERVICES[app] = service

        bridge = app.node_bridge
        if bridge is not None:  # other nodes' changes reach this node's sessions
            bridge.local = service.channel
            service.mail.observers.append(bridge.publish)

        async def shut_down() -> None:
            if bridge is not None:
                bridge.local = None
                if bridge.publish in service.mail.observers:
                    service.mail.observers.remove(bridge.publish)
            await service.settle()
            service.close()
            _SERVICES.pop(app, None)

        app.shutdown_hooks.append(shut_down)
    return service
