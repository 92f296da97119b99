"""``mssgw demo``: two operators on loopback, one message from A's user to B's user.

Everything a reviewer wants to see the gateway do, in one process and with
the standard library only on the client side (``smtplib``, ``imaplib``: what
any mail client speaks):

1. a development PKI and signed liste blanche (created once under the state
   folder; operators ``op1.mssante.test`` and ``op2.mssante.test``);
2. operator B (op2) starts: port 25 for operators, IMAPS for its users;
3. operator A (op1) starts: submission (587, STARTTLS) and a static relay
   route to B's port 25 (no DNS on loopback);
4. one PER mailbox on each side, with an application password;
5. A's user submits over STARTTLS + AUTH PLAIN;
6. A's relay delivers to B over mutual TLS (each checks the other's
   certificate DN against the liste blanche, TRUST-6);
7. B's user reads the message from B's INBOX over IMAPS;
8. the stored message is compared with the submitted bytes;
9. one refusal: a recipient in a domain outside the trust space is refused
   at RCPT (``550 5.7.1``), never accepted then bounced;
10. both gateways stop (A first: its relay worker lets a delivery in
    flight finish).

What "byte-identical" means (step 8): each gateway *prepends* trace fields
to a message (RFC 5321 §4.4): A adds ``Received:``, B adds ``Return-Path:``
and ``Received:``.  The demo removes, from the top of the stored message
only, the leading header fields named ``Return-Path`` or ``Received`` (with
their folded continuation lines), and the rest must equal, octet for octet,
the message the client handed to ``smtplib`` (CRLF line ends; the SMTP
dot-stuffing of a line starting with ``.`` is undone by the server).  The
submitted message itself starts with ``From:``, so nothing of it is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
import secrets
import shutil
import smtplib
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mssgw import config, dev, runtime
from mssgw.app import App
from mssgw.store import Store
from mssgw.store.mailboxes import NewMailbox
from mssgw.store.models import MailboxType

Say = Callable[[str], None]

#: Seconds to wait for the relayed message to appear in B's INBOX.
RELAY_WAIT = 60.0
#: Header fields a gateway prepends (RFC 5321 §4.4); stripped from the top only.
TRACE_FIELDS = (b"return-path", b"received")
UNLISTED = "quelquun@hors-confiance.example"


@dataclass
class Operator:
    """One running gateway of the demo and its demo user."""

    label: str
    app: App
    store: Store
    settings: config.Settings
    ports: dict[str, int]
    address: str = ""
    password: str = ""


class Step:
    """Numbered, readable output; remembers whether every step succeeded."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.number = 0
        self.ok = True

    def start(self, title: str) -> None:
        self.number += 1
        self.say(f"\n{self.number:>2}. {title}")

    def detail(self, text: str) -> None:
        self.say(f"      {text}")

    def result(self, ok: bool, text: str) -> None:
        self.ok = self.ok and ok
        self.say(f"      {'OK ' if ok else 'FAILED'}  {text}")


# --------------------------------------------------------------------------- gateways


@contextlib.asynccontextmanager
async def operator_gateway(
    state: Path,
    pki: dict[str, Any],
    *,
    operator: int,
    listeners: tuple[str, ...],
    routes: dict[str, str] | None = None,
) -> AsyncIterator[Operator]:
    """Start development operator ``operator`` with its own state folder, ephemeral ports."""
    state.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - before any listener
    path = state / "mssgw.toml"
    path.write_text(
        dev.config_text(
            state, pki, ports=dict.fromkeys(listeners, 0), operator=operator, routes=routes
        )
    )
    settings = config.load(path, env={})
    store = await Store.open(settings, check_schema=False)
    try:
        await store.upgrade()
        app = App(settings, store, runtime.build(settings))
        try:
            ports = await app.start()
            label = "AB"[operator] if operator < 2 else str(operator)
            yield Operator(label, app, store, settings, ports)
        finally:
            await app.stop()
    finally:
        await store.close()


async def demo_user(op: Operator, local: str, name: str, national_id: str) -> None:
    """A PER mailbox (created once) and a fresh application password for this run."""
    domain = op.settings.gateway.domains[0]
    address = f"{local}@{domain}"
    if await op.store.mailboxes.find(address) is None:
        await op.store.mailboxes.add(NewMailbox(address, MailboxType.PER, national_id, name))
    issued = await op.store.credentials.issue(address, label="mssgw demo")
    op.address, op.password = address, issued.password


# --------------------------------------------------------------------------- clients (stdlib)


def client_context(ca_file: str) -> ssl.SSLContext:
    """What a mail client does: verify the server against the (development) CA."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.check_hostname = False  # loopback: the server's name is mx.opN.mssante.test
    return ctx


def demo_message(sender: str, recipient: str) -> tuple[bytes, str]:
    """The message A's user sends: CRLF, UTF-8 text, a line starting with a dot."""
    token = secrets.token_hex(8)
    message_id = f"<demo.{token}@{sender.rpartition('@')[2]}>"
    text = (
        f"From: Dr Jean Dupont <{sender}>\r\n"
        f"To: Dr Marie Martin <{recipient}>\r\n"
        "Subject: =?utf-8?q?Compte_rendu_de_consultation_=28d=C3=A9mo=29?=\r\n"
        f"Message-ID: {message_id}\r\n"
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "X-MSS-NIL: mssgw-demo\r\n"
        "\r\n"
        "Bonjour Marie,\r\n"
        "\r\n"
        "Voici le compte rendu de la consultation d'hier : état stable.\r\n"
        ".Cette ligne commence par un point (RFC 5321 4.5.2).\r\n"
        "\r\n"
        "Bien cordialement,\r\n"
        "Jean\r\n"
    )
    return text.encode("utf-8"), message_id


@dataclass
class Submitted:
    ehlo_auth: str
    auth_reply: str
    data_reply: str
    refusal: str


def submit(
    port: int, ca_file: str, user: str, password: str, recipient: str, data: bytes
) -> Submitted:
    """Blocking: STARTTLS, AUTH PLAIN, one message, then one refused recipient."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="poste.demo", timeout=30) as smtp:
        smtp.ehlo()
        smtp.starttls(context=client_context(ca_file))
        smtp.ehlo()
        mechanisms = smtp.esmtp_features.get("auth", "").strip()
        smtp.user, smtp.password = user, password  # smtplib's auth_plain reads them
        code, text = smtp.auth("PLAIN", smtp.auth_plain, initial_response_ok=True)
        auth_reply = f"{code} {text.decode()}"
        code, text = smtp.mail(user)
        _expect(code, text, 250, "MAIL")
        code, text = smtp.rcpt(recipient, ["NOTIFY=SUCCESS,FAILURE"])
        _expect(code, text, 250, "RCPT")
        code, text = smtp.data(data)
        data_reply = f"{code} {text.decode()}"
        smtp.rset()
        smtp.mail(user)
        code, text = smtp.rcpt(UNLISTED)
        refusal = f"{code} {text.decode()}"
        smtp.rset()
    return Submitted(mechanisms, auth_reply, data_reply, refusal)


def _expect(code: int, text: bytes, want: int, what: str) -> None:
    if code != want:
        raise smtplib.SMTPResponseException(code, f"{what}: {text.decode(errors='replace')}")


def fetch_from_inbox(
    port: int, ca_file: str, user: str, password: str, message_id: str, wait: float
) -> bytes | None:
    """Blocking: IMAPS login, poll INBOX for the Message-ID, return ``BODY[]`` (or None)."""
    with imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=client_context(ca_file)) as imap:
        imap.login(user, password)
        imap.select("INBOX", readonly=True)
        deadline = time.monotonic() + wait
        while True:
            status, found = imap.uid("SEARCH", "HEADER", "Message-ID", message_id)
            uids = found[0].split() if status == "OK" and found and found[0] else []
            if uids:
                status, parts = imap.uid("FETCH", uids[-1], "(BODY.PEEK[])")
                for part in parts:
                    if isinstance(part, tuple):
                        return bytes(part[1])
                return None
            if time.monotonic() > deadline:
                return None
            time.sleep(0.2)
            imap.noop()


def strip_trace_fields(stored: bytes) -> tuple[bytes, list[str]]:
    """Remove the leading ``Return-Path``/``Received`` fields (see the module doc)."""
    removed: list[str] = []
    pos = 0
    while True:
        end = stored.find(b"\r\n", pos)
        if end < 0:
            break
        name = stored[pos:end].split(b":", 1)[0].strip().lower()
        if name not in TRACE_FIELDS:
            break
        removed.append(name.decode())
        pos = end + 2
        while stored[pos : pos + 1] in (b" ", b"\t"):  # folded continuation lines
            pos = stored.find(b"\r\n", pos) + 2
    return stored[pos:], removed


# --------------------------------------------------------------------------- the demo


async def run(state: Path, say: Say = print) -> bool:
    """The whole demo; True when every step succeeded."""
    # The steps tell the story; the daemons' INFO lines would drown it.
    quiet = [logging.getLogger(name) for name in ("mssgw", "mail.log")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.WARNING)
    try:
        return await _run(state, Step(say))
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)


async def _run(state: Path, step: Step) -> bool:
    step.start("Development trust space (PKI and signed liste blanche)")
    pki = await asyncio.to_thread(dev.ensure_pki, state)
    ca_file = str(pki["root"])
    for op in pki["operators"]:
        step.detail(f"{op['domain']}: certificate {op['dn']}")
    step.result(True, f"under {state / 'pki'}; CA for clients: {ca_file}")

    step.start("Operator B (op2.mssante.test) starts: port 25 for operators, IMAPS for users")
    async with operator_gateway(state / "b", pki, operator=1, listeners=("mta", "imaps")) as b:
        mta, imaps = b.ports["mta"], b.ports["imaps"]
        step.result(True, f"mta on 127.0.0.1:{mta}, imaps on 127.0.0.1:{imaps}")

        route = {pki["operators"][1]["domain"]: f"127.0.0.1:{b.ports['mta']}"}
        step.start("Operator A (op1.mssante.test) starts: submission, relay route to B")
        async with operator_gateway(
            state / "a", pki, operator=0, listeners=("submission",), routes=route
        ) as a:
            step.result(
                True,
                f"submission on 127.0.0.1:{a.ports['submission']}; "
                f"route op2.mssante.test -> {route['op2.mssante.test']}",
            )
            exchanged = await _exchange(step, a, b, ca_file)
        step.start("Operator A stops (listeners closed, relay worker stopped)")
        step.result(True, "stopped")
    step.start("Operator B stops")
    step.result(True, "stopped")
    return exchanged and step.ok


async def _exchange(step: Step, a: Operator, b: Operator, ca_file: str) -> bool:
    step.start("Mailboxes and application passwords")
    await demo_user(a, "jean.dupont", "Dr Jean Dupont", "810000000101")
    await demo_user(b, "marie.martin", "Dr Marie Martin", "810000000202")
    step.result(True, f"A: {a.address} (PER), B: {b.address} (PER), one password each")

    data, message_id = demo_message(a.address, b.address)
    step.start(f"A's user submits to {b.address} (STARTTLS, AUTH PLAIN, NOTIFY=SUCCESS,FAILURE)")
    try:
        sent = await asyncio.to_thread(
            submit, a.ports["submission"], ca_file, a.address, a.password, b.address, data
        )
    except (smtplib.SMTPException, OSError) as exc:
        step.result(False, f"submission failed: {exc}")
        return False
    step.detail(f"EHLO after STARTTLS offers AUTH {sent.ehlo_auth}")
    step.detail(f"AUTH PLAIN -> {sent.auth_reply}")
    step.result(sent.data_reply.startswith("250"), f"end of DATA -> {sent.data_reply}")
    step.detail(f"{len(data)} octets, Message-ID {message_id}")

    step.start("A relays to B over mutual TLS; B's user reads INBOX over IMAPS")
    started = time.monotonic()
    stored = await asyncio.to_thread(
        fetch_from_inbox, b.ports["imaps"], ca_file, b.address, b.password, message_id, RELAY_WAIT
    )
    if stored is None:
        step.result(False, f"the message did not reach B's INBOX within {RELAY_WAIT:.0f} s")
        return False
    elapsed = time.monotonic() - started
    for line in await _relay_story(a, b):
        step.detail(line)
    step.result(True, f"found in {b.address}'s INBOX after {elapsed:.2f} s ({len(stored)} octets)")

    step.start("Byte-for-byte comparison")
    body, removed = strip_trace_fields(stored)
    step.detail(f"trace fields the gateways prepended, removed from the top: {', '.join(removed)}")
    same = body == data
    step.result(
        same,
        f"the remaining {len(body)} octets are identical to the {len(data)} submitted"
        if same
        else f"the remaining {len(body)} octets differ from the {len(data)} submitted",
    )

    step.start(f"Refusal: RCPT TO <{UNLISTED}> (domain not on the liste blanche)")
    refused = sent.refusal.startswith("550 5.7.1")
    step.result(refused, f"-> {sent.refusal}")
    return step.ok


async def _relay_story(a: Operator, b: Operator) -> list[str]:
    """What each side's traces say about the hop (TRACE-1): DNs and TLS."""
    lines = []
    for t in await a.store.traces.recent(20, category="transport"):
        if t.action == "relay" and t.result == "delivered":
            lines.append(f"A relay: delivered, server certificate {t.actor} ({t.tls})")
            break
    for t in await b.store.traces.recent(20, category="transport"):
        if t.action == "mta.data" and t.result == "accepted":
            lines.append(f"B port 25: accepted from client certificate {t.actor}")
            break
    return lines


def main(state: Path | None, keep: bool, say: Say = print) -> int:
    """Run the demo in a temporary folder (or ``state``); 0 when all went well."""
    temporary = state is None
    folder = state if state is not None else Path(_mkdtemp())
    folder = folder.resolve()
    say(f"mssgw demo: two MSSante operators on loopback (state in {folder})")
    try:
        ok = asyncio.run(run(folder, say))
    finally:
        if temporary and not keep:
            shutil.rmtree(folder, ignore_errors=True)
    say(f"\n{'Demo passed' if ok else 'Demo FAILED'}.")
    if temporary and keep:
        say(f"State kept in {folder}")
    return 0 if ok else 1


def _mkdtemp() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="mssgw-demo-")
