"""Liste blanche refresh with a last good copy (SPEC TRUST-3).

* ``ListeBlancheStore`` owns the copy in use: on disk (atomic replace, so a
  crash never leaves half a file) and in memory.  A new copy is accepted
  only if it verifies (``load_verified``) and its ``DateDeGeneration`` is
  not older than the copy in use.  Anything else leaves the copy in use
  untouched: never fail open.
* ``fetch_once`` / ``fetch_once_async``: one conditional GET (RFC 9110
  §13.1: ``If-None-Match`` / ``If-Modified-Since``) or one file read; they
  report an outcome and never raise for network or validation problems.
* ``Refresher``: the daemon's periodic task; exposes the age of the copy in
  use and warns past ``max_age`` (default 48 h).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import httpx
from cryptography import x509

from mssgw.trust.listeblanche import MAX_BYTES, ListeBlanche, ListeBlancheError, load_verified

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Status = Literal["updated", "not_modified", "refused", "failed"]
USER_AGENT = "mssgw-liste-blanche/1"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class FetchOutcome:
    """What one refresh attempt did; ``liste`` is the copy in use after it."""

    status: Status
    detail: str
    liste: ListeBlanche | None

    @property
    def ok(self) -> bool:
        return self.status in ("updated", "not_modified")


def _atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class ListeBlancheStore:
    """The liste blanche in use and its last good copy on disk."""

    def __init__(
        self,
        path: Path,
        *,
        anchors: Sequence[x509.Certificate] | None,
        expected_signer: str | None,
        max_age: timedelta = timedelta(hours=48),
        clock: Clock = utcnow,
    ) -> None:
        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.name + ".meta.json")
        self.anchors = anchors
        self.expected_signer = expected_signer or None
        self.max_age = max_age
        self.clock = clock
        self.current: ListeBlanche | None = None
        self.meta: dict[str, str] = {}

    def load(self) -> ListeBlanche | None:
        """Verify and use the copy on disk, if any (daemon start).

        It is verified again at the present time: a copy whose signer has
        expired since is not used (fail closed), and the error is raised.
        """
        if not self.path.exists():
            return None
        data = self.path.read_bytes()
        self.current = load_verified(
            data, at=self.clock(), anchors=self.anchors, expected_signer=self.expected_signer
        )
        try:
            self.meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            self.meta = {}
        return self.current

    def offer(
        self, data: bytes, *, source: str, etag: str = "", last_modified: str = ""
    ) -> ListeBlanche:
        """Verify ``data``; if acceptable, make it the copy in use (and on disk).

        Raises ``ListeBlancheError``; the copy in use is then unchanged.
        """
        liste = load_verified(
            data, at=self.clock(), anchors=self.anchors, expected_signer=self.expected_signer
        )
        current = self.current
        if current is not None and liste.generated_at < current.generated_at:
            raise ListeBlancheError(
                f"liste blanche generated {liste.generated_at.isoformat()} is older than the "
                f"copy in use ({current.generated_at.isoformat()}): refused"
            )
        if current is None or liste.sha256 != current.sha256:
            _atomic_write(self.path, data)
        self.meta = {
            "source": source,
            "etag": etag,
            "last_modified": last_modified,
            "fetched_at": self.clock().isoformat(),
            "sha256": liste.sha256,
            "generated_at": liste.generated_at.isoformat(),
        }
        _atomic_write(self.meta_path, json.dumps(self.meta, indent=2).encode())
        self.current = liste
        return liste

    def conditional_headers(self, source: str) -> dict[str, str]:
        """Validators of the copy in use, when it came from ``source``."""
        if self.current is None or self.meta.get("source") != source:
            return {}
        headers = {}
        if self.meta.get("etag"):
            headers["If-None-Match"] = self.meta["etag"]
        if self.meta.get("last_modified"):
            headers["If-Modified-Since"] = self.meta["last_modified"]
        return headers

    def age(self) -> timedelta | None:
        """Age of the copy in use (now − DateDeGeneration), None without one."""
        return None if self.current is None else self.clock() - self.current.generated_at

    def is_stale(self) -> bool:
        age = self.age()
        return age is None or age > self.max_age


# --------------------------------------------------------------------------- one attempt


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _offer(
    store: ListeBlancheStore, data: bytes, source: str, etag: str, modified: str
) -> FetchOutcome:
    before = store.current
    try:
        liste = store.offer(data, source=source, etag=etag, last_modified=modified)
    except ListeBlancheError as exc:
        kept = _kept(store)
        log.error("liste blanche from %s refused: %s; %s", source, exc, kept)
        return FetchOutcome("refused", f"{exc}; {kept}", store.current)
    if before is not None and before.sha256 == liste.sha256:
        return FetchOutcome("not_modified", "same content as the copy in use", liste)
    return FetchOutcome(
        "updated",
        f"generated {liste.generated_at.isoformat()} "
        f"entries={liste.entries} domains={liste.domains}",
        liste,
    )


def _kept(store: ListeBlancheStore) -> str:
    if store.current is None:
        return "no good copy available"
    return f"keeping the copy generated {store.current.generated_at.isoformat()}"


def _failed(store: ListeBlancheStore, source: str, why: str) -> FetchOutcome:
    kept = _kept(store)
    log.error("liste blanche download from %s failed: %s; %s", source, why, kept)
    return FetchOutcome("failed", f"{why}; {kept}", store.current)


def _read_file(store: ListeBlancheStore, source: str) -> FetchOutcome:
    try:
        size = os.path.getsize(source)
        if size > MAX_BYTES:
            why = f"{source}: larger than {MAX_BYTES} bytes"
            return FetchOutcome("refused", f"{why}; {_kept(store)}", store.current)
        data = Path(source).read_bytes()
    except OSError as exc:
        return _failed(store, source, f"cannot read {source}: {exc.strerror}")
    return _offer(store, data, source, "", "")


def _response(
    store: ListeBlancheStore, source: str, status: int, headers: httpx.Headers, body: bytes
) -> FetchOutcome:
    if status == 304:
        return FetchOutcome("not_modified", "HTTP 304 Not Modified", store.current)
    if status != 200:
        return _failed(store, source, f"HTTP {status}")
    return _offer(store, body, source, headers.get("etag", ""), headers.get("last-modified", ""))


class _TooLarge(Exception):
    pass


def fetch_once(
    store: ListeBlancheStore,
    source: str,
    *,
    client: httpx.Client | None = None,
    timeout: float = 60.0,
) -> FetchOutcome:
    """One refresh from a URL (conditional GET) or a local file."""
    if not _is_url(source):
        return _read_file(store, source)
    own = client is None
    client = client or httpx.Client(timeout=timeout, headers={"User-Agent": USER_AGENT})
    try:
        with client.stream("GET", source, headers=store.conditional_headers(source)) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise _TooLarge
            return _response(store, source, response.status_code, response.headers, bytes(body))
    except _TooLarge:
        return _failed(store, source, f"response larger than {MAX_BYTES} bytes")
    except httpx.HTTPError as exc:
        return _failed(store, source, f"{type(exc).__name__}: {exc}")
    finally:
        if own:
            client.close()


async def fetch_once_async(
    store: ListeBlancheStore,
    source: str,
    *,
    client: httpx.AsyncClient | None = None,
    timeout: float = 60.0,  # noqa: ASYNC109 - passed to httpx, which owns the I/O
) -> FetchOutcome:
    """``fetch_once`` for the daemon: download async, verify in a thread."""
    if not _is_url(source):
        return await asyncio.to_thread(_read_file, store, source)
    own = client is None
    client = client or httpx.AsyncClient(timeout=timeout, headers={"User-Agent": USER_AGENT})
    try:
        async with client.stream(
            "GET", source, headers=store.conditional_headers(source)
        ) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise _TooLarge
            status, headers = response.status_code, response.headers
    except _TooLarge:
        return _failed(store, source, f"response larger than {MAX_BYTES} bytes")
    except httpx.HTTPError as exc:
        return _failed(store, source, f"{type(exc).__name__}: {exc}")
    finally:
        if own:
            await client.aclose()
    return await asyncio.to_thread(_response, store, source, status, headers, bytes(body))


# --------------------------------------------------------------------------- periodic task


class Refresher:
    """Poll the source every ``interval`` seconds; expose freshness."""

    def __init__(self, store: ListeBlancheStore, source: str, interval: float = 3600) -> None:
        self.store = store
        self.source = source
        self.interval = interval
        self.last: FetchOutcome | None = None
        self.last_success: datetime | None = None

    async def refresh(self) -> FetchOutcome:
        outcome = await fetch_once_async(self.store, self.source)
        self.last = outcome
        if outcome.ok:
            self.last_success = self.store.clock()
        if self.store.is_stale():
            log.warning(
                "liste blanche in use is stale: age %s exceeds %s (%s)",
                self.store.age(),
                self.store.max_age,
                outcome.detail,
            )
        return outcome

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh now, then every ``interval`` until ``stop`` is set."""
        while not stop.is_set():
            await self.refresh()
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.interval)
            except TimeoutError:
                continue

    def metrics(self) -> dict[str, float]:
        """Gauges for the metrics endpoint (names are a proposal)."""
        age = self.store.age()
        current = self.store.current
        return {
            "mssgw_liste_blanche_age_seconds": age.total_seconds() if age is not None else -1.0,
            "mssgw_liste_blanche_stale": 1.0 if self.store.is_stale() else 0.0,
            "mssgw_liste_blanche_entries": float(current.entries) if current else 0.0,
            "mssgw_liste_blanche_domains": float(current.domains) if current else 0.0,
            "mssgw_liste_blanche_last_refresh_ok": 1.0 if self.last and self.last.ok else 0.0,
        }
