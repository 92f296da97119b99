"""Two gateways in one test: operator A (op1.mssante.test) submits, relays to B (op2).

A's user submits over A's submission port; A's relay worker delivers to B's
port 25 over mutual TLS (a static route: no DNS on loopback); B's user reads
the message over IMAPS.  Both sides check the other's certificate DN against
the same development liste blanche (TRUST-6).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mssgw import demo
from mssgw.smtp.data import stuff
from mssgw.store.mailboxes import NewMailbox
from mssgw.store.models import MailboxType, Message, QueueState
from tests.smtp.inbound_support import RawClient, client_context
from tests.smtp.relay_support import dsn_fields, free_port
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.postgres import PgCluster

A_USER = "jean.dupont@op1.mssante.test"
B_USER = "marie.martin@op2.mssante.test"
NOBODY = "personne@op2.mssante.test"
#: Small relay delays so that retries happen within a test.
RELAY = (
    "[relay]\nretry_schedule = [1]\npoll_interval = 1\nconnect_timeout = 2\ncommand_timeout = 5\n"
)
_names = itertools.count(1)


def route(port: int) -> dict[str, str]:
    return {"op2.mssante.test": f"127.0.0.1:{port}"}


@contextlib.asynccontextmanager
async def operator_b(
    tmp: Path, manifest: dict[str, Any], *, url: str | None = None, port: int = 0, extra: str = ""
) -> AsyncIterator[tuple[RunningGateway, str]]:
    """B with port 25 and IMAPS, its user (created once) and a fresh password."""
    fixed = f"[listeners.mta]\nport = {port}\n" if port else ""
    async with running_gateway(
        tmp / "b", manifest, operator=1, url=url, listeners=("mta", "imaps"), extra=extra + fixed
    ) as b:
        if await b.store.mailboxes.find(B_USER) is None:
            await b.store.mailboxes.add(NewMailbox(B_USER, MailboxType.PER, "810000000202"))
        yield b, (await b.store.credentials.issue(B_USER)).password


@contextlib.asynccontextmanager
async def operator_a(
    tmp: Path, manifest: dict[str, Any], b_port: int, *, url: str | None = None, extra: str = ""
) -> AsyncIterator[tuple[RunningGateway, str]]:
    """A with submission (587) and a route to B's port 25; its user and a password."""
    async with running_gateway(
        tmp / "a",
        manifest,
        operator=0,
        url=url,
        listeners=("submission",),
        routes=route(b_port),
        extra=RELAY + extra,
    ) as a:
        await a.store.mailboxes.add(NewMailbox(A_USER, MailboxType.PER, "810000000101"))
        yield a, (await a.store.credentials.issue(A_USER)).password


async def submit(
    a: RunningGateway,
    password: str,
    rcpts: list[str],
    *,
    mail_params: str = "",
    rcpt_params: str = "",
    subject: str = "relay",
) -> tuple[bytes, str]:
    """STARTTLS, AUTH PLAIN, one message; returns it and the end-of-data reply."""
    c = await RawClient.connect(a.ports["submission"])
    assert (await c.reply()).code == 220
    assert (await c.cmd("EHLO poste.example")).code == 250
    await c.starttls(client_context(None, a.manifest["anchors"]))
    assert (await c.cmd("EHLO poste.example")).code == 250
    token = base64.b64encode(f"\0{A_USER}\0{password}".encode()).decode()
    assert (await c.cmd(f"AUTH PLAIN {token}")).code == 235
    assert (await c.cmd(f"MAIL FROM:<{A_USER}>{mail_params}")).code == 250
    for rcpt in rcpts:
        r = await c.cmd(f"RCPT TO:<{rcpt}>{rcpt_params}")
        assert r.code == 250, r
    data = (
        f"From: <{A_USER}>\r\nTo: <{rcpts[0]}>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}.{next(_names)}@op1.mssante.test>\r\n\r\nBonjour\r\n"
    ).encode()
    assert (await c.cmd("DATA")).code == 354
    await c.send(stuff(data))
    reply = await c.reply()
    await c.cmd("QUIT")
    await c.close()
    return data, f"{reply.code} {reply.text}"


async def inbox(gw: RunningGateway, address: str, name: str = "INBOX") -> list[bytes]:
    folder = await gw.store.messages.folder(address, name)
    async with gw.store.read() as s:
        blobs = (
            await s.scalars(
                select(Message.blob_id).where(Message.folder_id == folder.id).order_by(Message.uid)
            )
        ).all()
    return [(await gw.store.contents.read_one(b)) for b in blobs]


async def eventually(check: Callable[[], Awaitable[Any]], seconds: float = 20.0) -> Any:
    """Poll an async ``check`` until it returns something true."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > end:
            raise AssertionError(f"not reached within {seconds} s")
        await asyncio.sleep(0.1)


def second_database(pg_cluster: PgCluster) -> str:
    name = f"opb{next(_names)}"
    pg_cluster.psql(f"CREATE DATABASE {name}")
    return pg_cluster.url(name).replace("postgresql://", "postgresql+asyncpg://")


@pytest.fixture(params=["sqlite", "postgres"])
def urls(request: pytest.FixtureRequest) -> tuple[str | None, str | None]:
    """Store URLs of A and B: every two-operator test runs on both backends."""
    if request.param == "sqlite":
        return None, None
    url_a = str(request.getfixturevalue("pg_url"))
    return url_a, second_database(request.getfixturevalue("pg_cluster"))


# ---------------------------------------------------------------------- the core flow


async def test_a_to_b_delivered_byte_identical(
    tmp_path: Path, trust_space: dict[str, Any], urls: tuple[str | None, str | None]
) -> None:
    url_a, url_b = urls
    async with (
        operator_b(tmp_path, trust_space, url=url_b) as (b, b_password),
        operator_a(tmp_path, trust_space, b.ports["mta"], url=url_a) as (a, a_password),
    ):
        data, message_id = demo.demo_message(A_USER, B_USER)
        ca = trust_space["root"]
        sent = await asyncio.to_thread(
            demo.submit, a.ports["submission"], ca, A_USER, a_password, B_USER, data
        )
        assert sent.auth_reply.startswith("235 2.7.0")
        assert sent.data_reply.startswith("250 2.0.0 queued as")
        # the demo's refusal: a domain outside the trust space, at RCPT
        assert sent.refusal.startswith("550 5.7.1")
        stored = await asyncio.to_thread(
            demo.fetch_from_inbox, b.ports["imaps"], ca, B_USER, b_password, message_id, 20.0
        )
        assert stored is not None
        body, removed = demo.strip_trace_fields(stored)
        assert removed == ["return-path", "received", "received"]
        assert body == data
        assert stored.startswith(f"Return-Path: <{A_USER}>\r\n".encode())
        assert b"with ESMTPS id" in stored and b"with ESMTPSA id" in stored

        # each side names the other's certificate in its traces (TRUST-6, TRACE-1)
        (row,) = await a.store.queue.list(states=[QueueState.DELIVERED])
        assert (row.recipient, row.attempts) == (B_USER, 1)
        relayed = [t for t in await a.store.traces.recent(50) if t.action == "relay"]
        assert [(t.result, t.actor) for t in relayed] == [
            ("delivered", trust_space["operators"][1]["dn"])
        ]
        received = [t for t in await b.store.traces.recent(50) if t.action == "mta.data"]
        assert [(t.result, t.actor) for t in received] == [
            ("accepted", trust_space["operators"][0]["dn"])
        ]
        # nothing left in A's queue; no copy in Sent (the client appends its own)
        assert await a.store.queue.list(states=[QueueState.QUEUED, QueueState.HELD]) == []
        assert await inbox(a, A_USER, "Sent") == []


# ---------------------------------------------------------------------- failures


async def test_peer_down_retries_delay_notice_then_delivered(
    tmp_path: Path, trust_space: dict[str, Any], urls: tuple[str | None, str | None]
) -> None:
    port = free_port()
    async with operator_b(tmp_path, trust_space, port=port, url=urls[1]):
        pass  # B exists (its user too), then stops
    extra = "delay_notice_after = 2\ngive_up_after = 600\n"
    async with operator_a(tmp_path, trust_space, port, extra=extra, url=urls[0]) as (a, password):
        data, reply = await submit(a, password, [B_USER], subject="down")
        assert reply.startswith("250 2.0.0 queued as")

        # retries against a closed port, then one "delayed" notice (NOTIFY default)
        (notice,) = await eventually(lambda: inbox(a, A_USER))
        _, (_, rcpt) = dsn_fields(notice)
        assert rcpt["Action"] == "delayed" and rcpt["Status"].startswith("4.")
        assert rcpt["Final-Recipient"] == f"rfc822; {B_USER}"
        assert "Will-Retry-Until" in rcpt
        (row,) = await a.store.queue.list()
        assert row.state == QueueState.QUEUED.value and row.attempts >= 2
        assert row.last_error

        async with operator_b(tmp_path, trust_space, port=port, url=urls[1]) as (b, _):
            (stored,) = await eventually(lambda: inbox(b, B_USER))
            assert stored.endswith(data)
            delivered = await eventually(lambda: a.store.queue.list(states=[QueueState.DELIVERED]))
            assert delivered[0].attempts >= 3
        # no second notice: the delay notice is sent once, success needs NOTIFY=SUCCESS
        assert len(await inbox(a, A_USER)) == 1


async def test_peer_with_unlisted_certificate_is_never_sent_to(
    tmp_path: Path, trust_space: dict[str, Any], urls: tuple[str | None, str | None]
) -> None:
    bad = trust_space["bad"]["unlisted"]
    b_tls = f'[tls]\ncertificate = "{bad["certificate"]}"\nkey = "{bad["key"]}"\n'
    async with operator_b(tmp_path, trust_space, extra=b_tls, url=urls[1]) as (b, _):
        extra = "delay_notice_after = 100\ngive_up_after = 3\n"
        async with operator_a(tmp_path, trust_space, b.ports["mta"], extra=extra, url=urls[0]) as (
            a,
            pw,
        ):
            _, reply = await submit(a, pw, [B_USER], subject="unlisted")
            assert reply.startswith("250 2.0.0 queued as")
            (bounce,) = await eventually(lambda: inbox(a, A_USER))
            _, (_, rcpt) = dsn_fields(bounce)
            assert rcpt["Action"] == "failed"
            diagnostic = " ".join(str(rcpt["Diagnostic-Code"]).split())
            assert bad["dn"].split(",")[0] in diagnostic and "not listed" in diagnostic
            (row,) = await a.store.queue.list(states=[QueueState.FAILED])
            assert row.attempts >= 2 and "gave up" in (row.last_error or "")
            refused = [t for t in await a.store.traces.recent(50) if t.action == "relay"]
            assert refused and all(t.result == "peer-refused" for t in refused[:-1])
        # B never saw a MAIL command: nothing stored, no transaction traced
        assert await inbox(b, B_USER) == []
        assert [t for t in await b.store.traces.recent(50) if t.action == "mta.data"] == []


async def test_dsn_notify_success_failure_round_trip(
    tmp_path: Path, trust_space: dict[str, Any], urls: tuple[str | None, str | None]
) -> None:
    async with (
        operator_b(tmp_path, trust_space, url=urls[1]) as (b, _),
        operator_a(tmp_path, trust_space, b.ports["mta"], url=urls[0]) as (a, password),
    ):
        data, reply = await submit(
            a,
            password,
            [B_USER, NOBODY],
            subject="dsn",
            mail_params=" RET=HDRS ENVID=dossier+2D42",
            rcpt_params=" NOTIFY=SUCCESS,FAILURE",
        )
        assert reply.startswith("250 2.0.0 queued as")
        # FAILURE: B refuses NOBODY at RCPT; A reports it to its user
        (bounce,) = await eventually(lambda: inbox(a, A_USER))
        _, (per_message, rcpt) = dsn_fields(bounce)
        assert per_message["Original-Envelope-Id"] == "dossier-42"
        assert (rcpt["Action"], rcpt["Status"]) == ("failed", "5.1.1")
        assert rcpt["Final-Recipient"] == f"rfc822; {NOBODY}"
        assert str(rcpt["Diagnostic-Code"]).startswith("smtp; 550 5.1.1")
        assert rcpt["Remote-MTA"] == "dns; 127.0.0.1"
        # SUCCESS: B speaks DSN, so A passed NOTIFY, ENVID and RET on (RFC 3461 §5.2.1)
        # and sent no "relayed" notice itself; B keeps them on its stored copy for
        # the "delivered" report of the final delivery MTA.
        (stored,) = await eventually(lambda: inbox(b, B_USER))
        assert stored.endswith(data)
        async with b.store.read() as s:
            row = (await s.scalars(select(Message))).one()
        assert (row.return_path, row.dsn_envid, row.dsn_ret) == (A_USER, "dossier+2D42", "HDRS")
        assert row.dsn_notify == "SUCCESS,FAILURE"
        delivered = await a.store.queue.list(states=[QueueState.DELIVERED])
        assert [r.recipient for r in delivered] == [B_USER]
        assert len(await inbox(a, A_USER)) == 1  # the failure report only


async def test_delivered_notice_travels_back_to_the_sending_operator(
    tmp_path: Path, trust_space: dict[str, Any], urls: tuple[str | None, str | None]
) -> None:
    """RFC 3461 §6.2.1: B makes the final delivery and reports it to A's user."""
    async with (
        operator_b(tmp_path, trust_space, url=urls[1]) as (b, _),
        running_gateway(
            tmp_path / "a",
            trust_space,
            operator=0,
            url=urls[0],
            listeners=("submission", "mta"),
            routes=route(b.ports["mta"]),
            extra=RELAY,
        ) as a,
    ):
        await a.store.mailboxes.add(NewMailbox(A_USER, MailboxType.PER, "810000000101"))
        password = (await a.store.credentials.issue(A_USER)).password
        # B's way back to A (A's port is known only now)
        assert b.app.relay is not None
        host_port = ("127.0.0.1", a.ports["mta"])
        b.app.relay.mx.routes["op1.mssante.test"] = host_port
        data, reply = await submit(
            a,
            password,
            [B_USER],
            subject="success",
            mail_params=" ENVID=suivi+2D7",
            rcpt_params=" NOTIFY=SUCCESS",
        )
        assert reply.startswith("250 2.0.0")
        (stored,) = await eventually(lambda: inbox(b, B_USER))
        assert stored.endswith(data)
        (notice,) = await eventually(lambda: inbox(a, A_USER))
        _, (per_message, rcpt) = dsn_fields(notice)
        assert per_message["Original-Envelope-Id"] == "suivi-7"
        assert (rcpt["Action"], rcpt["Status"]) == ("delivered", "2.0.0")
        assert rcpt["Final-Recipient"] == f"rfc822; {B_USER}"
        assert b"Subject: success" in notice  # the original headers come back, not the body
        assert b"Bonjour" not in notice
        # the notice left B with an empty envelope sender: never reported on itself
        sent = await b.store.queue.list(states=[QueueState.DELIVERED])
        assert [(r.sender, r.recipient) for r in sent] == [("", A_USER)]
