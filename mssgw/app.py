"""Builds the services and listeners from settings; start, reload, stop.

Listeners are registered by name in ``LISTENERS``: each issue that brings a
protocol edge (SMTP, IMAP) adds its factory there.  A listener that is
configured but has no factory yet is reported and skipped, so the daemon
always starts with what exists.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from mssgw import __version__
from mssgw.aio import cancel_and_wait
from mssgw.auth.ratelimit import RateLimiter
from mssgw.auth.service import AuthService
from mssgw.config import ListenerSettings, Settings
from mssgw.errors import MssgwError, StoreError
from mssgw.runtime import TrustSpace

if TYPE_CHECKING:
    from mssgw.directory.lookup import DirectoryLookup
    from mssgw.smtp.relay import RelayWorker
from mssgw.imap.pgnotify import PostgresBridge, asyncpg_dsn
from mssgw.imap.siblings import SiblingBridge
from mssgw.store import Store
from mssgw.store.mail import Mail
from mssgw.web.autoconfig import ClientEndpoints
from mssgw.web.http import HttpService
from mssgw.workers import PRIMARY_ONLY, WorkerRole

log = logging.getLogger(__name__)

ListenerFactory = Callable[["App", ListenerSettings], Awaitable[asyncio.Server]]


async def _http_listener(app: App, lst: ListenerSettings) -> asyncio.Server:
    service = HttpService(
        app.health, app.metrics, app.client_endpoints(), app.store.mailboxes.hosted_domains
    )
    return await service.serve(**app.bind("http", lst))


LISTENERS: dict[str, ListenerFactory] = {"http": _http_listener}

#: Edge packages; each exposes ``LISTENERS: dict[str, ListenerFactory]`` for the
#: listener names it serves (``mta``, ``submission``, ``imap``...).  A package
#: not present in this build is skipped.
EDGE_MODULES = ("mssgw.smtp.listeners", "mssgw.imap.listeners")


def listener_factories() -> dict[str, ListenerFactory]:
    factories = dict(LISTENERS)
    for name in EDGE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and name.startswith(exc.name):
                continue
            raise
        factories.update(module.LISTENERS)
    return factories


def directory_lookup(settings: Settings, store: Store) -> DirectoryLookup:
    """The mail path's view of the directory replica (SPEC DIR-3): cached, bounded in time."""
    from mssgw.directory.ldap_replica import LdapReplica
    from mssgw.directory.lookup import DirectoryLookup, LookupBackend, ThreadedBackend
    from mssgw.directory.settings import read_secret
    from mssgw.directory.sql_replica import SqlReplica

    ds = settings.directory
    backend: LookupBackend
    if ds.replica == "ldap":
        password = read_secret(ds.ldap_password_file, "directory.ldap_password_file")
        replica = LdapReplica(ds.ldap_url, ds.ldap_bind_dn, password, ds.ldap_base)
        backend = ThreadedBackend(replica.get_blocking)
    else:
        backend = SqlReplica.from_store(store)
    return DirectoryLookup.from_settings(backend, ds)


class App:
    """The running gateway: one store, the listeners, background tasks."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        trust: TrustSpace | None = None,
        *,
        role: WorkerRole | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        #: Which worker process this is (``gateway.workers``, see mssgw.workers).
        self.role = role or WorkerRole()
        #: TLS contexts and liste blanche; ``None`` when no certificate is configured
        #: (then only plain listeners such as ``http`` can start).
        self.trust = trust
        self.servers: dict[str, asyncio.Server] = {}
        self.relay: RelayWorker | None = None
        self.directory = directory_lookup(settings, store)
        #: Authentication for every client protocol: one rate-limit budget (AUTH-4).
        self.auth = AuthService(
            store, RateLimiter.shared_by(self.role.count) if self.role.count > 1 else None
        )
        #: Called by ``stop`` after the listeners closed (edges release their services).
        self.shutdown_hooks: list[Callable[[], Awaitable[None]]] = []
        # Every delivery caches ENVELOPE and BODYSTRUCTURE (SPEC STORE-3), IMAP or not.
        from mssgw.imap.cache import annotate

        if store.messages.annotate is None:
            store.messages.annotate = annotate
        self.started_at = time.time()
        self._housekeeping: asyncio.Task[None] | None = None
        #: Folder changes to and from the other nodes (PostgreSQL, see imap/pgnotify.py)
        #: or the other workers of this gateway (SQLite, see imap/siblings.py).
        self.node_bridge: PostgresBridge | SiblingBridge | None = None

    def bind(self, name: str, lst: ListenerSettings) -> dict[str, Any]:
        """Where listener ``name`` accepts: the socket inherited from the supervisor
        (``gateway.workers`` > 1), else its configured address and port; passed
        as keywords to ``loop.create_server``."""
        sock = self.role.sockets.get(name)
        if sock is not None:
            return {"sock": sock}
        return {"host": lst.address, "port": lst.port}

    def client_endpoints(self) -> ClientEndpoints:
        ports = {
            name: self.port_of(name) for name in ("imaps", "imap", "submissions", "submission")
        }
        return ClientEndpoints(self.settings.gateway.hostname, **ports)

    def port_of(self, name: str) -> int | None:
        server = self.servers.get(name)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
        lst: ListenerSettings = getattr(self.settings.listeners, name)
        return lst.port if lst.enabled and name in listener_factories() else None

    async def start(self) -> dict[str, int]:
        """Open every enabled listener that exists; return name → bound port."""
        for domain in self.settings.gateway.domains:
            await self.store.mailboxes.ensure_domain(domain)
        if self.trust is not None:
            await self.trust.start()
        if self.store.dialect == "postgresql" and self.settings.store.node_notifications:
            self.node_bridge = PostgresBridge(asyncpg_dsn(self.store.url))
        elif self.store.dialect != "postgresql" and self.role.count > 1:
            run_dir = self.settings.state_dir / "run"
            self.node_bridge = SiblingBridge(run_dir, self.role.index, self.role.count)
        if self.node_bridge is not None:
            self.store.messages.observers.append(self.node_bridge.publish)
            self.node_bridge.begin()
        factories = listener_factories()
        for f in fields(self.settings.listeners):
            lst: ListenerSettings = getattr(self.settings.listeners, f.name)
            if not lst.enabled or (f.name in PRIMARY_ONLY and not self.role.primary):
                continue
            factory = factories.get(f.name)
            if factory is None:
                log.info("listener %s: not available in this version, skipped", f.name)
                continue
            if lst.tls != "none" and self.trust is None:
                raise MssgwError(
                    f"listeners.{f.name}: TLS listener but no certificate: set tls.certificate, "
                    "tls.key and tls.anchors (or disable the listener)"
                )
            try:
                self.servers[f.name] = await factory(self, lst)
            except OSError as exc:
                await self.stop()
                raise MssgwError(
                    f"listeners.{f.name}: cannot listen on {lst.address}:{lst.port}: {exc.strerror}"
                ) from None
        if self.trust is not None:
            # Outbound delivery to other operators (SPEC FLOW-3): needs our certificate.
            from mssgw.smtp.relay import RelayWorker

            self.relay = RelayWorker.for_app(self)
            await self.relay.start()
        if self.role.primary:  # once per gateway, not once per worker
            self._housekeeping = asyncio.create_task(self._daily(), name="mssgw-housekeeping")
        bound = {name: int(s.sockets[0].getsockname()[1]) for name, s in self.servers.items()}
        for name, port in bound.items():
            log.info(
                "listener %s on %s:%d", name, getattr(self.settings.listeners, name).address, port
            )
        return bound

    async def stop(self) -> None:
        await cancel_and_wait(self._housekeeping)
        self._housekeeping = None
        for server in self.servers.values():
            server.close()
        for server in self.servers.values():
            await server.wait_closed()
        self.servers.clear()
        for hook in reversed(self.shutdown_hooks):
            try:
                await hook()
            except Exception:
                log.exception("shutdown hook failed")
        self.shutdown_hooks.clear()
        if self.relay is not None:
            await self.relay.stop()
            self.relay = None
        if self.trust is not None:
            await self.trust.stop()
        if self.node_bridge is not None:
            await self.node_bridge.stop()
            if self.node_bridge.publish in self.store.messages.observers:
                self.store.messages.observers.remove(self.node_bridge.publish)
            self.node_bridge = None

    async def purge_traces(self, *, at: datetime | None = None) -> dict[str, int]:
        """Delete traces past their retention (SPEC TRACE-1); return how many per category."""
        keep = self.settings.traces
        removed = await self.store.traces.purge_past_retention(
            transport_days=keep.transport_retention_days,
            client_days=keep.client_retention_days,
            at=at,
        )
        if any(removed.values()):
            log.info("traces purged past retention: %s", removed)
        return removed

    async def _daily(self) -> None:
        """Housekeeping at start, then every 24 hours."""
        keep = timedelta(days=self.settings.relay.keep_finished_days)
        mark: int | None = None
        while True:
            try:
                await self.purge_traces()
                forgotten = await self.store.queue.purge_finished(keep)
                if forgotten:
                    log.info("forgot %d finished queue row(s) past retention", forgotten)
                mark = await self.forget_expunged(mark)
            except MssgwError as exc:
                log.error("housekeeping failed: %s", exc)
            await asyncio.sleep(86400)

    async def forget_expunged(self, mark: int | None) -> int:
        """Delete the IMAP expunge records up to ``mark`` (taken at the previous
        housekeeping, so at least a day old; ``None`` after a start) and return
        the mark for the next one (``Mail.forget_expunged`` says why a day is safe)."""
        mail = Mail(self.store)
        if mark:
            forgotten = await mail.forget_expunged(mark)
            if forgotten:
                log.info("forgot %d IMAP expunge record(s) older than a day", forgotten)
        return await mail.expunged_mark()

    async def reload(self) -> None:
        """SIGHUP: re-read what can change without a restart (certificates, lists)."""
        log.info("reload requested")
        if self.trust is not None:
            self.trust.reload()

    async def health(self) -> dict[str, object]:
        try:
            await self.store.ping()
            db = "ok"
        except StoreError as exc:
            db = str(exc)
        return {
            "status": "ok" if db == "ok" else "degraded",
            "database": db,
            "version": __version__,
            "uptime_seconds": int(time.time() - self.started_at),
        }

    async def metrics(self) -> str:
        committer = self.store.committer
        lines = [
            "# HELP mssgw_up 1 when the daemon runs.",
            "# TYPE mssgw_up gauge",
            "mssgw_up 1",
            "# TYPE mssgw_store_commit_batches_total counter",
            f"mssgw_store_commit_batches_total {committer.batches}",
            "# TYPE mssgw_store_commit_units_total counter",
            f"mssgw_store_commit_units_total {committer.units}",
        ]
        from mssgw.smtp.stats import all_stats

        for stats in all_stats(self):
            lines += stats.prometheus()
        if self.trust is not None:
            for name, value in sorted(self.trust.metrics().items()):
                lines += [f"# TYPE {name} gauge", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"
