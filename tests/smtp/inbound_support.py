"""Helpers for the port-25 tests: a raw SMTP client over real TLS, mailboxes, traces.

``RawClient`` speaks SMTP byte by byte (asyncio streams, ``start_tls`` with a
client certificate from the development PKI), so tests can send exactly the
bytes they mean: pipelined groups, smuggling sequences, over-long lines.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

from mssgw.store import Store
from mssgw.store.mailboxes import NewMailbox
from mssgw.store.models import MailboxState, MailboxType, Message
from mssgw.store.traces import TraceRecord

SENDER_OP = 1  # operators[1] of the dev PKI plays the other operator


def client_context(pair: dict[str, Any] | None, anchors: str) -> ssl.SSLContext:
    """A sending MTA's context: verifies our server against the anchors, presents ``pair``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(anchors)
    if pair is not None:
        ctx.load_cert_chain(pair["certificate"], pair["key"])
    return ctx


def sender_context(manifest: dict[str, Any], op: int = SENDER_OP) -> ssl.SSLContext:
    return client_context(manifest["operators"][op], manifest["anchors"])


@dataclass
class Reply:
    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def enhanced(self) -> str:
        return self.lines[-1].split(" ", 1)[0]

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class RawClient:
    """A minimal SMTP client that writes exactly what it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        return cls(reader, writer)

    async def reply(self, wait: float = 20) -> Reply:
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), wait)
            if not raw:
                raise ConnectionError(f"connection closed after {lines!r}")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(line[4:])
            if line[3:4] != "-":
                return Reply(int(line[:3]), lines)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def cmd(self, line: str) -> Reply:
        await self.send(line.encode() + b"\r\n")
        return await self.reply()

    async def starttls(self, ctx: ssl.SSLContext) -> None:
        reply = await self.cmd("STARTTLS")
        assert reply.code == 220, reply
        await self.writer.start_tls(ctx)

    async def open_session(self, ctx: ssl.SSLContext, helo: str = "mx.op2.mssante.test") -> None:
        """Greeting, EHLO, STARTTLS, EHLO again."""
        assert (await self.reply()).code == 220
        assert (await self.cmd(f"EHLO {helo}")).code == 250
        await self.starttls(ctx)
        assert (await self.cmd(f"EHLO {helo}")).code == 250

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


async def connected(port: int, ctx: ssl.SSLContext) -> RawClient:
    client = await RawClient.connect(port)
    await client.open_session(ctx)
    return client


async def add_mailbox(
    store: Store, address: str, state: MailboxState = MailboxState.ACTIVE, n: int = 0
) -> None:
    await store.mailboxes.add(NewMailbox(address, MailboxType.PER, f"8100000{n:05d}"))
    if state is not MailboxState.ACTIVE:
        await store.mailboxes.set_state(address, state)


def message(n: int | str, body: bytes = b"Hello\r\n", extra: str = "") -> bytes:
    head = (
        f"From: dr.martin@op2.mssante.test\r\nTo: dr.dupont@op1.mssante.test\r\n"
        f"Subject: test {n}\r\nMessage-ID: <{n}@op2.mssante.test>\r\n{extra}\r\n"
    )
    return head.encode() + body


async def stored(store: Store, message_id: str) -> list[Message]:
    from sqlalchemy import select

    async with store.read() as s:
        rows = await s.scalars(select(Message).where(Message.message_id == message_id))
        return list(rows.all())


async def traces(store: Store, action: str | None = None) -> list[TraceRecord]:
    rows = await store.traces.recent(1000, category="transport")
    out = [
        TraceRecord(
            category="transport", action=r.action, result=r.result, actor=r.actor,
            peer_ip=r.peer_ip, tls=r.tls, sender=r.sender, recipients=r.recipients,
            message_id=r.message_id, size=r.size, code=r.code, reason=r.reason,
        )
        for r in reversed(rows)
    ]
    return [t for t in out if action is None or t.action == action]


async def wait_traces(
    store: Store, action: str, count: int = 1, wait: float = 5
) -> list[TraceRecord]:
    """Traces of failed handshakes are written in the background: poll for them."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        found = await traces(store, action)
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.05)
