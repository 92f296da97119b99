"""Recipient lookups for policy: address → entry or None, cached, never blocking.

Why a cache in front of the replica: a message to 50 recipients must not
cost 50 database or LDAP round-trips, and the replica changes once a day.
Misses are cached too (shorter), since most lookups for unknown addresses
come back.  A replica that is slow or down must not hold the SMTP session:
past ``timeout`` the lookup raises ``DirectoryUnavailable``, which policy
turns into ``451 4.4.3`` (try again later), never into a refusal.  When
the replica fails and an expired entry is still cached, that stale entry is
served instead (it was true yesterday; the directory changes slowly).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from mssgw.directory.base import DirectoryError
from mssgw.directory.entry import DirectoryEntry, normalise_address
from mssgw.directory.settings import DirectorySettings


class DirectoryUnavailable(DirectoryError):
    """The replica did not answer in time: a temporary failure.

    Policy (which sits above this package and so is not imported here) turns
    it into ``Decision.tempfail(exc.code, exc.enhanced, str(exc))``, i.e.
    ``451 4.4.3``.
    """

    code = 451
    enhanced = "4.4.3"


class LookupBackend(Protocol):
    async def get(self, address: str) -> DirectoryEntry | None: ...


class ThreadedBackend:
    """Runs a blocking ``get`` (ldap3) in a worker thread so the loop never waits."""

    def __init__(self, get: Callable[[str], DirectoryEntry | None]) -> None:
        self._get = get

    async def get(self, address: str) -> DirectoryEntry | None:
        return await asyncio.to_thread(self._get, address)



class DirectoryLookup:
    """A TTL cache (positive and negative) in front of a replica."""

    def __init__(
        self,
        backend: LookupBackend,
        *,
        ttl: float = 300,
        negative_ttl: float = 60,
        timeout: float = 2.0,
        max_entries: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend, self.ttl, self.negative_ttl = backend, ttl, negative_ttl
        self.timeout, self.max_entries, self.clock = timeout, max_entries, clock
        self._cache: dict[str, tuple[float, DirectoryEntry | None]] = {}
        self.hits = self.misses = self.failures = self.stale = 0

    @classmethod
    def from_settings(cls, backend: LookupBackend, settings: DirectorySettings) -> DirectoryLookup:
        return cls(backend, ttl=settings.cache_ttl, negative_ttl=settings.negative_ttl,
                   timeout=settings.lookup_timeout, max_entries=settings.cache_max_entries)

    async def find(self, address: str) -> DirectoryEntry | None:
        """The entry, None when the directory does not list it; may raise
        ``DirectoryUnavailable`` (policy: ``451 4.4.3``)."""
        key = normalise_address(address)
        cached = self._cache.get(key)
        now = self.clock()
        if cached is not None and cached[0] > now:
            self.hits += 1
            return cached[1]
        self.misses += 1
        try:
            entry = await asyncio.wait_for(self.backend.get(key), self.timeout)
        except Exception as exc:  # timeout, connection refused, database error...
            return self._on_failure(key, cached, exc)
        self._store(key, entry, now)
        return entry

    def _on_failure(
        self, key: str, cached: tuple[float, DirectoryEntry | None] | None, exc: BaseException
    ) -> DirectoryEntry | None:
        self.failures += 1
        if cached is not None and cached[1] is not None:
            self.stale += 1
            return cached[1]
        what = "timed out" if isinstance(exc, TimeoutError) else f"failed ({type(exc).__name__})"
        raise DirectoryUnavailable(f"directory lookup {what}; try again later") from exc

    def _store(self, key: str, entry: DirectoryEntry | None, now: float) -> None:
        self._cache.pop(key, None)
        while len(self._cache) >= self.max_entries:
            del self._cache[next(iter(self._cache))]  # oldest first
        self._cache[key] = (now + (self.ttl if entry is not None else self.negative_ttl), entry)

    def invalidate(self, address: str | None = None) -> None:
        """Forget one address, or everything (after a sync)."""
        if address is None:
            self._cache.clear()
        else:
            self._cache.pop(normalise_address(address), None)
