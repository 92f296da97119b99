"""Shared set-up of the IMAP server tests: a gateway with mailboxes and passwords.

Blocking clients (imaplib, imapclient) run in worker threads
(``asyncio.to_thread``) because the gateway runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mssgw.imap.service import ImapService, for_app
from mssgw.store.delivery import LocalTarget
from mssgw.store.mailboxes import NewMailbox
from mssgw.store.models import MailboxType
from mssgw.workers import WorkerRole
from tests.support.gateway import RunningGateway, running_gateway


@dataclass
class Env:
    gw: RunningGateway
    domain: str
    per: str
    per_password: str
    org: str
    org_password: str  # issued to the professional, as delegate of the ORG mailbox
    app: str
    manifest: dict[str, Any]

    @property
    def imaps(self) -> int:
        return self.gw.ports["imaps"]

    @property
    def imap(self) -> int:
        return self.gw.ports["imap"]

    @property
    def service(self) -> ImapService:
        return for_app(self.gw.app)

    def client_context(self, certificate: str | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.manifest["anchors"])
        ctx.check_hostname = False
        if certificate is not None:
            who = self.manifest[certificate]
            ctx.load_cert_chain(who["certificate"], who["key"])
        return ctx

    async def deliver(self, data: bytes, address: str | None = None, folder: str = "INBOX") -> int:
        result = await self.gw.store.messages.deliver(
            data, [LocalTarget(address or self.per, folder)]
        )
        return result.copies[0].uid


def message(n: int, *, subject: str | None = None, body: str = "Bonjour.\r\n") -> bytes:
    return (
        f"From: Dr A <a@op2.mssante.test>\r\n"
        f"To: b@op1.mssante.test\r\n"
        f"Subject: {subject or f'message {n}'}\r\n"
        f"Date: Mon, 1 Jan 2024 10:00:00 +0100\r\n"
        f"Message-ID: <{n}@test>\r\n"
        f"\r\n{body}"
    ).encode()


@contextlib.asynccontextmanager
async def imap_env(
    tmp_path: Path,
    trust_space: dict[str, Any],
    *,
    url: str | None = None,
    extra: str = "",
    role: WorkerRole | None = None,
) -> AsyncIterator[Env]:
    async with running_gateway(
        tmp_path, trust_space, listeners=("imap", "imaps"), url=url, extra=extra, role=role
    ) as gw:
        domain = gw.operator["domain"]
        professional = trust_space["professional"]["national_id"]
        structure = trust_space["structure"]["structure_id"]
        per, org, app = f"claire.dupont@{domain}", f"secretariat@{domain}", f"dpi@{domain}"
        store = gw.store
        await store.mailboxes.add(NewMailbox(per, MailboxType.PER, professional))
        await store.mailboxes.add(NewMailbox(org, MailboxType.ORG, structure))
        await store.mailboxes.add(NewMailbox(app, MailboxType.APP, structure))
        await store.mailboxes.delegate(org, professional)
        per_pw = (await store.credentials.issue(per)).password
        org_pw = (await store.credentials.issue(org, identity=professional)).password
        env = Env(gw, domain, per, per_pw, org, org_pw, app, trust_space)
        try:
            yield env
        finally:
            await env.service.settle()


class Raw:
    """A minimal IMAP client on raw bytes, to check exact server output."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.counter = 0
        self.greeting = b""

    @classmethod
    async def connect(cls, port: int, ctx: ssl.SSLContext | None) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        raw = cls(reader, writer)
        raw.greeting = await raw.line()
        return raw

    async def line(self, wait: float = 10.0) -> bytes:
        """One response line, literals included inline."""
        data = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), wait)
        while data.endswith(b"}\r\n") and b"{" in data:
            size = int(data[data.rindex(b"{") + 1 : -3])
            data += await asyncio.wait_for(self.reader.readexactly(size), wait)
            data += await asyncio.wait_for(self.reader.readuntil(b"\r\n"), wait)
        return data

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def command(self, text: str | bytes, wait: float = 10.0) -> list[bytes]:
        """Send a tagged command; return every line up to and including the tagged one."""
        self.counter += 1
        tag = b"t%d" % self.counter
        body = text.encode() if isinstance(text, str) else text
        await self.send(tag + b" " + body + b"\r\n")
        return await self.until(tag, wait)

    async def until(self, tag: bytes, wait: float = 10.0) -> list[bytes]:
        lines = []
        while True:
            line = await self.line(wait)
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines

    async def login(self, user: str, password: str) -> None:
        lines = await self.command(f'LOGIN "{user}" "{password}"')
        assert b"OK" in lines[-1], lines

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
