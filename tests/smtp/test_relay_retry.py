"""Relay over time: retry schedule, delay notice, untrusted peer, MX through DNS.

A test clock drives the worker; the schedule is small ([relay] below):
retries after 60 s then 120 s (repeating), delay notice after 150 s, give
up after one hour.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.smtp.relay_support import (
    LocalDns,
    dsn_fields,
    free_port,
    relay_gateway,
    resolver_for,
    tls_peer,
    until,
)

BOB = "bob@op2.mssante.test"
SCHEDULE = "retry_schedule = [60, 120]\ndelay_notice_after = 150\ngive_up_after = 3600\n"


def _unfold(value: str) -> str:
    return " ".join(value.split())


async def test_peer_down_then_delay_notice_then_delivered(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    port = free_port()
    routes = {"op2.mssante.test": f"127.0.0.1:{port}"}
    async with relay_gateway(tmp_path, trust_space, routes=routes, relay=SCHEDULE) as relay:
        (entry_id,) = await relay.queue(BOB, envid="ENV-7")
        worker = relay.worker()
        queued_at = (await relay.entry(entry_id)).created_at

        await worker.run_once()  # attempt 1: nobody listens
        entry = await relay.entry(entry_id)
        assert (entry.state, entry.attempts, entry.last_status) == ("queued", 1, "4.4.1")
        assert entry.next_attempt_at == relay.clock.now + timedelta(seconds=60)
        assert "cannot connect to 127.0.0.1[127.0.0.1]" in (entry.last_error or "")

        relay.clock.advance(30)  # not due yet: nothing happens
        assert (await worker.run_once()).groups == 0

        relay.clock.advance(30)  # attempt 2 at +60 s
        await worker.run_once()
        entry = await relay.entry(entry_id)
        assert (entry.attempts, entry.delay_notified) == (2, False)
        assert entry.next_attempt_at == relay.clock.now + timedelta(seconds=120)
        assert await relay.inbox() == []

        relay.clock.advance(120)  # attempt 3 at +180 s ≥ 150 s: the delay notice
        await worker.run_once()
        entry = await relay.entry(entry_id)
        assert (entry.attempts, entry.delay_notified) == (3, True)
        (notice,) = await relay.inbox()
        _, (per_message, rcpt) = dsn_fields(notice)
        assert per_message["Original-Envelope-Id"] == "ENV-7"
        assert (rcpt["Action"], rcpt["Status"]) == ("delayed", "4.4.1")
        assert rcpt["Will-Retry-Until"] is not None
        assert "cannot connect" in _unfold(rcpt["Diagnostic-Code"])

        with tls_peer(trust_space, port=port) as (peer, _):
            relay.clock.advance(120)  # attempt 4: the peer is back
            report = await worker.run_once()
            assert report.delivered == 1
            assert len(peer.received) == 1
        entry = await relay.entry(entry_id)
        assert (entry.state, entry.attempts) == ("delivered", 4)
        assert len(await relay.inbox()) == 1  # one delay notice, nothing more
        events = [e.event for e in reversed(await relay.store.queue.history(entry_id=entry_id))]
        assert events == ["deferred", "deferred", "deferred", "dsn", "delivered"]
        assert entry.created_at == queued_at


async def test_unlisted_peer_never_sees_mail_and_is_bounced_at_the_deadline(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    unlisted = trust_space["bad"]["unlisted"]
    with tls_peer(trust_space, cert=unlisted) as (peer, port):
        routes = {"op2.mssante.test": f"127.0.0.1:{port}"}
        async with relay_gateway(tmp_path, trust_space, routes=routes, relay=SCHEDULE) as relay:
            (entry_id,) = await relay.queue(BOB, notify="FAILURE")
            worker = relay.worker()
            await worker.run_once()
            # TRUST-6: we quit right after STARTTLS; the peer never saw MAIL or DATA
            assert peer.commands == ["EHLO", "STARTTLS", "QUIT"]
            entry = await relay.entry(entry_id)
            assert (entry.state, entry.last_status) == ("queued", "4.7.1")
            assert f"peer certificate {unlisted['dn']} is not listed" in (entry.last_error or "")
            (trace,) = [t for t in await relay.store.traces.recent(50) if t.action == "relay"]
            assert (trace.result, trace.actor) == ("peer-refused", unlisted["dn"])

            relay.clock.advance(3600)  # the deadline: this attempt gives up
            await worker.run_once()
            assert "MAIL" not in peer.commands and peer.received == []
            entry = await relay.entry(entry_id)
            assert entry.state == "failed"
            assert (entry.last_error or "").startswith("gave up after")
            (bounce,) = await relay.inbox()  # NOTIFY=FAILURE: no delay notice before
            _, (_, rcpt) = dsn_fields(bounce)
            assert (rcpt["Action"], rcpt["Status"]) == ("failed", "4.7.1")
            assert _unfold(rcpt["Diagnostic-Code"]).startswith("X-Mssgw; 127.0.0.1[127.0.0.1]")
            assert "not listed for domain op2.mssante.test" in _unfold(rcpt["Diagnostic-Code"])
            text = bounce.decode("ascii", "replace")
            assert "gave up after" in text


async def test_mx_from_dns_then_delivery(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    zone = {
        "op2.mssante.test": {"MX": ["10 mx.op2.mssante.test."]},
        "mx.op2.mssante.test": {"A": ["127.0.0.1"]},
        "op1.mssante.test": {"MX": ["0 ."]},  # null MX (our own domain, listed)
    }
    with LocalDns(zone) as dns_server, tls_peer(trust_space, dsn=True) as (peer, port):
        async with relay_gateway(tmp_path, trust_space) as relay:
            bob, nomail = await relay.queue(BOB), await relay.queue("x@op1.mssante.test")
            worker = relay.worker(resolver=resolver_for(dns_server), smtp_port=port)
            report = await worker.run_once()
            assert (report.delivered, report.failed) == (1, 1)
            assert peer.received[0].recipients == [BOB]
            delivered = await relay.entry(bob[0])
            assert (delivered.state, delivered.remote_mta) == ("delivered", "mx.op2.mssante.test")
            failed = await relay.entry(nomail[0])
            assert (failed.state, failed.last_status) == ("failed", "5.1.10")
            (bounce,) = await relay.inbox()
            _, (_, rcpt) = dsn_fields(bounce)
            assert rcpt["Status"] == "5.1.10"


async def test_background_worker_delivers_when_woken(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    with tls_peer(trust_space) as (peer, port):
        routes = {"op2.mssante.test": f"127.0.0.1:{port}"}
        async with relay_gateway(
            tmp_path, trust_space, routes=routes, relay="poll_interval = 3600\n"
        ) as relay:
            worker = relay.worker()
            await worker.start()
            (entry_id,) = await relay.queue(BOB)
            worker.wake()
            await until(lambda: len(peer.received) == 1)
            await worker.stop()
            assert (await relay.entry(entry_id)).state == "delivered"
