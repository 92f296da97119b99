"""Recipient lookups: caches, and a slow or absent replica never blocks (451 4.4.3)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mssgw.directory import sample
from mssgw.directory.entry import DirectoryEntry
from mssgw.directory.extraction import ExtractionSource
from mssgw.directory.ldap_replica import LdapReplica
from mssgw.directory.local import LocalSource
from mssgw.directory.lookup import DirectoryLookup, DirectoryUnavailable, ThreadedBackend
from mssgw.directory.sql_replica import SqlReplica
from mssgw.directory.sync import run_sync
from mssgw.policy.decision import Decision
from tests.directory.helpers import address_of

MakeZip = Callable[..., Path]


class Counting:
    """The real SQL replica, counting the calls that reach it."""

    def __init__(self, replica: SqlReplica) -> None:
        self.replica, self.calls = replica, 0

    async def get(self, address: str) -> DirectoryEntry | None:
        self.calls += 1
        return await self.replica.get(address)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_positive_and_negative_caches(sql_replica: SqlReplica, make_zip: MakeZip) -> None:
    await run_sync(ExtractionSource(make_zip(sample.lines(range(5)))), sql_replica)
    backend, clock = Counting(sql_replica), Clock()
    lookup = DirectoryLookup(backend, ttl=300, negative_ttl=60, clock=clock)
    known = address_of(2)
    assert (await lookup.find(known.upper())) is not None  # case-insensitive
    assert (await lookup.find(f" {known} ")) is not None
    assert await lookup.find("unknown@medecin.mssante.fr") is None
    assert await lookup.find("unknown@medecin.mssante.fr") is None
    assert backend.calls == 2
    clock.now += 61  # negative entries expire first
    assert await lookup.find("unknown@medecin.mssante.fr") is None
    assert await lookup.find(known) is not None
    assert backend.calls == 3
    clock.now += 300
    await lookup.find(known)
    assert backend.calls == 4
    lookup.invalidate()
    await lookup.find(known)
    assert backend.calls == 5


async def test_cache_is_bounded(sql_replica: SqlReplica) -> None:
    lookup = DirectoryLookup(Counting(sql_replica), max_entries=3)
    for i in range(10):
        await lookup.find(f"x{i}@medecin.mssante.fr")
    assert len(lookup._cache) == 3


async def test_cached_lookups_are_fast(sql_replica: SqlReplica) -> None:
    await run_sync(LocalSource([DirectoryEntry("PER", "a@medecin.mssante.fr")]), sql_replica)
    lookup = DirectoryLookup(sql_replica)
    await lookup.find("a@medecin.mssante.fr")
    n = 50_000
    started = time.perf_counter()
    for _ in range(n):
        await lookup.find("a@medecin.mssante.fr")
    rate = n / (time.perf_counter() - started)
    assert rate >= 100_000, f"{rate:.0f} lookups/s"


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts and never answers: an LDAP server that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


async def test_hanging_ldap_gives_a_temporary_failure(silent_server: int) -> None:
    replica = LdapReplica(f"ldap://127.0.0.1:{silent_server}", "cn=x", "y", "ou=x", timeout=1)
    lookup = DirectoryLookup(ThreadedBackend(replica.get_blocking), timeout=0.2)
    started = time.monotonic()
    with pytest.raises(DirectoryUnavailable, match="timed out") as failure:
        await lookup.find("a@medecin.mssante.fr")
    assert time.monotonic() - started < 0.5
    assert (failure.value.code, failure.value.enhanced) == (451, "4.4.3")
    decision = Decision.tempfail(failure.value.code, failure.value.enhanced, str(failure.value))
    assert (decision.kind, decision.smtp_code, decision.enhanced) == ("tempfail", 451, "4.4.3")


async def test_absent_ldap_gives_a_temporary_failure() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nobody listens there
    replica = LdapReplica(f"ldap://127.0.0.1:{port}", "cn=x", "y", "ou=x", timeout=1)
    lookup = DirectoryLookup(ThreadedBackend(replica.get_blocking), timeout=2)
    with pytest.raises(DirectoryUnavailable, match="failed"):
        await lookup.find("a@medecin.mssante.fr")


async def test_stale_entry_served_when_replica_fails(ldap_replica: LdapReplica) -> None:
    entry = DirectoryEntry("PER", "a@medecin.mssante.fr", last_name="A")
    await run_sync(LocalSource([entry]), ldap_replica)
    clock = Clock()
    lookup = DirectoryLookup(ThreadedBackend(ldap_replica.get_blocking), ttl=10, clock=clock)
    assert await lookup.find(entry.address) == entry
    ldap_replica.url = "ldap://127.0.0.1:1"  # the server goes away
    ldap_replica.close()
    clock.now += 11
    assert await lookup.find(entry.address) == entry
    assert (lookup.failures, lookup.stale) == (1, 1)
    with pytest.raises(DirectoryUnavailable):
        await lookup.find("other@medecin.mssante.fr")


async def test_lookup_through_ldap(ldap_replica: LdapReplica) -> None:
    entry = DirectoryEntry("ORG", "accueil@ch.mssante.fr", org_name="CH")
    await run_sync(LocalSource([entry]), ldap_replica)
    lookup = DirectoryLookup(ThreadedBackend(ldap_replica.get_blocking))
    assert await lookup.find("Accueil@CH.mssante.fr") == entry
    assert await lookup.find("nobody@ch.mssante.fr") is None
