"""The trust-space services of a running gateway, built from settings.

One place builds what every edge needs from ``[tls]`` and ``[trust]``: the
reloadable TLS contexts (operator port: client certificate required; client
ports: optional; relay: our certificate as client certificate) and the liste
blanche in use with its refresher.  Edges receive this object; they never
read certificate files or the list themselves.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from mssgw.aio import cancel_and_wait
from mssgw.config import Settings
from mssgw.errors import ConfigError, MssgwError
from mssgw.tls.context import load_certificates
from mssgw.tls.reload import ReloadingContext, TlsFiles
from mssgw.trust.listeblanche import ListeBlanche
from mssgw.trust.refresh import ListeBlancheStore, Refresher

log = logging.getLogger(__name__)


@dataclass
class TrustSpace:
    """TLS contexts and the liste blanche, reloadable while running."""

    operator_tls: ReloadingContext
    client_tls: ReloadingContext
    relay_tls: ReloadingContext
    listes: ListeBlancheStore
    refresher: Refresher | None = None
    reload_interval: float = 30.0
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def anchors(self) -> list[x509.Certificate]:
        return self.operator_tls.anchors

    @property
    def crls(self) -> list[x509.CertificateRevocationList] | None:
        return self.operator_tls.crls if self.operator_tls.files.crls else None

    @property
    def liste(self) -> ListeBlanche | None:
        """The list in use; ``None`` means nobody is trusted (fail closed)."""
        return self.listes.current

    def contexts(self) -> list[ReloadingContext]:
        return [self.operator_tls, self.client_tls, self.relay_tls]

    async def start(self) -> None:
        self._stop = asyncio.Event()
        for holder in self.contexts():
            self._tasks.append(asyncio.create_task(holder.watch(self.reload_interval, self._stop)))
        if self.refresher is not None:
            self._tasks.append(asyncio.create_task(self.refresher.run(self._stop)))

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks.clear()

    def reload(self) -> None:
        """SIGHUP: rebuild every context and re-read the list's last good copy."""
        for holder in self.contexts():
            try:
                holder.reload()
            except MssgwError as exc:
                log.error("TLS reload failed, keeping the previous certificates: %s", exc)
        if self.listes.path.exists():
            try:
                self.listes.offer(self.listes.path.read_bytes(), source=str(self.listes.path))
            except MssgwError as exc:
                log.error("liste blanche reload failed, keeping the copy in use: %s", exc)

    def metrics(self) -> dict[str, float]:
        values = self.refresher.metrics() if self.refresher else {}
        age = self.listes.age()
        values.setdefault("mssgw_liste_blanche_age_seconds", age.total_seconds() if age else -1.0)
        values.setdefault("mssgw_liste_blanche_stale", 1.0 if self.listes.is_stale() else 0.0)
        not_after = self.operator_tls.certificate_not_after()
        if not_after is not None:
            values["mssgw_certificate_expiry_seconds"] = (
                not_after - datetime.now(UTC)
            ).total_seconds()
        return values


def build(settings: Settings) -> TrustSpace:
    """Build the trust space; raise ``ConfigError`` naming the key at fault."""
    tls, trust = settings.tls, settings.trust
    if not (tls.certificate and tls.key and tls.anchors):
        raise ConfigError(
            f"{settings.source}: tls.certificate, tls.key and tls.anchors are required "
            "(the IGC-Santé certificate of this gateway and the IGC-Santé anchors)"
        )
    files = TlsFiles(tls.certificate, tls.key, tls.anchors, list(tls.crls))
    relay = TlsFiles(
        tls.client_certificate or tls.certificate,
        tls.client_key or tls.key,
        tls.anchors,
        list(tls.crls),
    )
    operator_tls = ReloadingContext(
        files, side="server", profile=tls.profile, client_cert="required"
    )
    client_tls = ReloadingContext(files, side="server", profile=tls.profile, client_cert="optional")
    relay_tls = ReloadingContext(relay, side="client", profile=tls.profile)
    path = (
        Path(trust.liste_blanche_file)
        if trust.liste_blanche_file
        else settings.state_dir / "listeblanche.xml"
    )
    listes = ListeBlancheStore(
        path,
        anchors=load_certificates(tls.anchors),
        expected_signer=trust.expected_signer or None,
        max_age=timedelta(hours=trust.max_age_hours),
    )
    try:
        listes.load()
    except MssgwError as exc:
        # Fail closed: without a valid list nobody is trusted, but the daemon still
        # runs (local delivery, IMAP) and the refresher may bring a good copy.
        log.error("liste blanche %s not usable: %s", path, exc)
    if listes.current is None:
        log.warning(
            "no valid liste blanche in use: every peer will be refused until one is fetched"
        )
    refresher = (
        Refresher(listes, trust.liste_blanche_url, trust.refresh_interval)
        if trust.liste_blanche_url
        else None
    )
    return TrustSpace(
        operator_tls, client_tls, relay_tls, listes, refresher, float(tls.reload_interval)
    )
