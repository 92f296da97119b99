"""Peers for the relay tests: a tiny authoritative DNS server and a TLS SMTP server.

``LocalDns`` answers UDP queries on 127.0.0.1 from a dict, in a thread
(dnspython builds the responses); names map to records, or to ``NXDOMAIN``,
``SERVFAIL`` or ``DROP`` (no answer at all, for timeouts).

``TlsPeer`` is a real SMTP server (aiosmtpd) that requires STARTTLS before
MAIL, presents a certificate of the development PKI, requires our client
certificate, and records every transaction it accepts, every raw
command it saw and how many connections it was given.  It can advertise DSN
(RFC 3461) and PIPELINING (RFC 2920), refuse recipients, and close a
connection with ``421`` at the n-th MAIL of a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import re
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message as EmailMessage
from pathlib import Path
from typing import Any

import dns.asyncresolver
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from sqlalchemy import select

from mssgw import config, runtime
from mssgw.smtp.dsn_params import encode_xtext as xtext_encode
from mssgw.smtp.relay import RelayWorker
from mssgw.store import Store
from mssgw.store.delivery import Envelope as DeliveryEnvelope
from mssgw.store.delivery import RemoteTarget
from mssgw.store.mailboxes import NewMailbox
from mssgw.store.models import MailboxType, Message, QueueEntry
from mssgw.tls.context import server_context
from mssgw.tls.identity import subject_dn
from tests.support.gateway import gateway_config

Zone = dict[str, Any]


class LocalDns:
    """``zone``: {"name.": {"MX": ["10 mx.x."], "A": ["127.0.0.1"]} | "NXDOMAIN" | ...}."""

    def __init__(self, zone: Zone) -> None:
        self.zone = {k.lower().rstrip(".") + ".": v for k, v in zone.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.queries: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> LocalDns:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self._answer(dns.message.from_wire(data))
            if reply is not None:
                self.sock.sendto(reply.to_wire(), addr)

    def _answer(self, query: dns.message.Message) -> dns.message.Message | None:
        question = query.question[0]
        name = question.name.to_text().lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        entry = self.zone.get(name)
        if entry == "DROP":
            return None
        if entry == "SERVFAIL":
            response.set_rcode(dns.rcode.SERVFAIL)
        elif entry is None or entry == "NXDOMAIN":
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif rdtype in entry:
            response.answer.append(dns.rrset.from_text(name, 60, "IN", rdtype, *entry[rdtype]))
        return response


def resolver_for(server: LocalDns, lifetime: float = 2.0) -> Any:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = server.port
    resolver.lifetime = lifetime
    resolver.timeout = lifetime
    return resolver


# --------------------------------------------------------------------------- SMTP peer


_DSN_PARAM = re.compile(r"\s+(RET|ENVID|NOTIFY|ORCPT)=\S+", re.IGNORECASE)


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes
    mail_args: str
    rcpt_args: list[str]


@dataclass
class PeerState:
    """What the peer saw; shared by its sessions."""

    dsn: bool = False
    pipelining: bool = False
    refuse: dict[str, str] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    client_dns: list[str] = field(default_factory=list)
    #: Connections accepted (each one a new TCP connection and TLS session).
    connections: int = 0
    #: When > 0: answer the MAIL after this many in one session with 421 and close.
    max_mails_per_session: int = 0


class _PeerSmtp(SMTP):  # type: ignore[misc]
    """aiosmtpd with the DSN extension advertised on demand (params recorded, not acted on)."""

    def __init__(self, handler: Any, state: PeerState, **kw: Any) -> None:
        super().__init__(handler, **kw)
        self.state = state
        self._mail_args = ""
        self._rcpt_args: list[str] = []
        self._mails = 0
        self._greeted = False

    def _count_connection(self) -> None:
        # One protocol object per connection (STARTTLS included); counted at its
        # first EHLO, as the controller's own readiness probe never sends one.
        if not self._greeted:
            self._greeted = True
            self.state.connections += 1

    async def smtp_EHLO(self, hostname: str) -> None:
        self.state.commands.append("EHLO")
        self._count_connection()
        extra = (["250-DSN"] if self.state.dsn else []) + (
            ["250-PIPELINING"] if self.state.pipelining else []
        )
        if not extra:
            await super().smtp_EHLO(hostname)
            return
        # Let aiosmtpd write its lines, with more: 250-DSN, 250-PIPELINING.
        original = self.push
        lines: list[str] = []

        async def capture(status: str) -> None:
            lines.append(status)

        self.push = capture  # type: ignore[method-assign]
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self.push = original  # type: ignore[method-assign]
        for line in lines[:-1] + extra:
            await original(line)
        await original(lines[-1])

    async def smtp_STARTTLS(self, arg: str) -> None:
        self.state.commands.append("STARTTLS")
        await super().smtp_STARTTLS(arg)

    async def smtp_MAIL(self, arg: str) -> None:
        self.state.commands.append("MAIL")
        self._mails += 1
        if self.state.max_mails_per_session and self._mails > self.state.max_mails_per_session:
            await self.push("421 4.4.2 too many transactions, closing")
            self.transport.close()
            return
        self._mail_args = arg or ""
        self._rcpt_args = []
        if self.state.dsn and arg:
            arg = _DSN_PARAM.sub("", arg)
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str) -> None:
        self.state.commands.append("RCPT")
        self._rcpt_args.append(arg or "")
        if self.state.dsn and arg:
            arg = _DSN_PARAM.sub("", arg)
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        self.state.commands.append("DATA")
        await super().smtp_DATA(arg)

    async def smtp_RSET(self, arg: str) -> None:
        self.state.commands.append("RSET")
        await super().smtp_RSET(arg)

    async def smtp_QUIT(self, arg: str) -> None:
        self.state.commands.append("QUIT")
        await super().smtp_QUIT(arg)


class _Handler:
    def __init__(self, state: PeerState) -> None:
        self.state = state

    async def handle_RCPT(
        self, server: _PeerSmtp, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        refusal = self.state.refuse.get(address.lower())
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: _PeerSmtp, session: Session, envelope: Envelope) -> str:
        ssl_object = server.transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            self.state.client_dns.append(subject_dn(x509.load_der_x509_certificate(der)))
        self.state.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                bytes(envelope.original_content or envelope.content),
                server._mail_args,
                list(server._rcpt_args),
            )
        )
        return "250 2.0.0 OK queued"


class _Controller(Controller):  # type: ignore[misc]
    def __init__(self, state: PeerState, **kw: Any) -> None:
        self.state = state
        super().__init__(_Handler(state), **kw)

    def factory(self) -> _PeerSmtp:
        return _PeerSmtp(self.handler, self.state, **self.SMTP_kwargs)


@contextlib.contextmanager
def tls_peer(
    manifest: dict[str, Any],
    *,
    cert: dict[str, str] | None = None,
    dsn: bool = False,
    pipelining: bool = False,
    size: int = 33554432,
    port: int = 0,
) -> Iterator[tuple[PeerState, int]]:
    """A running peer on 127.0.0.1; yields its state and port.

    ``cert``: the certificate/key it presents (default: operator 2, listed
    for op2.mssante.test).  It requires our client certificate, checked
    against the development anchors.
    """
    pair = cert or manifest["operators"][1]
    ctx = server_context(
        pair["certificate"], pair["key"], manifest["anchors"], client_cert="required"
    )
    state = PeerState(dsn=dsn, pipelining=pipelining)
    if port == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
    controller = _Controller(
        state,
        hostname="127.0.0.1",
        port=port,
        server_hostname="mx.op2.mssante.test",
        tls_context=ctx,
        require_starttls=True,
        data_size_limit=size,
        decode_data=False,
        ready_timeout=10,
    )
    controller.start()
    try:
        yield state, port
    finally:
        controller.stop()


async def until(predicate: Any, seconds: float = 10.0) -> None:
    """Wait until ``predicate()`` is true (polling; for background workers)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- our gateway


SENDER = "claire.dupont@op1.mssante.test"
MESSAGE = (
    b"From: Claire Dupont <claire.dupont@op1.mssante.test>\r\n"
    b"To: bob@op2.mssante.test\r\n"
    b"Subject: Compte rendu\r\n"
    b"Message-ID: <cr-1@op1.mssante.test>\r\n"
    b"\r\n"
    b"Bonjour,\r\n"
    b".une ligne qui commence par un point\r\n"
    b"\xc3\xa9t\xc3\xa9\r\n"
)


class Clock:
    """A clock the test moves; starts at the real present (certificates are valid now)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Relay:
    settings: config.Settings
    store: Store
    trust: runtime.TrustSpace
    clock: Clock
    workers: list[RelayWorker] = field(default_factory=list)

    def worker(self, **kw: Any) -> RelayWorker:
        worker = RelayWorker(self.settings, self.store, self.trust, clock=self.clock, **kw)
        self.workers.append(worker)
        return worker

    async def queue(
        self,
        *recipients: str,
        notify: str | None = None,
        orcpt: bool = False,
        envid: str | None = None,
        ret: str | None = None,
        sender: str = SENDER,
        data: bytes = MESSAGE,
    ) -> list[int]:
        targets = [
            RemoteTarget(r, notify=notify, orcpt=f"rfc822;{xtext_encode(r)}" if orcpt else None)
            for r in recipients
        ]
        result = await self.store.messages.deliver(
            data, remote=targets, envelope=DeliveryEnvelope(sender, envid, ret)
        )
        self.clock.now = max(self.clock.now, datetime.now(UTC))  # the rows are due
        return result.queued

    async def entry(self, entry_id: int) -> QueueEntry:
        return await self.store.queue.get(entry_id)

    async def inbox(self, address: str = SENDER) -> list[bytes]:
        """The raw messages in a local mailbox's INBOX (DSNs land there)."""
        folder = await self.store.messages.folder(address)
        async with self.store.read() as s:
            blob_ids = (
                await s.scalars(
                    select(Message.blob_id)
                    .where(Message.folder_id == folder.id)
                    .order_by(Message.uid)
                )
            ).all()
        return [(await self.store.contents.read_one(b)) for b in blob_ids]


@contextlib.asynccontextmanager
async def relay_gateway(
    tmp: Path,
    manifest: dict[str, Any],
    *,
    routes: dict[str, str] | None = None,
    relay: str = "",
    url: str | None = None,
) -> AsyncIterator[Relay]:
    """Operator 1 (op1.mssante.test) with its trust space, store and one local sender."""
    tmp.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - test set-up
    extra = "[relay]\nconnect_timeout = 5\ncommand_timeout = 10\n" + relay
    path = gateway_config(
        tmp, manifest, operator=0, url=url, listeners=(), routes=routes, extra=extra
    )
    settings = config.load(path, env={})
    store = await Store.open(settings, check_schema=False)
    await store.upgrade()
    trust = runtime.build(settings)
    await store.mailboxes.ensure_domain("op1.mssante.test")
    await store.mailboxes.add(NewMailbox(SENDER, MailboxType.PER, "810012345678"))
    env = Relay(settings, store, trust, Clock())
    try:
        yield env
    finally:
        for worker in env.workers:
            await worker.stop()
        await store.close()


def dsn_fields(data: bytes) -> tuple[EmailMessage, list[EmailMessage]]:
    """A DSN parsed: the whole message and the per-message + per-recipient field groups."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    parts = msg.get_payload()
    assert isinstance(parts, list)
    groups = parts[1].get_payload()
    assert isinstance(groups, list)
    return msg, groups  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
