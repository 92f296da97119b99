"""Relay end to end against a real TLS SMTP peer (aiosmtpd with the dev PKI).

Our side is operator 1 (op1.mssante.test) with its real trust space; the
peer presents operator 2's certificate (listed for op2.mssante.test) unless
a test says otherwise, and requires our client certificate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mssgw.store.models import Trace
from tests.smtp.relay_support import (
    MESSAGE,
    SENDER,
    dsn_fields,
    free_port,
    relay_gateway,
    tls_peer,
)

BOB, CAROL = "bob@op2.mssante.test", "carol@op2.mssante.test"


def _unfold(value: str) -> str:
    return " ".join(value.split())


def _route(port: int) -> dict[str, str]:
    return {"op2.mssante.test": f"127.0.0.1:{port}"}


async def _traces(relay: Any, action: str = "relay") -> list[Trace]:
    return [t for t in reversed(await relay.store.traces.recent(200)) if t.action == action]


async def test_one_transaction_with_dsn_parameters_passed_on(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    with tls_peer(trust_space, dsn=True) as (peer, port):
        async with relay_gateway(tmp_path, trust_space, routes=_route(port)) as relay:
            ids = await relay.queue(
                BOB, CAROL, notify="SUCCESS,FAILURE", orcpt=True, envid="QX+2B42", ret="HDRS"
            )
            report = await relay.worker().run_once()
            assert (report.groups, report.delivered, report.dsns) == (1, 2, 0)
            # one transaction, both recipients, content byte for byte
            assert len(peer.received) == 1
            got = peer.received[0]
            assert got.sender == SENDER
            assert got.recipients == [BOB, CAROL]
            assert got.data == MESSAGE
            assert "RET=HDRS" in got.mail_args and "ENVID=QX+2B42" in got.mail_args
            assert f"SIZE={len(MESSAGE)}" in got.mail_args
            assert "BODY=8BITMIME" in got.mail_args
            assert got.rcpt_args == [
                "TO:<bob@op2.mssante.test> NOTIFY=SUCCESS,FAILURE "
                "ORCPT=rfc822;bob@op2.mssante.test",
                "TO:<carol@op2.mssante.test> NOTIFY=SUCCESS,FAILURE "
                "ORCPT=rfc822;carol@op2.mssante.test",
            ]
            # our certificate was presented (TLS-2)
            assert peer.client_dns == [trust_space["operators"][0]["dn"]]
            for entry_id in ids:
                entry = await relay.entry(entry_id)
                assert (entry.state, entry.attempts, entry.last_status) == ("delivered", 1, "2.0.0")
                assert entry.locked_by is None
            # the next hop speaks DSN: success notices are its job, none from us
            assert await relay.inbox() == []
            traces = await _traces(relay)
            assert [(t.recipients, t.result) for t in traces] == [
                (BOB, "delivered"),
                (CAROL, "delivered"),
            ]
            assert traces[0].actor == trust_space["operators"][1]["dn"]
            assert traces[0].tls is not None and traces[0].tls.startswith("TLSv1.2")
            assert traces[0].code == "250 2.0.0"
            assert traces[0].message_id == "<cr-1@op1.mssante.test>"


async def test_without_dsn_no_parameters_and_a_relayed_notice(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    with tls_peer(trust_space, dsn=False) as (peer, port):
        async with relay_gateway(tmp_path, trust_space, routes=_route(port)) as relay:
            await relay.queue(BOB, notify="SUCCESS", orcpt=True, envid="E1", ret="FULL")
            report = await relay.worker().run_once()
            assert (report.delivered, report.dsns) == (1, 1)
            got = peer.received[0]
            assert "RET=" not in got.mail_args and "ENVID=" not in got.mail_args
            assert got.rcpt_args == ["TO:<bob@op2.mssante.test>"]
            # RFC 3461 §5.2.2: NOTIFY=SUCCESS, next hop without DSN → "relayed"
            (dsn,) = await relay.inbox()
            msg, (per_message, rcpt) = dsn_fields(dsn)
            assert per_message["Original-Envelope-Id"] == "E1"
            assert rcpt["Action"] == "relayed"
            assert rcpt["Status"] == "2.0.0"
            assert rcpt["Original-Recipient"] == "rfc822;bob@op2.mssante.test"
            assert rcpt["Remote-MTA"] == "dns; 127.0.0.1"
            # success reports never carry the content, even with RET=FULL
            assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"


async def test_one_refused_recipient_gets_its_own_failure_notice(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    with tls_peer(trust_space) as (peer, port):
        peer.refuse[CAROL] = "550 5.1.1 <carol@op2.mssante.test>: no such mailbox"
        async with relay_gateway(tmp_path, trust_space, routes=_route(port)) as relay:
            bob_id, carol_id = await relay.queue(BOB, CAROL)
            report = await relay.worker().run_once()
            assert (report.delivered, report.failed, report.dsns) == (1, 1, 1)
            assert peer.received[0].recipients == [BOB]
            assert (await relay.entry(bob_id)).state == "delivered"
            carol = await relay.entry(carol_id)
            assert (carol.state, carol.last_status) == ("failed", "5.1.1")
            assert carol.last_reply == "550 5.1.1 <carol@op2.mssante.test>: no such mailbox"
            (dsn,) = await relay.inbox()
            _, (_, rcpt) = dsn_fields(dsn)  # one recipient reported: carol only
            assert rcpt["Final-Recipient"] == f"rfc822; {CAROL}"
            assert rcpt["Action"] == "failed"
            assert rcpt["Status"] == "5.1.1"
            assert rcpt["Diagnostic-Code"] == (
                "smtp; 550 5.1.1 <carol@op2.mssante.test>: no such mailbox"
            )
            assert rcpt["Remote-MTA"] == "dns; 127.0.0.1"


async def test_domain_not_on_the_list_fails_at_once_without_connecting(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with relay_gateway(tmp_path, trust_space) as relay:
        (entry_id,) = await relay.queue("x@hopital.example.fr")
        report = await relay.worker().run_once()
        assert (report.failed, report.dsns) == (1, 1)
        entry = await relay.entry(entry_id)
        assert (entry.state, entry.last_status, entry.attempts) == ("failed", "5.7.1", 1)
        (dsn,) = await relay.inbox()
        _, (_, rcpt) = dsn_fields(dsn)
        assert rcpt["Status"] == "5.7.1"
        assert _unfold(rcpt["Diagnostic-Code"]) == (
            "X-Mssgw; domain hopital.example.fr is not on the MSSante liste blanche"
        )
        assert rcpt["Remote-MTA"] is None


async def test_message_over_the_peer_size_is_failed_before_mail(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    with tls_peer(trust_space, size=64) as (peer, port):
        async with relay_gateway(tmp_path, trust_space, routes=_route(port)) as relay:
            (entry_id,) = await relay.queue(BOB)
            await relay.worker().run_once()
            entry = await relay.entry(entry_id)
            assert (entry.state, entry.last_status) == ("failed", "5.3.4")
            assert "MAIL" not in peer.commands
            assert len(await relay.inbox()) == 1


async def test_no_liste_blanche_relays_nothing(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    with tls_peer(trust_space) as (peer, port):
        async with relay_gateway(tmp_path, trust_space, routes=_route(port)) as relay:
            relay.trust.listes.current = None  # fail closed
            (entry_id,) = await relay.queue(BOB)
            await relay.worker().run_once()
            entry = await relay.entry(entry_id)
            assert (entry.state, entry.last_status) == ("queued", "4.7.0")
            assert peer.commands == []


async def test_dsn_to_a_remote_sender_is_queued_with_a_null_sender(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with relay_gateway(tmp_path, trust_space, routes=_route(free_port())) as relay:
        (entry_id,) = await relay.queue("x@nowhere.example", sender="alice@op2.mssante.test")
        worker = relay.worker()
        await worker.run_once()
        rows = await relay.store.queue.list()
        (dsn_row,) = [r for r in rows if r.id != entry_id]
        assert (dsn_row.sender, dsn_row.recipient) == ("", "alice@op2.mssante.test")
        # that DSN cannot be delivered either (peer down): no DSN about a DSN, ever
        relay.clock.advance(10 * 86400)
        await worker.run_once()
        assert len(await relay.store.queue.list()) == 2
        assert (await relay.entry(dsn_row.id)).state == "failed"
