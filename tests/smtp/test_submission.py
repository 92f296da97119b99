"""Submission (ports 587 and 465) over real sockets and real TLS, one gateway.

The gateway is development operator 1 (op1.mssante.test).  Its liste
blanche is the development one plus ``patient.mssante.fr`` (as the real list
has it), re-signed with the development signer, so that patient rules are
reached for real.  Relaying to other operators is covered by
``tests/integration/test_two_operators.py``.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from sqlalchemy import select

from mssgw.directory.lookup import DirectoryUnavailable
from mssgw.policy.patient import ins_key
from mssgw.smtp.data import stuff
from mssgw.smtp.submission import header_from
from mssgw.store.mailboxes import NewMailbox
from mssgw.store.models import MailboxState, MailboxType, Message, QueueState
from mssgw.trust.listeblanche import Entry, sign_liste_blanche
from tests.smtp.inbound_support import RawClient, Reply, client_context
from tests.smtp.relay_support import dsn_fields
from tests.support.gateway import RunningGateway, running_gateway

USER = "jean.dupont@op1.mssante.test"
COLLEAGUE = "paul.martin@op1.mssante.test"
OTHER = "chef.service@op1.mssante.test"  # exists; USER may not send as it
APP = "labo.resultats@op1.mssante.test"
REMOTE = "bob@op2.mssante.test"
INS13 = "2840799123456"
PATIENT = f"{INS13}{ins_key(INS13):02d}@patient.mssante.fr"
BAD_PATIENT = f"{INS13}{(ins_key(INS13) + 1) % 97:02d}@patient.mssante.fr"
USER_ID = "810000000001"


def signed_list_with_patients(manifest: dict[str, Any]) -> bytes:
    """The development liste blanche plus ``patient.mssante.fr`` (operator 2's DN)."""
    now = datetime.now(UTC).replace(microsecond=0)
    entries = [Entry(op["domain"], op["dn"]) for op in manifest["operators"]]
    entries.append(Entry("patient.mssante.fr", manifest["operators"][1]["dn"]))
    signer = manifest["signer"]
    with open(signer["certificate"], "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    with open(signer["key"], "rb") as f:
        key = load_pem_private_key(f.read(), None)
    return sign_liste_blanche(entries, now, cert, key)  # type: ignore[arg-type]


@pytest.fixture
def patients_list(trust_space: dict[str, Any]) -> bytes:
    return signed_list_with_patients(trust_space)


async def gateway(
    tmp: Path, manifest: dict[str, Any], liste: bytes, extra: str = ""
) -> AsyncIterator[tuple[RunningGateway, str]]:
    """Operator 1 with submission on 587 and 465, USER and a few other mailboxes."""
    tmp.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - test set-up
    (tmp / "listeblanche.xml").write_bytes(liste)
    # Queued mail goes nowhere: no DNS from the tests (relay: two_operators tests).
    nowhere = {"op2.mssante.test": "127.0.0.1:9", "patient.mssante.fr": "127.0.0.1:9"}
    async with running_gateway(
        tmp, manifest, listeners=("submission", "submissions"), extra=extra, routes=nowhere
    ) as gw:
        add = gw.store.mailboxes.add
        await add(NewMailbox(USER, MailboxType.PER, USER_ID, "Dr Jean Dupont"))
        await add(NewMailbox(COLLEAGUE, MailboxType.PER, "810000000002"))
        await add(NewMailbox(OTHER, MailboxType.PER, "810000000003"))
        await add(NewMailbox(APP, MailboxType.APP, "1750000001", "Laboratoire"))
        password = (await gw.store.credentials.issue(USER)).password
        yield gw, password


@pytest.fixture
async def sub(
    tmp_path: Path, trust_space: dict[str, Any], patients_list: bytes
) -> AsyncIterator[tuple[RunningGateway, str]]:
    async for value in gateway(tmp_path, trust_space, patients_list):
        yield value


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


async def starttls_client(gw: RunningGateway, ctx: ssl.SSLContext) -> RawClient:
    c = await RawClient.connect(gw.ports["submission"])
    assert (await c.reply()).code == 220
    assert (await c.cmd("EHLO poste.example")).code == 250
    await c.starttls(ctx)
    assert (await c.cmd("EHLO poste.example")).code == 250
    return c


async def logged_in(gw: RunningGateway, password: str, user: str = USER) -> RawClient:
    c = await starttls_client(gw, client_context(None, gw.manifest["anchors"]))
    r = await c.cmd(f"AUTH PLAIN {plain(user, password)}")
    assert (r.code, r.enhanced) == (235, "2.7.0"), r
    return c


def message(sender: str = USER, to: str = COLLEAGUE, body: bytes = b"Bonjour\r\n") -> bytes:
    head = (
        f"From: Dr Jean Dupont <{sender}>\r\nTo: <{to}>\r\nSubject: test\r\n"
        f"Message-ID: <m.{abs(hash(body)) % 10**9}@op1.mssante.test>\r\n\r\n"
    )
    return head.encode() + body


async def data(c: RawClient, payload: bytes) -> Reply:
    r = await c.cmd("DATA")
    assert r.code == 354, r
    await c.send(stuff(payload))
    return await c.reply()


async def inbox(gw: RunningGateway, address: str, folder: str = "INBOX") -> list[bytes]:
    f = await gw.store.messages.folder(address, folder)
    async with gw.store.read() as s:
        blobs = (
            await s.scalars(
                select(Message.blob_id).where(Message.folder_id == f.id).order_by(Message.uid)
            )
        ).all()
    return [(await gw.store.contents.read_one(b)) for b in blobs]


async def traces(gw: RunningGateway, action: str) -> list[Any]:
    return [t for t in reversed(await gw.store.traces.recent(500)) if t.action == action]


def code(r: Reply) -> tuple[int, str]:
    return r.code, r.enhanced


# ---------------------------------------------------------------------- TLS and AUTH


async def test_tls_first_and_auth_only_after_it(sub: tuple[RunningGateway, str]) -> None:
    gw, password = sub
    c = await RawClient.connect(gw.ports["submission"])
    assert (await c.reply()).code == 220
    ehlo = await c.cmd("EHLO poste.example")
    assert "STARTTLS" in ehlo.lines and not any(x.startswith("AUTH") for x in ehlo.lines)
    # RFC 4954 §4 / RFC 3207: no password in clear, nothing before STARTTLS.
    assert code(await c.cmd(f"AUTH PLAIN {plain(USER, password)}")) == (530, "5.7.0")
    assert code(await c.cmd(f"MAIL FROM:<{USER}>")) == (530, "5.7.0")
    await c.starttls(client_context(None, gw.manifest["anchors"]))
    ehlo = await c.cmd("EHLO poste.example")
    assert "AUTH PLAIN LOGIN EXTERNAL" in ehlo.lines and "STARTTLS" not in ehlo.lines
    assert "DSN" in ehlo.lines and f"SIZE {gw.settings.limits.max_message_size}" in ehlo.lines
    # RFC 4954 §6: MAIL before AUTH
    r = await c.cmd(f"MAIL FROM:<{USER}>")
    assert code(r) == (530, "5.7.0") and "authentication required" in r.text
    await c.close()
    (refused,) = await traces(gw, "submission.mail")
    assert (refused.category, refused.result, refused.actor) == ("client", "refused", None)
    assert refused.tls is not None and refused.tls.startswith("TLSv1.2")


async def test_auth_exchanges_and_failures(sub: tuple[RunningGateway, str]) -> None:
    gw, password = sub
    c = await starttls_client(gw, client_context(None, gw.manifest["anchors"]))
    assert code(await c.cmd(f"AUTH PLAIN {plain(USER, 'not-the-password')}")) == (535, "5.7.8")
    assert code(await c.cmd(f"AUTH PLAIN {plain('nobody@op1.mssante.test', password)}")) == (
        535,
        "5.7.8",
    )
    assert code(await c.cmd("AUTH PLAIN !!notbase64")) == (501, "5.5.2")
    assert code(await c.cmd("AUTH CRAM-MD5")) == (504, "5.5.4")
    # PLAIN without initial response, then cancelled (RFC 4954 §4: "*")
    r = await c.cmd("AUTH PLAIN")
    assert r.code == 334 and r.lines == [""]
    assert code(await c.cmd("*")) == (501, "5.7.0")
    # LOGIN: two challenges, "Username:" and "Password:" in base64
    r = await c.cmd("AUTH LOGIN")
    assert r.code == 334 and base64.b64decode(r.lines[0]) == b"Username:"
    r = await c.cmd(base64.b64encode(USER.encode()).decode())
    assert r.code == 334 and base64.b64decode(r.lines[0]) == b"Password:"
    r = await c.cmd(base64.b64encode(password.encode()).decode())
    assert code(r) == (235, "2.7.0")
    assert code(await c.cmd(f"AUTH PLAIN {plain(USER, password)}")) == (503, "5.5.1")
    await c.close()

    auth = await traces(gw, "submission.auth")
    assert [t.result for t in auth] == ["failed", "failed", "ok"]
    assert auth[-1].actor == f"professional:{USER_ID} via password as {USER}"
    assert all(password not in (t.reason or "") + (t.actor or "") for t in auth)


async def test_failed_logins_are_rate_limited(sub: tuple[RunningGateway, str]) -> None:
    gw, password = sub
    c = await starttls_client(gw, client_context(None, gw.manifest["anchors"]))
    for _ in range(10):
        assert code(await c.cmd(f"AUTH PLAIN {plain(USER, 'wrong')}")) == (535, "5.7.8")
    # AUTH-4: over the account's budget even the right password waits (RFC 4954: 454 4.7.0)
    assert code(await c.cmd(f"AUTH PLAIN {plain(USER, password)}")) == (454, "4.7.0")
    await c.close()
    # the same budget holds on port 465
    tls = client_context(None, gw.manifest["anchors"])
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.ports["submissions"], ssl=tls)
    c465 = RawClient(reader, writer)
    assert (await c465.reply()).code == 220
    assert (await c465.cmd("EHLO poste.example")).code == 250
    assert code(await c465.cmd(f"AUTH PLAIN {plain(USER, password)}")) == (454, "4.7.0")
    await c465.close()


async def test_external_with_the_professional_certificate_on_465(
    sub: tuple[RunningGateway, str], trust_space: dict[str, Any]
) -> None:
    gw, _ = sub
    pro = trust_space["professional"]
    own = "claire.dupont@op1.mssante.test"
    org = "secretariat.cardio@op1.mssante.test"
    await gw.store.mailboxes.add(NewMailbox(own, MailboxType.PER, pro["national_id"]))
    await gw.store.mailboxes.add(NewMailbox(org, MailboxType.ORG, "1750000001"))
    await gw.store.mailboxes.delegate(org, pro["national_id"])

    async def implicit(pair: dict[str, Any] | None) -> RawClient:
        ctx = client_context(pair, trust_space["anchors"])
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", gw.ports["submissions"], ssl=ctx
        )
        c = RawClient(reader, writer)
        assert (await c.reply()).code == 220
        ehlo = await c.cmd("EHLO poste.example")
        # TLS from the first byte: no STARTTLS, AUTH offered at once
        assert "STARTTLS" not in ehlo.lines and "AUTH PLAIN LOGIN EXTERNAL" in ehlo.lines
        return c

    c = await implicit(pro)
    assert code(await c.cmd("AUTH EXTERNAL =")) == (235, "2.7.0")
    assert code(await c.cmd(f"MAIL FROM:<{own}>")) == (250, "2.1.0")
    assert (await c.cmd("RSET")).code == 250
    # FLOW-2: the ORG mailbox delegated to this professional
    assert code(await c.cmd(f"MAIL FROM:<{org}>")) == (250, "2.1.0")
    assert (await c.cmd(f"RCPT TO:<{COLLEAGUE}>")).code == 250
    r = await data(c, message(sender=org))
    assert code(r) == (250, "2.0.0"), r
    assert (await c.cmd("RSET")).code == 250
    assert code(await c.cmd(f"MAIL FROM:<{USER}>")) == (553, "5.7.1")
    await c.close()
    (stored,) = await inbox(gw, COLLEAGUE)
    assert b"with ESMTPSA id" in stored and b"peer certificate" not in stored

    # no certificate, or one outside the anchors: the handshake succeeds (TLS-3),
    # EXTERNAL does not
    for pair in (None, trust_space["bad"]["unknown_ca"]):
        c = await implicit(pair)
        assert code(await c.cmd("AUTH EXTERNAL =")) == (535, "5.7.8")
        await c.close()
    # over 587 with STARTTLS, naming the mailbox as authorisation identity
    c = await starttls_client(gw, client_context(pro, trust_space["anchors"]))
    authzid = base64.b64encode(org.encode()).decode()
    assert code(await c.cmd(f"AUTH EXTERNAL {authzid}")) == (235, "2.7.0")
    await c.close()


# ---------------------------------------------------------------------- sender rules


async def test_sender_must_be_a_mailbox_of_the_identity(sub: tuple[RunningGateway, str]) -> None:
    gw, password = sub
    c = await logged_in(gw, password)
    # envelope: another local mailbox, or the null sender
    r = await c.cmd(f"MAIL FROM:<{OTHER}>")
    assert code(r) == (553, "5.7.1") and OTHER in r.text
    assert code(await c.cmd("MAIL FROM:<>")) == (553, "5.7.1")
    assert code(await c.cmd(f"MAIL FROM:<{REMOTE}>")) == (553, "5.7.1")
    # header From: envelope is fine, the From field names someone else
    assert code(await c.cmd(f"MAIL FROM:<{USER}>")) == (250, "2.1.0")
    assert (await c.cmd(f"RCPT TO:<{COLLEAGUE}>")).code == 250
    r = await data(c, message(sender=OTHER))
    assert code(r) == (553, "5.7.1") and f"header From {OTHER}" in r.text
    # a message without From
    assert (await c.cmd(f"MAIL FROM:<{USER}>")).code == 250
    assert (await c.cmd(f"RCPT TO:<{COLLEAGUE}>")).code == 250
    r = await data(c, b"Subject: no from\r\n\r\nbody\r\n")
    assert code(r) == (553, "5.7.1")
    # case and display name do not matter; the session goes on
    assert (await c.cmd(f"MAIL FROM:<{USER.upper()}>")).code == 250
    assert (await c.cmd(f"RCPT TO:<{COLLEAGUE}>")).code == 250
    r = await data(c, message(sender="Jean.Dupont@OP1.mssante.test"))
    assert code(r) == (250, "2.0.0"), r
    await c.close()
    assert len(await inbox(gw, COLLEAGUE)) == 1
    refused = [t for t in await traces(gw, "submission.data") if t.result == "refused"]
    assert [t.code for t in refused] == ["553 5.7.1", "553 5.7.1"]
    assert all(t.actor and USER in t.actor for t in refused)


def test_header_from_parsing() -> None:
    head = (
        b"Received: from x\r\n\tby y\r\n"
        b"From: =?utf-8?q?Dr_J=C3=A9r=C3=B4me?= <jerome@op1.mssante.test>,\r\n"
        b" \"Dupont, Marie\" <marie@op1.mssante.test>\r\n"
        b"Subject: From: nobody@evil.example\r\n"
        b"\r\n"
        b"From: body@evil.example\r\n"
    )
    assert header_from(head) == ["jerome@op1.mssante.test", "marie@op1.mssante.test"]
    assert header_from(b"Subject: x\r\n\r\n") == []


# ---------------------------------------------------------------------- recipients


async def test_recipient_rules(sub: tuple[RunningGateway, str]) -> None:
    gw, password = sub
    await gw.store.mailboxes.set_state(OTHER, MailboxState.SUSPENDED)
    c = await logged_in(gw, password)
    r = await c.cmd(f"MAIL FROM:<{USER}> RET=HDRS ENVID=QX+2B42 AUTH=<>")
    assert code(r) == (250, "2.1.0"), r  # RFC 4954 §5 AUTH= accepted and ignored
    r = await c.cmd("RCPT TO:<someone@gmail.com>")
    assert code(r) == (550, "5.7.1") and "liste blanche" in r.text  # FLOW-2, at RCPT
    assert code(await c.cmd("RCPT TO:<nobody@op1.mssante.test>")) == (550, "5.1.1")
    assert code(await c.cmd(f"RCPT TO:<{OTHER}>")) == (550, "5.2.1")
    r = await c.cmd(f"RCPT TO:<{BAD_PATIENT}>")
    assert code(r) == (553, "5.1.3") and "INS" in r.text  # PAT-1
    assert code(await c.cmd(f"RCPT TO:<{PATIENT}>")) == (250, "2.1.5")
    r = await c.cmd(f"RCPT TO:<{REMOTE}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob+40op2")
    assert code(r) == (250, "2.1.5")
    assert code(await c.cmd(f"RCPT TO:<{COLLEAGUE}>")) == (250, "2.1.5")
    r = await data(c, message(to=REMOTE))
    assert code(r) == (250, "2.0.0") and "queued as " in r.text
    await c.close()

    assert len(await inbox(gw, COLLEAGUE)) == 1
    # no copy in Sent: Thunderbird appends its own over IMAP
    assert await inbox(gw, USER, "Sent") == []
    rows = {row.recipient: row for row in await gw.store.queue.list()}
    assert set(rows) == {PATIENT, REMOTE}
    bob = rows[REMOTE]
    assert (bob.sender, bob.envid, bob.ret) == (USER, "QX+2B42", "HDRS")
    assert (bob.notify, bob.orcpt) == ("SUCCESS,FAILURE", "rfc822;Bob+40op2")
    assert rows[PATIENT].state == QueueState.QUEUED.value
    rcpt = await traces(gw, "submission.rcpt")
    assert [(t.recipients, t.code) for t in rcpt] == [
        ("someone@gmail.com", "550 5.7.1"),
        ("nobody@op1.mssante.test", "550 5.1.1"),
        (OTHER, "550 5.2.1"),
        (BAD_PATIENT, "553 5.1.3"),
        # accepted although the directory replica does not list it (BAL-2), traced
        (REMOTE, "250 2.1.5"),
    ]
    assert "not in the directory" in (rcpt[-1].reason or "")
    (accepted,) = await traces(gw, "submission.data")
    assert accepted.sender == USER and accepted.message_id is not None
    assert set((accepted.recipients or "").split(",")) == {PATIENT, REMOTE, COLLEAGUE}


async def test_unknown_remote_refused_by_configuration(
    tmp_path: Path, trust_space: dict[str, Any], patients_list: bytes
) -> None:
    extra = '[submission]\nunknown_remote_recipient = "refuse"\n'
    async for gw, password in gateway(tmp_path, trust_space, patients_list, extra):
        c = await logged_in(gw, password)
        assert (await c.cmd(f"MAIL FROM:<{USER}>")).code == 250
        assert code(await c.cmd(f"RCPT TO:<{REMOTE}>")) == (550, "5.1.1")
        gw.app.directory.find = _unavailable  # type: ignore[method-assign]
        assert code(await c.cmd(f"RCPT TO:<{REMOTE}>")) == (451, "4.4.3")
        await c.close()


async def _unavailable(address: str) -> None:
    raise DirectoryUnavailable("directory lookup timed out; try again later")


async def test_directory_down_does_not_hold_mail_in_accept_mode(
    sub: tuple[RunningGateway, str],
) -> None:
    gw, password = sub
    gw.app.directory.find = _unavailable  # type: ignore[method-assign]
    c = await logged_in(gw, password)
    assert (await c.cmd(f"MAIL FROM:<{USER}>")).code == 250
    assert code(await c.cmd(f"RCPT TO:<{REMOTE}>")) == (250, "2.1.5")
    await c.close()
    (trace,) = await traces(gw, "submission.rcpt")
    assert (trace.result, trace.reason) == ("accepted", "directory replica unavailable (accepted)")


async def test_patient_rules_and_size_cap(
    tmp_path: Path, trust_space: dict[str, Any], patients_list: bytes
) -> None:
    extra = "[limits]\npatient_max_message_size = 2000\n"
    async for gw, password in gateway(tmp_path, trust_space, patients_list, extra):
        c = await logged_in(gw, password)
        # SIZE= over the patient cap: refused at the patient's RCPT only (RFC 1870 §6.2)
        assert (await c.cmd(f"MAIL FROM:<{USER}> SIZE=3000")).code == 250
        assert code(await c.cmd(f"RCPT TO:<{PATIENT}>")) == (552, "5.3.4")
        assert code(await c.cmd(f"RCPT TO:<{COLLEAGUE}>")) == (250, "2.1.5")
        assert (await c.cmd("RSET")).code == 250
        # the actual size counts at the end of DATA (FLOW-6)
        big = message(to=PATIENT, body=(b"y" * 98 + b"\r\n") * 25)
        assert (await c.cmd(f"MAIL FROM:<{USER}>")).code == 250
        assert (await c.cmd(f"RCPT TO:<{PATIENT}>")).code == 250
        assert (await c.cmd(f"RCPT TO:<{COLLEAGUE}>")).code == 250
        r = await data(c, big)
        assert code(r) == (552, "5.3.4") and "2000" in r.text
        # the same message without a patient recipient passes
        assert (await c.cmd(f"MAIL FROM:<{USER}>")).code == 250
        assert (await c.cmd(f"RCPT TO:<{COLLEAGUE}>")).code == 250
        assert code(await data(c, big)) == (250, "2.0.0")
        await c.close()
        assert await gw.store.queue.list() == []
        assert len(await inbox(gw, COLLEAGUE)) == 1

        # PAT-4: an APP mailbox may not write to patients (unless configured)
        app_password = (await gw.store.credentials.issue(APP)).password
        c = await logged_in(gw, app_password, APP)
        assert (await c.cmd(f"MAIL FROM:<{APP}>")).code == 250
        r = await c.cmd(f"RCPT TO:<{PATIENT}>")
        assert code(r) == (550, "5.7.1") and "APP" in r.text
        assert code(await c.cmd(f"RCPT TO:<{COLLEAGUE}>")) == (250, "2.1.5")
        await c.close()


# ---------------------------------------------------------------------- delivery


async def test_local_delivery_and_success_notice(sub: tuple[RunningGateway, str]) -> None:
    gw, password = sub
    c = await logged_in(gw, password)
    assert (await c.cmd(f"MAIL FROM:<{USER}> RET=HDRS ENVID=env-42")).code == 250
    r = await c.cmd(f"RCPT TO:<{COLLEAGUE}> NOTIFY=SUCCESS ORCPT=rfc822;{COLLEAGUE}")
    assert r.code == 250
    original = message(body=b"Bonjour,\r\n.ligne avec point\r\n\xc3\xa9t\xc3\xa9\r\n")
    r = await data(c, original)
    assert code(r) == (250, "2.0.0") and "delivered as " in r.text
    txn = r.text.split()[-1]
    await c.close()

    (stored,) = await inbox(gw, COLLEAGUE)
    head, _, rest = stored.partition(b"\r\nFrom: ")
    assert head.startswith(b"Received: from poste.example ([127.0.0.1])")
    assert f"with ESMTPSA id {txn}".encode() in head
    assert b"Return-Path" not in head
    assert b"From: " + rest == original  # byte for byte after our one trace field

    # RFC 3461 §6.2.1: we are the final delivery MTA for a local recipient
    (dsn,) = await inbox(gw, USER)
    report, (per_message, rcpt) = dsn_fields(dsn)
    assert report.get_content_type() == "multipart/report"
    assert per_message["Original-Envelope-Id"] == "env-42"
    assert rcpt["Action"] == "delivered" and rcpt["Status"] == "2.0.0"
    assert rcpt["Final-Recipient"] == f"rfc822; {COLLEAGUE}"
    assert rcpt["Original-Recipient"] == f"rfc822;{COLLEAGUE}"
    assert b"Content-Type: text/rfc822-headers" in dsn  # RET=HDRS: headers only
    (trace,) = await traces(gw, "submission.data")
    assert (trace.result, trace.code, trace.size) == ("accepted", "250 2.0.0", len(original))
    assert trace.actor == f"professional:{USER_ID} via password as {USER}"


async def test_imap_failures_count_towards_the_submission_budget(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    """AUTH-4 holds across protocols: one AuthService per gateway."""
    import imaplib

    async with running_gateway(tmp_path, trust_space, listeners=("submission", "imaps")) as gw:
        await gw.store.mailboxes.add(NewMailbox(USER, MailboxType.PER, USER_ID))
        password = (await gw.store.credentials.issue(USER)).password
        tls = ssl.create_default_context(cafile=gw.manifest["root"])
        tls.check_hostname = False

        def fail_over_imap() -> int:
            failures = 0
            for _ in range(10):
                conn = imaplib.IMAP4_SSL("127.0.0.1", gw.ports["imaps"], ssl_context=tls)
                try:
                    conn.login(USER, "wrong-password")
                except imaplib.IMAP4.error:
                    failures += 1
                finally:
                    conn.shutdown()
            return failures

        assert await asyncio.to_thread(fail_over_imap) == 10
        c = await starttls_client(gw, client_context(None, gw.manifest["anchors"]))
        assert code(await c.cmd(f"AUTH PLAIN {plain(USER, password)}")) == (454, "4.7.0")
        await c.close()
