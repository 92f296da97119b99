"""Connection reuse by the relay (smtp/client.ConnectionPool) and claim economy.

A kept connection carries several transactions to the same peer; it is used
for a recipient domain only when the peer's certificate is bound to that
domain (TRUST-6) under the trust state in use; a new liste blanche or a TLS
reload drops it; it is closed when idle too long; a kept connection that the
peer closed meanwhile is replaced without losing the message.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mssgw.smtp.client import ConnectionPool
from mssgw.smtp.relay import RelayWorker
from mssgw.store.delivery import DeliveryResult, Envelope, RemoteTarget
from mssgw.store.models import QueueEntry
from tests.smtp.relay_support import MESSAGE, SENDER, Relay, relay_gateway, tls_peer, until

BOB = "bob@op2.mssante.test"
#: Our own domain, listed for operator 1's DN only: the peer (operator 2) is not bound to it.
OP1 = "x@op1.mssante.test"
#: A domain a test lists for operator 2's DN too.
OP3 = "e@op3.mssante.test"
ONE_WORKER = "workers = 1\npoll_interval = 3600\n"
_LISTS = itertools.count()


def _routes(port: int, *domains: str) -> dict[str, str]:
    return {d: f"127.0.0.1:{port}" for d in ("op2.mssante.test", *domains)}


async def _queue_distinct(relay: Relay, recipient: str, n: int, tag: str = "m") -> list[int]:
    ids = []
    for i in range(n):  # distinct bytes: one message (and one transaction) each
        ids += await relay.queue(recipient, data=MESSAGE.replace(b"Bonjour", f"{tag}{i}".encode()))
    return ids


def _relist(relay: Relay, **index: frozenset[str]) -> None:
    """Put a new liste blanche in use: the current one with ``index`` entries changed."""
    liste = relay.trust.listes.current
    assert liste is not None
    relay.trust.listes.current = dataclasses.replace(
        liste, sha256=f"test-{next(_LISTS)}", _index={**liste._index, **index}
    )


@pytest.mark.parametrize("pipelining", [False, True])
async def test_one_connection_carries_several_transactions(
    tmp_path: Path, trust_space: dict[str, Any], pipelining: bool
) -> None:
    with tls_peer(trust_space, dsn=True, pipelining=pipelining) as (peer, port):
        async with relay_gateway(
            tmp_path, trust_space, routes=_routes(port), relay=ONE_WORKER
        ) as relay:
            ids = await _queue_distinct(relay, BOB, 3)
            peer.refuse["nobody@op2.mssante.test"] = "550 5.1.1 no such mailbox"
            (refused,) = await relay.queue("nobody@op2.mssante.test", notify="NEVER")
            worker = relay.worker()
            report = await worker.run_once()
            assert (report.delivered, report.failed) == (3, 1)
            assert peer.connections == 1
            assert len(peer.received) == 3
            # one handshake; three transactions; the one whose only recipient was refused
            # left a transaction open: nothing more was sent after it but QUIT at the end
            assert peer.commands.count("STARTTLS") == 1
            assert peer.commands.count("MAIL") == 4
            assert peer.commands[-1] == "QUIT"
            assert worker.pool.opened == 1 and worker.pool.reused == 3
            for entry_id in ids:
                assert (await relay.entry(entry_id)).state == "delivered"
            assert (await relay.entry(refused)).last_status == "5.1.1"
            # the same traces as on fresh connections (peer DN, TLS)
            traces = [t for t in await relay.store.traces.recent(50) if t.action == "relay"]
            assert {t.actor for t in traces} == {trust_space["operators"][1]["dn"]}
            assert all(t.tls and t.tls.startswith("TLSv1.2") for t in traces)


async def test_rset_after_a_transaction_left_open(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    with tls_peer(trust_space) as (peer, port):
        peer.refuse["nobody@op2.mssante.test"] = "550 5.1.1 no such mailbox"
        async with relay_gateway(
            tmp_path, trust_space, routes=_routes(port), relay=ONE_WORKER
        ) as relay:
            await relay.queue("nobody@op2.mssante.test", notify="NEVER")  # MAIL ok, RCPT refused
            await _queue_distinct(relay, BOB, 1)
            await relay.worker().run_once()
            assert peer.connections == 1
            assert peer.commands == [
                "EHLO", "STARTTLS", "EHLO", "MAIL", "RCPT", "RSET", "MAIL", "RCPT", "DATA", "QUIT",
            ]  # fmt: skip
            assert [r.recipients for r in peer.received] == [[BOB]]


async def test_kept_connection_is_reused_across_runs_of_the_daemon(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    with tls_peer(trust_space) as (peer, port):
        async with relay_gateway(
            tmp_path, trust_space, routes=_routes(port), relay=ONE_WORKER
        ) as relay:
            worker = relay.worker()
            await worker.start()
            for i in range(3):
                await _queue_distinct(relay, BOB, 1, tag=f"run{i}-")
                worker.wake()
                await until(lambda n=i: len(peer.received) == n + 1)
            assert peer.connections == 1
            await worker.stop()
            assert peer.commands[-1] == "QUIT"  # closed politely on stop


async def test_kept_connection_not_used_for_a_domain_the_peer_is_not_bound_to(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    with tls_peer(trust_space) as (peer, port):
        routes = _routes(port, "op1.mssante.test")
        async with relay_gateway(tmp_path, trust_space, routes=routes, relay=ONE_WORKER) as relay:
            (bob,) = await relay.queue(BOB)
            (op1,) = await relay.queue(OP1, notify="NEVER")
            worker = relay.worker()
            await worker.run_once()
            # TRUST-6: the connection open for op2 never carried op1's mail; a new
            # connection was tried for op1, refused after the handshake, and quit
            assert peer.commands.count("MAIL") == 1
            assert [r.recipients for r in peer.received] == [[BOB]]
            assert peer.connections == 2
            assert (await relay.entry(bob)).state == "delivered"
            entry = await relay.entry(op1)
            assert (entry.state, entry.last_status) == ("queued", "4.7.1")
            assert "is not listed for domain op1.mssante.test" in (entry.last_error or "")
            traces = [t for t in await relay.store.traces.recent(50) if t.action == "relay"]
            assert {(t.recipients, t.result) for t in traces} == {
                (BOB, "delivered"),
                (OP1, "peer-refused"),
            }


async def test_kept_connection_used_for_another_domain_listing_the_same_peer(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    with tls_peer(trust_space) as (peer, port):
        routes = _routes(port, "op3.mssante.test")
        async with relay_gateway(tmp_path, trust_space, routes=routes, relay=ONE_WORKER) as relay:
            assert relay.trust.liste is not None
            _relist(relay, **{"op3.mssante.test": relay.trust.liste.dns_for("op2.mssante.test")})
            await relay.queue(BOB)
            await relay.queue(OP3)
            report = await relay.worker().run_once()
            assert report.delivered == 2
            assert peer.connections == 1
            assert sorted(r.recipients[0] for r in peer.received) == [BOB, OP3]


async def test_new_liste_blanche_or_tls_reload_drops_kept_connections(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    with tls_peer(trust_space) as (peer, port):
        async with relay_gateway(
            tmp_path, trust_space, routes=_routes(port), relay=ONE_WORKER
        ) as relay:
            worker = relay.worker()
            await worker.start()

            async def deliver(tag: str, expected: int) -> None:
                await _queue_distinct(relay, BOB, 1, tag=tag)
                worker.wake()
                await until(lambda: len(peer.received) == expected)

            await deliver("a", 1)
            assert peer.connections == 1
            _relist(relay)  # same entries, a new list: decisions are taken again
            await deliver("b", 2)
            assert peer.connections == 2
            relay.trust.operator_tls.reload()  # anchors and CRLs reloaded: same
            await deliver("c", 3)
            assert peer.connections == 3
            await deliver("d", 4)  # nothing changed: kept
            assert peer.connections == 3

            # a list on which the peer is no longer bound to op2: nothing more is sent to it
            _relist(relay, **{"op2.mssante.test": frozenset({"CN=someone else"})})
            mails = peer.commands.count("MAIL")
            (entry_id,) = await _queue_distinct(relay, BOB, 1, tag="e")
            worker.wake()
            await until(lambda: peer.connections == 4 and peer.commands[-1] == "QUIT")
            await worker.stop()
            assert peer.commands.count("MAIL") == mails
            entry = await relay.entry(entry_id)
            assert (entry.state, entry.last_status) == ("queued", "4.7.1")


async def test_idle_connections_are_closed(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    with tls_peer(trust_space) as (peer, port):
        async with relay_gateway(
            tmp_path, trust_space, routes=_routes(port), relay=ONE_WORKER
        ) as relay:
            ticks = [0.0]
            pool = ConnectionPool(idle_timeout=30, monotonic=lambda: ticks[0])
            worker = relay.worker(pool=pool)
            await worker.start()
            await _queue_distinct(relay, BOB, 1)
            worker.wake()
            await until(lambda: len(peer.received) == 1)
            await until(lambda: pool.idle() == 1)
            ticks[0] += 29
            assert pool.expire() == 0 and pool.idle() == 1
            ticks[0] += 1
            assert pool.expire() == 1 and pool.idle() == 0
            await until(lambda: peer.commands[-1] == "QUIT")
            await _queue_distinct(relay, BOB, 1, tag="later")
            worker.wake()
            await until(lambda: len(peer.received) == 2)
            assert peer.connections == 2
            await worker.stop()


async def test_the_daemon_closes_idle_connections_by_itself(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    with tls_peer(trust_space) as (peer, port):
        async with relay_gateway(
            tmp_path, trust_space, routes=_routes(port), relay=ONE_WORKER
        ) as relay:
            worker = relay.worker(pool=ConnectionPool(idle_timeout=0.2))
            await worker.start()
            await _queue_distinct(relay, BOB, 1)
            worker.wake()
            await until(lambda: len(peer.received) == 1)
            # poll_interval is an hour: the loop wakes up for the idle deadline itself
            await until(lambda: peer.commands[-1] == "QUIT" and worker.pool.idle() == 0)
            await worker.stop()


@pytest.mark.parametrize("pipelining", [False, True])
async def test_a_kept_connection_closed_by_the_peer_is_replaced(
    tmp_path: Path, trust_space: dict[str, Any], pipelining: bool
) -> None:
    with tls_peer(trust_space, pipelining=pipelining) as (peer, port):
        peer.max_mails_per_session = 1  # "421" to the second MAIL of a session
        async with relay_gateway(
            tmp_path, trust_space, routes=_routes(port), relay=ONE_WORKER
        ) as relay:
            ids = await _queue_distinct(relay, BOB, 2)
            report = await relay.worker().run_once()
            assert report.delivered == 2
            assert len(peer.received) == 2 and peer.connections == 2
            for entry_id in ids:  # the 421 of the kept connection is not an attempt
                entry = await relay.entry(entry_id)
                assert (entry.state, entry.attempts) == ("delivered", 1)
            events = [e.event for e in await relay.store.queue.history()]
            assert sorted(events) == ["delivered", "delivered"]


async def test_one_claim_per_run_and_wakes_coalesce(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    with tls_peer(trust_space) as (peer, port):
        async with relay_gateway(
            tmp_path, trust_space, routes=_routes(port), relay="workers = 16\n"
        ) as relay:
            await _queue_distinct(relay, BOB, 3)
            worker = relay.worker()
            report = await worker.run_once()
            # three groups claimed at once; fewer than 16 means drained: no empty claim
            assert (report.groups, worker.claims) == (3, 1)

            daemon = relay.worker(name="daemon")
            await daemon.start()
            await _queue_distinct(relay, BOB, 1, tag="woken")
            for _ in range(50):
                daemon.wake()
            await until(lambda: len(peer.received) == 4)
            assert daemon.claims <= 3  # the first look, the woken one, at most one more
            await daemon.stop()


async def test_handed_rows_are_delivered_without_a_claim(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with _daemon(tmp_path, trust_space, "workers = 2\npoll_interval = 3600\n") as (
        peer, relay, daemon,
    ):  # fmt: skip
        data = MESSAGE.replace(b"Bonjour", b"handed")
        result = await _leased(relay, daemon, data, BOB, "carol@op2.mssante.test")
        daemon.hand(result.leased, data, "<cr-1@op1.mssante.test>")
        await until(lambda: len(peer.received) == 1)
        for entry_id in result.queued:  # one transaction, two recipients, no claim
            entry = await _settled(relay, entry_id)
            assert (entry.state, entry.attempts, entry.locked_by) == ("delivered", 1, None)
        assert daemon.claims == 1
        assert sorted(peer.received[0].recipients) == [BOB, "carol@op2.mssante.test"]
        traces = await relay.store.traces.recent(category="transport")
        assert sorted(t.recipients or "" for t in traces if t.action == "relay") == [
            BOB, "carol@op2.mssante.test",
        ]  # fmt: skip
        await daemon.stop()
        assert daemon.fresh_lease() is None


async def test_handed_rows_never_started_are_given_back_at_stop(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with relay_gateway(tmp_path, trust_space, relay=ONE_WORKER) as relay:
        daemon = relay.worker(name="daemon")
        await daemon.start()
        result = await _leased(relay, daemon, MESSAGE, BOB)
        daemon._stopping.set()  # stopping: the loop takes nothing more
        daemon.hand(result.leased, MESSAGE, None)
        await daemon.stop()
        (entry_id,) = result.queued
        entry = await relay.entry(entry_id)
        assert (entry.state, entry.locked_by, entry.attempts) == ("queued", None, 0)


@contextlib.asynccontextmanager
async def _daemon(
    tmp_path: Path, trust_space: dict[str, Any], settings: str
) -> AsyncIterator[tuple[Any, Relay, RelayWorker]]:
    """A peer, our gateway routed to it, and its relay daemon after its first look."""
    with tls_peer(trust_space) as (peer, port):
        async with relay_gateway(
            tmp_path, trust_space, routes=_routes(port), relay=settings
        ) as relay:
            daemon = relay.worker(name="daemon")
            assert daemon.fresh_lease() is None  # not running: rows are queued unleased
            await daemon.start()
            await until(lambda: daemon.claims == 1)  # the first look at the queue
            yield peer, relay, daemon


async def _leased(relay: Relay, daemon: RelayWorker, data: bytes, *to: str) -> DeliveryResult:
    """Queue ``data`` as submission does for a running relay: rows leased to it."""
    lease = daemon.fresh_lease()
    assert lease is not None and lease.worker == daemon.name
    return await relay.store.messages.deliver(
        data, remote=[RemoteTarget(r) for r in to], envelope=Envelope(SENDER), lease=lease
    )


async def _settled(relay: Relay, entry_id: int) -> QueueEntry:
    """The row once its attempt is recorded (the worker records after the peer's reply)."""
    for _ in range(500):
        entry = await relay.entry(entry_id)
        if entry.attempts:
            return entry
        await asyncio.sleep(0.02)
    raise AssertionError(f"queue entry {entry_id} was never attempted")


async def test_handed_rows_that_waited_too_long_are_given_back_then_claimed(
    tmp_path: Path, trust_space: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mssgw.smtp import relay as relay_module

    async with _daemon(tmp_path, trust_space, "workers = 1\npoll_interval = 1\n") as (
        peer, relay, daemon,
    ):  # fmt: skip
        # The worker's pass fails (the store is briefly unusable): it waits a poll
        # interval before the next one, and rows handed meanwhile wait with it.
        real_claim = relay.store.queue.claim_groups
        failing = [True]

        async def claim_once_failing(*args: Any, **kw: Any) -> Any:
            if failing[0]:
                failing[0] = False
                raise RuntimeError("store unavailable")
            return await real_claim(*args, **kw)

        monkeypatch.setattr(relay.store.queue, "claim_groups", claim_once_failing)
        daemon.wake()
        await until(lambda: not failing[0])
        monkeypatch.setattr(relay_module, "_READY_MAX_WAIT", 0.3)
        real_release = relay.store.queue.release_lease
        released: list[int] = []

        async def release(worker: str, ids: Any) -> None:
            released.extend(ids)
            await real_release(worker, ids)

        monkeypatch.setattr(relay.store.queue, "release_lease", release)
        result = await _leased(relay, daemon, MESSAGE, BOB)
        relay.clock.now = datetime.now(UTC)  # the worker's clock: the row is due
        daemon.hand(result.leased, MESSAGE, None)
        # Picked up a poll interval later: older than the wait allowed, so its
        # lease is given back and the row is claimed afresh, then delivered once.
        (entry_id,) = result.queued
        entry = await _settled(relay, entry_id)
        assert (entry.state, entry.attempts) == ("delivered", 1)
        assert released == [entry_id] and len(peer.received) == 1
        await daemon.stop()
