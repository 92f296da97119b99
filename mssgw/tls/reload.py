"""Hot reload of certificates, keys, anchors and CRLs (SPEC TLS-4).

``ReloadingContext`` holds the current ``ssl.SSLContext`` of one listener
(or of the relay) and rebuilds it when a file changes (``maybe_reload``,
polled by ``watch``) or on demand (``reload``, e.g. on SIGHUP).  Open
connections keep the context they were made with; new handshakes get the
new one, in both ways an asyncio edge can use TLS:

* STARTTLS (``loop.start_tls``) and the relay: pass ``holder.current`` for
  each new connection;
* implicit TLS (``asyncio.start_server(ssl=...)``): pass
  ``holder.listener_context``, a fixed front context whose SNI callback
  (called by OpenSSL for every ClientHello, with or without SNI) moves the
  new connection onto ``holder.current`` (``SSL_set_SSL_CTX``): certificate,
  key, anchors and CRLs come from the new context.  Protocol versions,
  suites and the verify mode are per connection from the front context,
  so a profile or client-certificate-mode change needs a restart
  (documented in docs/trust.md).

A failed rebuild (half-written key, bad PEM) keeps the previous context and
is logged; a CRL that fails to refresh keeps its last valid copy
(``CrlSet``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from mssgw.errors import MssgwError
from mssgw.tls.context import (
    ClientCertMode,
    TlsConfigError,
    client_context,
    load_certificates,
    server_context,
)
from mssgw.tls.crl import CrlSet

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int, int], ...]


@dataclass
class TlsFiles:
    """The files a context is built from (paths as in the configuration)."""

    certificate: str = ""
    key: str = ""
    anchors: str = ""
    crls: list[str] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [p for p in (self.certificate, self.key, self.anchors, *self.crls) if p]


def _fingerprint(paths: list[str]) -> Fingerprint:
    """(path, mtime_ns, size, inode) of each file: a rename-into-place or an
    in-place rewrite both change it."""
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((path, -1, -1, -1))
            continue
        out.append((path, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class ReloadingContext:
    """The current TLS context of a listener or of the relay, reloadable."""

    def __init__(
        self,
        files: TlsFiles,
        *,
        side: str = "server",
        profile: str = "mssante",
        client_cert: ClientCertMode = "required",
    ) -> None:
        if side not in ("server", "client"):
            raise ValueError(f"side {side!r}: expected server or client")
        self.files = files
        self.side = side
        self.profile = profile
        self.client_cert = client_cert
        self.crl_set = CrlSet([Path(p) for p in files.crls])
        self.anchors: list[x509.Certificate] = []
        self.loaded_at = datetime.now(UTC)
        self.generation = 0
        self._fingerprint: Fingerprint = ()
        self._current = self._build()  # raises: a listener never starts without TLS
        self._front = self._current
        if side == "server":
            self._front.sni_callback = self._on_client_hello

    # ------------------------------------------------------------------ access

    @property
    def current(self) -> ssl.SSLContext:
        """The newest good context: pass it to each ``start_tls``/connect."""
        return self._current

    @property
    def listener_context(self) -> ssl.SSLContext:
        """Fixed context for ``start_server(ssl=...)``; hands off to ``current``."""
        return self._front

    @property
    def crls(self) -> list[x509.CertificateRevocationList]:
        """CRLs in use (last valid ones), for Python-side checks (binding)."""
        return self.crl_set.crls

    def certificate_not_after(self) -> datetime | None:
        """Expiry of our certificate, for the "expiring soon" metric (TLS-4)."""
        if not self.files.certificate:
            return None
        return load_certificates(self.files.certificate)[0].not_valid_after_utc

    # ------------------------------------------------------------------ reload

    def _build(self) -> ssl.SSLContext:
        fingerprint = _fingerprint(self.files.paths())
        self.crl_set.refresh()
        missing = self.crl_set.missing()
        if missing:
            raise TlsConfigError(f"{missing[0]}: CRL cannot be loaded (tls.crls)")
        crls = self.crl_set.crls if self.files.crls else None
        anchors = load_certificates(self.files.anchors) if self.files.anchors else []
        if self.side == "server":
            ctx = server_context(
                self.files.certificate,
                self.files.key,
                anchors,
                profile=self.profile,
                client_cert=self.client_cert,
                crls=crls,
            )
        else:
            ctx = client_context(
                self.files.certificate or None,
                self.files.key or None,
                anchors,
                profile=self.profile,
                crls=crls,
            )
        self.anchors = anchors
        self._fingerprint = fingerprint
        self.loaded_at = datetime.now(UTC)
        self.generation += 1
        return ctx

    def reload(self) -> None:
        """Rebuild now; on failure keep the previous context and raise."""
        previous = self._current
        try:
            self._current = self._build()
        except MssgwError:
            self._current = previous
            raise
        log.info("TLS context reloaded (generation %d)", self.generation)

    def changed(self) -> bool:
        return _fingerprint(self.files.paths()) != self._fingerprint

    def maybe_reload(self) -> bool:
        """Reload if a file changed; log (never raise) a failed reload."""
        if not self.changed():
            return False
        try:
            self.reload()
        except MssgwError as exc:
            # Remember the broken state so the log is not flooded every poll.
            self._fingerprint = _fingerprint(self.files.paths())
            log.error("TLS reload failed, keeping the previous certificates: %s", exc)
            return False
        return True

    async def watch(self, interval: float, stop: asyncio.Event | None = None) -> None:
        """Poll the files every ``interval`` seconds until ``stop`` is set."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                self.maybe_reload()

    # ------------------------------------------------------------------ handoff

    def _on_client_hello(
        self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, ctx: ssl.SSLContext
    ) -> None:
        current = self._current
        if current is not ctx:
            conn.context = current


def on_sighup(holders: list[ReloadingContext]) -> Callable[[], None]:
    """A handler for ``loop.add_signal_handler(SIGHUP, ...)`` reloading all."""

    def handler() -> None:
        for holder in holders:
            try:
                holder.reload()
            except MssgwError as exc:
                log.error("TLS reload on SIGHUP failed, keeping the previous certificates: %s", exc)

    return handler
