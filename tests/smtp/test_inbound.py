"""Port 25 over real sockets and real TLS: another operator delivers to us.

The sending operator is ``operators[1]`` of the development PKI (domain
op2.mssante.test) with its own client certificate; the gateway is
``operators[0]`` (op1.mssante.test).
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mssgw.smtp.data import stuff
from mssgw.smtp.stats import stats_for
from mssgw.store.models import MailboxState, Message
from mssgw.tls.identity import subject_dn
from tests.smtp.inbound_support import (
    RawClient,
    add_mailbox,
    client_context,
    connected,
    message,
    sender_context,
    stored,
    traces,
    wait_traces,
)
from tests.support.gateway import RunningGateway, running_gateway

SENDER = "dr.martin@op2.mssante.test"


async def message_count(gw: RunningGateway) -> int:
    async with gw.store.read() as s:
        return int(await s.scalar(select(func.count(Message.id))) or 0)


async def send_one(c: RawClient, rcpt: str, data: bytes, sender: str = SENDER) -> str:
    """MAIL, RCPT, DATA; return the final reply as "code enhanced"."""
    r = await c.cmd(f"MAIL FROM:<{sender}>")
    assert r.code == 250, r
    r = await c.cmd(f"RCPT TO:<{rcpt}>")
    assert r.code == 250, r
    r = await c.cmd("DATA")
    assert r.code == 354, r
    await c.send(stuff(data))
    r = await c.reply()
    return f"{r.code} {r.enhanced}"


# ---------------------------------------------------------------------- the dialogue


async def test_ehlo_extensions_and_starttls_required(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with running_gateway(tmp_path, trust_space) as gw:
        c = await RawClient.connect(gw.ports["mta"])
        assert (await c.reply()).code == 220
        ehlo = await c.cmd("EHLO mx.op2.mssante.test")
        size = gw.settings.limits.max_message_size
        for keyword in ("PIPELINING", f"SIZE {size}", "8BITMIME", "SMTPUTF8",
                        "ENHANCEDSTATUSCODES", "DSN", "STARTTLS"):
            assert keyword in ehlo.lines, ehlo
        for command in (f"MAIL FROM:<{SENDER}>", "RCPT TO:<a@op1.mssante.test>", "DATA"):
            r = await c.cmd(command)
            assert (r.code, r.enhanced) == (530, "5.7.0"), r
        await c.starttls(sender_context(trust_space))
        again = await c.cmd("EHLO mx.op2.mssante.test")
        assert "STARTTLS" not in again.lines and "DSN" in again.lines
        r = await c.cmd("STARTTLS")
        assert (r.code, r.enhanced) == (503, "5.5.1")
        r = await c.cmd("MAIL FROM:<x@op2.mssante.test>")
        assert r.code == 250
        await c.close()


async def test_delivery_with_dsn_parameters_and_mss_headers(
    tmp_path: Path, trust_space: dict[str, Any], backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    async with running_gateway(tmp_path, trust_space, url=url) as gw:
        domain = gw.operator["domain"]
        await gw.store.mailboxes.add_domain("cabinet-op1.mssante.test")  # several hosted domains
        await add_mailbox(gw.store, f"dr.dupont@{domain}", n=1)
        await add_mailbox(gw.store, "accueil@cabinet-op1.mssante.test", n=2)
        original = message(
            "dsn",
            body=b"Ligne normale\r\n.ligne qui commence par un point\r\n..deux\r\n\r\nfin\r\n",
            extra="X-MSS-NIL: LOGICIEL-1.0\r\nX-MSS-INS: O\r\nX-MSS-MES: FIN\r\n"
            "X-MSS-CODECDA: 11488-4\r\n",
        )
        c = await connected(gw.ports["mta"], sender_context(trust_space))
        r = await c.cmd(
            f"MAIL FROM:<Dr.Martin@op2.mssante.test> RET=hdrs ENVID=QQ+2Bx SIZE={len(original)}"
        )
        assert r.code == 250, r
        r = await c.cmd(
            f"RCPT TO:<dr.dupont@{domain}> NOTIFY=success,Failure ORCPT=rfc822;Dr.Dupont@{domain}"
        )
        assert (r.code, r.enhanced) == (250, "2.1.5"), r
        r = await c.cmd("RCPT TO:<accueil@cabinet-op1.mssante.test>")
        assert r.code == 250, r
        assert (await c.cmd("DATA")).code == 354
        await c.send(stuff(original))
        final = await c.reply()
        assert (final.code, final.enhanced) == (250, "2.0.0"), final
        assert (await c.cmd("QUIT")).code == 221
        await c.close()

        rows = await stored(gw.store, "<dsn@op2.mssante.test>")
        assert len(rows) == 2 and rows[0].blob_id == rows[1].blob_id
        blob = (await gw.store.contents.read_one(rows[0].blob_id))
        assert blob.endswith(original)  # the message itself byte for byte, X-MSS-* included
        prefix = blob[: -len(original)].decode("ascii")
        assert prefix.startswith("Return-Path: <Dr.Martin@op2.mssante.test>\r\nReceived: from ")
        op2_dn = trust_space["operators"][1]["dn"]
        assert "(using TLSv1.2 with cipher ECDHE-RSA-" in prefix
        assert "peer certificate CN=mx.op2.mssante.test" in prefix and "verified" in prefix
        assert "with ESMTPS id " in prefix and "for <" not in prefix  # two recipients
        by_address = {}
        for row in rows:
            folder = await gw.store.messages.folder(f"dr.dupont@{domain}")
            by_address["dupont" if row.folder_id == folder.id else "accueil"] = row
        dupont = by_address["dupont"]
        assert (dupont.return_path, dupont.dsn_envid, dupont.dsn_ret) == (
            "Dr.Martin@op2.mssante.test", "QQ+2Bx", "hdrs"
        )
        assert dupont.dsn_notify == "success,Failure"
        assert dupont.dsn_orcpt == f"rfc822;Dr.Dupont@{domain}"
        assert by_address["accueil"].dsn_notify is None

        (trace,) = await traces(gw.store, "mta.data")
        assert trace.result == "accepted" and trace.code == "250 2.0.0"
        assert trace.actor == op2_dn and trace.peer_ip == "127.0.0.1"
        assert trace.tls is not None and trace.tls.startswith("TLSv1.2 ECDHE-RSA-")
        assert trace.sender == "Dr.Martin@op2.mssante.test"
        assert trace.recipients == f"dr.dupont@{domain},accueil@cabinet-op1.mssante.test"
        assert trace.message_id == "<dsn@op2.mssante.test>" and trace.size == len(original)
        stats = stats_for(gw.app, "mta")
        assert stats.messages_accepted == 1 and stats.recipients_accepted == 2
        assert stats.mss["x_mss_nil"] == 1 and stats.mss["x_mss_ins_o"] == 1
        assert stats.mss["x_mss_mes_fin"] == 1 and stats.mss["x_mss_codecda"] == 1
        assert 'mssgw_smtp_mss_headers_total{listener="mta",fact="x_mss_nil"} 1' in (
            stats.prometheus()
        )


async def test_single_recipient_named_in_received_and_null_sender(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with running_gateway(tmp_path, trust_space) as gw:
        rcpt = f"dr.dupont@{gw.operator['domain']}"
        await add_mailbox(gw.store, rcpt)
        c = await connected(gw.ports["mta"], sender_context(trust_space))
        assert await send_one(c, rcpt, message("bounce"), sender="") == "250 2.0.0"
        await c.close()
        (row,) = await stored(gw.store, "<bounce@op2.mssante.test>")
        blob = (await gw.store.contents.read_one(row.blob_id))
        assert blob.startswith(b"Return-Path: <>\r\n")
        assert f"for <{rcpt}>;".encode() in blob


# ---------------------------------------------------------------------- trust (TLS-2, TRUST-6)


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (None, ("did not return a certificate", "certificate required")),
        ("expired", ("expired",)),
        ("revoked", ("revoked",)),
        ("unknown_ca", ("unable to get local issuer", "self-signed", "self signed")),
    ],
)
async def test_handshake_refused_and_traced(
    tmp_path: Path, trust_space: dict[str, Any], bad: str | None, expected: tuple[str, ...]
) -> None:
    async with running_gateway(tmp_path, trust_space) as gw:
        pair = trust_space["bad"][bad] if bad else None
        c = await RawClient.connect(gw.ports["mta"])
        assert (await c.reply()).code == 220
        assert (await c.cmd("EHLO mx.op2.mssante.test")).code == 250
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await c.starttls(client_context(pair, trust_space["anchors"]))
            # TLS 1.2: the client may only learn of the refusal on its first read.
            await c.cmd("EHLO mx.op2.mssante.test")
        await c.close()
        (trace,) = await wait_traces(gw.store, "mta.starttls")
        assert trace.result == "refused" and trace.peer_ip == "127.0.0.1"
        assert trace.reason is not None
        assert any(word in trace.reason.lower() for word in expected), trace.reason
        assert stats_for(gw.app, "mta").tls_failures == 1


@pytest.mark.parametrize(
    ("cert", "sender", "reply"),
    [
        ("unlisted", SENDER, "550 5.7.1"),  # valid chain, DN listed nowhere
        ("op2", "someone@op1.mssante.test", "550 5.7.1"),  # listed operator, not for that domain
        ("op2", "someone@gmail.com", "550 5.7.1"),  # domain not on the liste blanche
        ("unlisted", "", "550 5.7.1"),  # null sender: DN must be listed somewhere
        ("op2", "", "250 2.1.0"),
        ("op2", SENDER, "250 2.1.0"),
    ],
)
async def test_sender_binding(
    tmp_path: Path, trust_space: dict[str, Any], cert: str, sender: str, reply: str
) -> None:
    async with running_gateway(tmp_path, trust_space) as gw:
        pair = trust_space["bad"]["unlisted"] if cert == "unlisted" else trust_space["operators"][1]
        c = await connected(gw.ports["mta"], client_context(pair, trust_space["anchors"]))
        r = await c.cmd(f"MAIL FROM:<{sender}>")
        assert f"{r.code} {r.enhanced}" == reply, r
        await c.close()
        if r.code != 250:
            (trace,) = await traces(gw.store, "mta.mail")
            assert trace.result == "refused" and trace.code == reply
            assert trace.actor == pair["dn"] and trace.sender == sender
            assert trace.reason and "5.7.1" not in trace.reason


async def test_starttls_uses_the_reloaded_certificate(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(trust_space["operators"][0]["certificate"], cert)
    shutil.copy(trust_space["operators"][0]["key"], key)
    extra = f'[tls]\ncertificate = "{cert}"\nkey = "{key}"\n'
    async with running_gateway(tmp_path / "gw", trust_space, extra=extra) as gw:

        async def server_dn() -> str:
            c = await connected(gw.ports["mta"], sender_context(trust_space))
            sslobj = c.writer.get_extra_info("ssl_object")
            from cryptography import x509

            dn = subject_dn(x509.load_der_x509_certificate(sslobj.getpeercert(binary_form=True)))
            await c.close()
            return dn

        assert await server_dn() == trust_space["operators"][0]["dn"]
        shutil.copy(trust_space["bad"]["unlisted"]["certificate"], cert)
        shutil.copy(trust_space["bad"]["unlisted"]["key"], key)
        assert gw.app.trust is not None
        gw.app.trust.operator_tls.reload()
        assert await server_dn() == trust_space["bad"]["unlisted"]["dn"]


# ---------------------------------------------------------------------- recipients and sizes


async def test_policy_table_over_smtp(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    extra = "[limits]\nmax_recipients = 3\nmax_message_size = 100000\n"
    async with running_gateway(tmp_path, trust_space, extra=extra) as gw:
        d = gw.operator["domain"]
        for i, local in enumerate(("a", "b", "c", "d")):
            await add_mailbox(gw.store, f"{local}@{d}", n=i)
        await add_mailbox(gw.store, f"suspendu@{d}", MailboxState.SUSPENDED, n=10)
        await add_mailbox(gw.store, f"parti@{d}", MailboxState.DELETED, n=11)
        c = await connected(gw.ports["mta"], sender_context(trust_space))
        r = await c.cmd(f"MAIL FROM:<{SENDER}> SIZE=100001")
        assert (r.code, r.enhanced) == (552, "5.3.4"), r
        assert (await c.cmd(f"MAIL FROM:<{SENDER}> SIZE=100000")).code == 250
        table = [
            (f"inconnu@{d}", "550 5.1.1"),
            (f"suspendu@{d}", "550 5.2.1"),
            (f"parti@{d}", "550 5.1.1"),
            ("x@elsewhere.mssante.test", "550 5.1.2"),
            ("not an address", "553 5.1.3"),
            (f"a@{d}", "250 2.1.5"),
            (f"B@{d.upper()}", "250 2.1.5"),  # case-insensitive
            (f"c@{d}", "250 2.1.5"),
            (f"d@{d}", "452 4.5.3"),  # fourth: too many recipients
        ]
        for rcpt, expected in table:
            r = await c.cmd(f"RCPT TO:<{rcpt}>")
            assert f"{r.code} {r.enhanced}" == expected, (rcpt, r)
        await c.close()
        refused = await traces(gw.store, "mta.rcpt")
        assert [t.code for t in refused] == [
            "550 5.1.1", "550 5.2.1", "550 5.1.1", "550 5.1.2", "553 5.1.3", "452 4.5.3"
        ]
        assert all(t.result in ("refused", "deferred") and t.reason for t in refused)
        (mail,) = await traces(gw.store, "mta.mail")
        assert mail.code == "552 5.3.4"


async def test_oversize_data_is_refused_without_storing(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    extra = "[limits]\nmax_message_size = 100000\n"
    async with running_gateway(tmp_path, trust_space, extra=extra) as gw:
        rcpt = f"a@{gw.operator['domain']}"
        await add_mailbox(gw.store, rcpt)
        c = await connected(gw.ports["mta"], sender_context(trust_space))
        big = message("big", body=(b"y" * 998 + b"\r\n") * 200)
        assert await send_one(c, rcpt, big) == "552 5.3.4"
        assert await message_count(gw) == 0
        # The session stays in step: the next transaction works.
        assert await send_one(c, rcpt, message("small")) == "250 2.0.0"
        await c.close()
        t = await traces(gw.store, "mta.data")
        assert [x.code for x in t] == ["552 5.3.4", "250 2.0.0"]
        assert t[0].size is not None and t[0].size > 100000


# ---------------------------------------------------------------------- stream robustness


async def test_pipelined_transactions(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    async with running_gateway(tmp_path, trust_space) as gw:
        d = gw.operator["domain"]
        await add_mailbox(gw.store, f"a@{d}")
        c = await connected(gw.ports["mta"], sender_context(trust_space))
        await c.send(
            f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<a@{d}>\r\nRCPT TO:<nobody@{d}>\r\nDATA\r\n".encode()
        )
        codes = [(await c.reply()).code for _ in range(4)]
        assert codes == [250, 250, 550, 354]
        await c.send(
            stuff(message("p1"))
            + f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<a@{d}>\r\nDATA\r\n".encode()
        )
        codes = [(await c.reply()).code for _ in range(4)]
        assert codes == [250, 250, 250, 354]
        await c.send(stuff(message("p2")) + b"QUIT\r\n")
        assert [(await c.reply()).code for _ in range(2)] == [250, 221]
        await c.close()
        assert len(await stored(gw.store, "<p1@op2.mssante.test>")) == 1
        assert len(await stored(gw.store, "<p2@op2.mssante.test>")) == 1


@pytest.mark.parametrize("sequence", [b"\n.\n", b"\r.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n"])
async def test_smuggling_refused(
    tmp_path: Path, trust_space: dict[str, Any], sequence: bytes
) -> None:
    async with running_gateway(tmp_path, trust_space) as gw:
        rcpt = f"a@{gw.operator['domain']}"
        await add_mailbox(gw.store, rcpt)
        c = await connected(gw.ports["mta"], sender_context(trust_space))
        assert (await c.cmd(f"MAIL FROM:<{SENDER}>")).code == 250
        assert (await c.cmd(f"RCPT TO:<{rcpt}>")).code == 250
        assert (await c.cmd("DATA")).code == 354
        smuggled = (
            b"Subject: first\r\nMessage-ID: <first@op2.mssante.test>\r\n\r\nbody" + sequence
            + f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode()
            + b"Subject: smuggled\r\nMessage-ID: <smuggled@op2.mssante.test>\r\n\r\nevil\r\n.\r\n"
        )
        await c.send(smuggled)
        r = await c.reply()
        assert (r.code, r.enhanced) == (550, "5.5.2"), r
        r = await c.cmd("NOOP")  # in step: exactly one reply came for the whole thing
        assert r.code == 250
        await c.close()
        assert await message_count(gw) == 0
        (t,) = await traces(gw.store, "mta.data")
        assert t.result == "refused" and t.code == "550 5.5.2"


async def test_long_lines_and_bare_lf_commands(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    async with running_gateway(tmp_path, trust_space) as gw:
        rcpt = f"a@{gw.operator['domain']}"
        await add_mailbox(gw.store, rcpt)
        c = await connected(gw.ports["mta"], sender_context(trust_space))
        r = await c.cmd("NOOP " + "x" * 600)
        assert (r.code, r.enhanced) == (500, "5.5.2"), r
        await c.send(b"NOOP\n")
        r = await c.reply()
        assert (r.code, r.enhanced) == (500, "5.5.2"), r
        r = await c.cmd("NOOP " + "y" * 200_000)  # beyond the read buffer: skipped, not held
        assert (r.code, r.enhanced) == (500, "5.5.2"), r
        long_line = message("long", body=b"z" * 5000 + b"\r\n")
        assert await send_one(c, rcpt, long_line) == "500 5.5.2"
        assert await send_one(c, rcpt, message("fine")) == "250 2.0.0"
        await c.close()
        assert [t.code for t in await traces(gw.store, "mta.data")] == ["500 5.5.2", "250 2.0.0"]


# ---------------------------------------------------------------------- bounds


async def test_idle_timeout_closes_with_421(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    extra = "[limits]\ncommand_timeout = 1\n"
    async with running_gateway(tmp_path, trust_space, extra=extra) as gw:
        c = await connected(gw.ports["mta"], sender_context(trust_space))
        r = await c.reply(wait=5)
        assert (r.code, r.enhanced) == (421, "4.4.2"), r
        assert await c.reader.read() == b""
        await c.close()


async def test_connection_limits(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    extra = "[limits]\nmax_connections_per_ip = 2\n"
    async with running_gateway(tmp_path, trust_space, extra=extra) as gw:
        first = await connected(gw.ports["mta"], sender_context(trust_space))
        second = await connected(gw.ports["mta"], sender_context(trust_space))
        third = await RawClient.connect(gw.ports["mta"])
        r = await third.reply()
        assert (r.code, r.enhanced) == (421, "4.7.0"), r
        await third.close()
        await first.cmd("QUIT")
        await first.close()
        await asyncio.sleep(0.1)
        fourth = await connected(gw.ports["mta"], sender_context(trust_space))
        for c in (second, fourth):
            await c.close()
        assert stats_for(gw.app, "mta").connections_refused == 1


async def test_command_floods_end_the_session(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    async with running_gateway(tmp_path, trust_space) as gw:
        c = await connected(gw.ports["mta"], sender_context(trust_space))
        replies = [await c.cmd("XYZZY") for _ in range(11)]
        assert [r.code for r in replies] == [500] * 10 + [421]
        assert await c.reader.read() == b""
        await c.close()
        c = await connected(gw.ports["mta"], sender_context(trust_space))
        await c.send(b"NOOP\r\n" * 101)
        codes = [(await c.reply()).code for _ in range(99)]
        assert codes == [250] * 98 + [421]  # the two EHLOs count: 100 junk commands allowed
        assert await c.reader.read() == b""
        await c.close()


# ---------------------------------------------------------------------- store failures


async def test_disk_failure_gives_451_and_stores_nothing(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with running_gateway(tmp_path, trust_space) as gw:
        rcpt = f"a@{gw.operator['domain']}"
        await add_mailbox(gw.store, rcpt)
        gw.store.inline_max = 0  # the message goes to a file, not only to the database
        shutil.rmtree(gw.settings.blob_dir, ignore_errors=True)
        gw.settings.blob_dir.write_bytes(b"not a folder")  # every blob write now fails
        c = await connected(gw.ports["mta"], sender_context(trust_space))
        assert await send_one(c, rcpt, message("disk")) == "451 4.3.0"
        await c.close()
        assert await message_count(gw) == 0
        (t,) = await traces(gw.store, "mta.data")
        assert (t.result, t.code) == ("deferred", "451 4.3.0")


async def test_database_down_gives_451_and_stores_nothing(
    tmp_path: Path, trust_space: dict[str, Any], pg_url: str, pg_cluster: Any
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    async with running_gateway(tmp_path, trust_space, url=pg_url) as gw:
        rcpt = f"a@{gw.operator['domain']}"
        await add_mailbox(gw.store, rcpt)
        c = await connected(gw.ports["mta"], sender_context(trust_space))
        assert (await c.cmd(f"MAIL FROM:<{SENDER}>")).code == 250
        assert (await c.cmd(f"RCPT TO:<{rcpt}>")).code == 250
        pg_cluster.psql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        pg_cluster.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}'"
        )
        try:
            assert (await c.cmd("DATA")).code == 354
            await c.send(stuff(message("dbdown")))
            r = await c.reply()
            assert (r.code, r.enhanced) == (451, "4.3.0"), r
            r = await c.cmd(f"MAIL FROM:<{SENDER}>")
            assert r.code == 250
            # A recipient not looked up recently: the lookup fails too, transient.
            r = await c.cmd(f"RCPT TO:<other@{gw.operator['domain']}>")
            assert (r.code, r.enhanced) == (451, "4.3.0"), r
        finally:
            pg_cluster.psql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        await c.close()
        for _ in range(3):  # pooled connections were killed: the first uses may fail
            try:
                assert await message_count(gw) == 0
                break
            except AssertionError:
                raise
            except Exception:
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("database did not come back")


async def test_mailbox_suspended_meanwhile_never_gets_mail(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    """RCPT answers from a 5 s cache of mailbox states; delivery re-checks in its transaction."""
    async with running_gateway(tmp_path, trust_space) as gw:
        rcpt = f"a@{gw.operator['domain']}"
        await add_mailbox(gw.store, rcpt)
        c = await connected(gw.ports["mta"], sender_context(trust_space))
        assert await send_one(c, rcpt, message("before")) == "250 2.0.0"
        await gw.store.mailboxes.set_state(rcpt, MailboxState.SUSPENDED)
        assert await send_one(c, rcpt, message("after")) == "451 4.3.0"
        await c.close()
        assert await stored(gw.store, "<after@op2.mssante.test>") == []


async def test_commands_pipelined_behind_starttls_are_discarded(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    """RFC 3207 §4.2 (CVE-2011-0411): clear-text bytes after STARTTLS are not executed."""
    async with running_gateway(tmp_path, trust_space) as gw:
        c = await RawClient.connect(gw.ports["mta"])
        assert (await c.reply()).code == 220
        assert (await c.cmd("EHLO mx.op2.mssante.test")).code == 250
        await c.send(f"STARTTLS\r\nMAIL FROM:<{SENDER}>\r\n".encode())
        assert (await c.reply()).code == 220
        await c.writer.start_tls(sender_context(trust_space))
        r = await c.cmd("NOOP")
        assert (r.code, r.enhanced) == (250, "2.0.0"), r  # not a reply to the injected MAIL
        r = await c.cmd("EHLO mx.op2.mssante.test")
        assert r.code == 250
        r = await c.cmd(f"RCPT TO:<a@{gw.operator['domain']}>")
        assert (r.code, r.enhanced) == (503, "5.5.1"), r  # no MAIL was taken
        await c.close()
