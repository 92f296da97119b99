"""The outbound SMTP client: one transaction to one server, over mandatory TLS.

Why our own client rather than aiosmtplib: the relay must stop between the
TLS handshake and ``MAIL`` to check the server's certificate against the
liste blanche (TRUST-6) and quit without sending anything if it is not
listed; it must keep every reply for the DSN (RFC 3464 ``Diagnostic-Code``)
and decide per recipient; and it streams message files of up to 50 MB from
the blob store.  That is a small protocol (RFC 5321 §3-4, RFC 3207,
RFC 3461, RFC 1870); its reply parser is a pure class (``ReplyParser``).

The session, in order, with what each failure means:

1. connect, greeting, EHLO, STARTTLS (RFC 3207), TLS handshake with our
   certificate as client certificate (TLS-2), peer binding (``check_peer``),
   EHLO again.  A failure here is a *hop* failure (``Attempt.hop_error``):
   nothing was sent, the caller may try the next MX host.  A server without
   STARTTLS, or whose certificate is not listed for the recipient domain,
   never sees ``MAIL``: we ``QUIT`` at once.
2. ``MAIL FROM`` with ``SIZE`` (RFC 1870 §6) and, when the server
   advertises DSN, ``RET``/``ENVID`` as received (RFC 3461 §5.2.1); ``RCPT
   TO`` per recipient with ``NOTIFY``/``ORCPT`` under the same condition;
   ``DATA``.  From here on every recipient gets a result: 2xx delivered,
   4xx deferred, 5xx failed, lost connection deferred.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

from cryptography import x509

from mssgw.policy.decision import Decision
from mssgw.smtp.mx import Hop
from mssgw.tls.context import peer_chain
from mssgw.tls.identity import subject_dn

ResultKind = Literal["delivered", "deferred", "failed"]
CheckPeer = Callable[[list[x509.Certificate]], Decision]
OpenMessage = Callable[[], BinaryIO]

#: RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; be lenient, not unbounded.
MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 100
_CHUNK = 1 << 20
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")


# --------------------------------------------------------------------------- replies (pure)


@dataclass(frozen=True, slots=True)
class SmtpReply:
    """A complete (possibly multi-line) reply, RFC 5321 §4.2."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(line.strip() for line in self.lines if line.strip())

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def status(self, default_detail: str = "0.0") -> str:
        """The enhanced status code (RFC 3463) given, or one derived from the class."""
        match = _ENHANCED.match(self.lines[0] if self.lines else "")
        if match and match.group(1) == str(self.code)[0]:
            return f"{match.group(1)}.{match.group(2)}.{match.group(3)}"
        return f"{str(self.code)[0]}.{default_detail}"


class ProtocolError(Exception):
    """The server said something that is not SMTP."""


class ReplyParser:
    """Sans-IO: feed reply lines (bytes, CRLF or not), get ``SmtpReply`` when complete."""

    def __init__(self) -> None:
        self._code: int | None = None
        self._lines: list[str] = []

    def feed(self, line: bytes) -> SmtpReply | None:
        text = line.rstrip(b"\r\n").decode("utf-8", "replace")
        if len(text) < 3 or not text[:3].isdigit() or (len(text) > 3 and text[3] not in " -"):
            raise ProtocolError(f"malformed reply line {text[:40]!r}")
        code = int(text[:3])
        if not 200 <= code <= 599 or (self._code is not None and code != self._code):
            raise ProtocolError(f"unexpected reply code {code}")
        self._code = code
        self._lines.append(text[4:])
        if len(self._lines) > MAX_REPLY_LINES:
            raise ProtocolError("reply too long")
        if len(text) > 3 and text[3] == "-":
            return None
        reply = SmtpReply(code, tuple(self._lines))
        self._code, self._lines = None, []
        return reply


def parse_ehlo(reply: SmtpReply) -> dict[str, str]:
    """Extension keywords (upper case) → parameters, from an EHLO reply (RFC 5321 §4.1.1.1)."""
    extensions: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            extensions[keyword.upper()] = params.strip()
    return extensions


def dot_stuff(data: bytes, at_line_start: bool) -> tuple[bytes, bool]:
    """RFC 5321 §4.5.2 transparency on complete lines, bare LF made CRLF.

    ``data`` must end at a line end (or be the final piece); returns the
    stuffed bytes and whether the next byte starts a line.
    """
    out = bytearray()
    for line in data.splitlines(keepends=True):
        if at_line_start and line.startswith(b"."):
            out += b"."
        if line.endswith(b"\r\n"):
            out += line
        elif line.endswith(b"\n"):
            out += line[:-1] + b"\r\n"
        else:
            out += line
        at_line_start = line.endswith(b"\n")
    return bytes(out), at_line_start


# --------------------------------------------------------------------------- the transaction


@dataclass(frozen=True, slots=True)
class Recipient:
    """One RCPT with its DSN parameters as received (xtext, RFC 3461 §4.1, §4.2)."""

    address: str
    notify: str | None = None
    orcpt: str | None = None


@dataclass(frozen=True, slots=True)
class Transaction:
    """One message for one or more recipients at one domain."""

    sender: str
    recipients: Sequence[Recipient]
    size: int
    open_message: OpenMessage
    envid: str | None = None
    ret: str | None = None
    eight_bit: bool = False


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome for one recipient (or the whole hop): kind, RFC 3463 status, why.

    ``reply``: the server's reply when the result came from it (DSN
    ``Diagnostic-Code: smtp``); ``reason``: our sentence for people.
    """

    kind: ResultKind
    status: str
    reason: str
    reply: str | None = None


@dataclass
class Attempt:
    """What one connection to one hop gave."""

    hop: Hop
    #: Set when nothing was sent (connection, TLS, peer binding...): try the next hop.
    hop_error: Result | None = None
    #: Per recipient, same order as the transaction's, once ``MAIL`` was sent.
    results: list[Result] = field(default_factory=list)
    peer_dn: str | None = None
    peer_ip: str | None = None
    tls: str | None = None
    #: The server advertised DSN (RFC 3461): it takes over success notices.
    dsn: bool = False
    #: The peer failed binding (TRUST-6): it never saw MAIL.
    peer_refused: bool = False
    #: MAIL was sent: from then on results are per recipient, never "try the next hop"
    #: (a connection lost after the final dot may have delivered: RFC 1047).
    mail_sent: bool = False


class _HopFailure(Exception):
    def __init__(self, result: Result) -> None:
        super().__init__(result.reason)
        self.result = result


class _Session:
    """One SMTP connection (asyncio streams), replies read through ``ReplyParser``."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hop: Hop, timeout: float
    ) -> None:
        self.reader, self.writer, self.hop, self.timeout = reader, writer, hop, timeout

    async def reply(self, wait: float | None = None) -> SmtpReply:
        parser = ReplyParser()
        async with asyncio.timeout(wait or self.timeout):
            while True:
                line = await self.reader.readline()
                if not line:
                    raise ConnectionError("connection closed by the server")
                if len(line) > MAX_REPLY_LINE:
                    raise ProtocolError("reply line too long")
                reply = parser.feed(line)
                if reply is not None:
                    return reply

    async def command(self, line: str) -> SmtpReply:
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def data(self, open_message: OpenMessage) -> SmtpReply:
        """Stream the message dot-stuffed, then ``CRLF.CRLF``; the final reply."""
        at_start, ends_with_crlf = True, True
        with open_message() as f:
            pending = b""
            while chunk := await asyncio.to_thread(f.read, _CHUNK):
                data = pending + chunk
                cut = data.rfind(b"\n") + 1
                complete, pending = data[:cut], data[cut:]
                if complete:
                    stuffed, at_start = dot_stuff(complete, at_start)
                    self.writer.write(stuffed)
                    ends_with_crlf = stuffed.endswith(b"\r\n")
                    async with asyncio.timeout(self.timeout):
                        await self.writer.drain()
            if pending:
                stuffed, at_start = dot_stuff(pending, at_start)
                self.writer.write(stuffed)
                ends_with_crlf = False
        self.writer.write(b".\r\n" if ends_with_crlf else b"\r\n.\r\n")
        async with asyncio.timeout(self.timeout):
            await self.writer.drain()
        return await self.reply()

    async def quit(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(b"QUIT\r\n")
            async with asyncio.timeout(5):
                await self.writer.drain()
                await self.reply(5)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.writer.wait_closed()


async def deliver(
    hop: Hop,
    transaction: Transaction,
    *,
    tls: ssl.SSLContext,
    check_peer: CheckPeer,
    helo: str,
    connect_timeout: float,
    command_timeout: float,
) -> Attempt:
    """Run one transaction against ``hop``; never raises for network or SMTP errors."""
    attempt = Attempt(hop)
    session: _Session | None = None
    try:
        try:
            async with asyncio.timeout(connect_timeout):
                reader, writer = await asyncio.open_connection(hop.address, hop.port)
        except (OSError, TimeoutError) as exc:
            raise _HopFailure(
                Result("deferred", "4.4.1", f"cannot connect to {hop}: {_why(exc)}")
            ) from None
        session = _Session(reader, writer, hop, command_timeout)
        peer = writer.get_extra_info("peername")
        attempt.peer_ip = str(peer[0]) if peer else None
        extensions = await _secure(session, attempt, tls, check_peer, helo)
        attempt.dsn = "DSN" in extensions
        attempt.results = await _transaction(session, transaction, extensions, attempt.dsn, attempt)
    except _HopFailure as failure:
        attempt.hop_error = failure.result
    except (OSError, TimeoutError, ConnectionError, ProtocolError, ssl.SSLError) as exc:
        lost = Result("deferred", "4.4.2", f"connection with {hop} lost: {_why(exc)}")
        if attempt.mail_sent:
            attempt.results = [lost] * len(transaction.recipients)
        else:
            attempt.hop_error = lost
    finally:
        if session is not None:
            await session.quit()
            await session.close()
    return attempt


async def _secure(
    session: _Session, attempt: Attempt, tls: ssl.SSLContext, check_peer: CheckPeer, helo: str
) -> dict[str, str]:
    """Greeting, EHLO, STARTTLS, handshake, peer binding, EHLO: the extensions."""
    hop = session.hop
    greeting = await session.reply()
    if greeting.code != 220:
        raise _HopFailure(_refused(hop, "greeting", greeting))
    ehlo = await session.command(f"EHLO {helo}")
    if ehlo.code != 250:
        raise _HopFailure(_refused(hop, "EHLO", ehlo))
    if "STARTTLS" not in parse_ehlo(ehlo):
        # TLS-2: STARTTLS is mandatory between operators; never fall back to clear text.
        raise _HopFailure(
            Result("deferred", "4.7.10", f"{hop} does not offer STARTTLS, which MSSante requires")
        )
    start = await session.command("STARTTLS")
    if start.code != 220:
        raise _HopFailure(_refused(hop, "STARTTLS", start))
    try:
        async with asyncio.timeout(session.timeout):
            await session.writer.start_tls(tls, server_hostname=None)
    except (ssl.SSLError, OSError, TimeoutError) as exc:
        raise _HopFailure(
            Result("deferred", "4.7.5", f"TLS handshake with {hop} failed: {_why(exc)}")
        ) from None
    ssl_object = session.writer.get_extra_info("ssl_object")
    if ssl_object is None:
        raise _HopFailure(Result("deferred", "4.7.5", f"TLS with {hop} not established"))
    cipher = ssl_object.cipher()
    attempt.tls = f"{ssl_object.version()} {cipher[0] if cipher else ''}".strip()
    chain = peer_chain(ssl_object)
    if chain:
        attempt.peer_dn = subject_dn(chain[0])
    decision = check_peer(chain)
    if not decision.ok:
        # TRUST-6: a server not listed for the recipient domain never sees MAIL.
        # A listed domain may be served by another MX host, or the list may
        # change: temporary for the message, bounced at the end of the schedule.
        attempt.peer_refused = True
        status = "4.7.0" if decision.kind == "tempfail" else "4.7.1"
        raise _HopFailure(Result("deferred", status, f"{hop}: {decision.reason}"))
    ehlo = await session.command(f"EHLO {helo}")
    if ehlo.code != 250:
        raise _HopFailure(_refused(hop, "EHLO after STARTTLS", ehlo))
    return parse_ehlo(ehlo)


async def _transaction(
    session: _Session, tx: Transaction, extensions: dict[str, str], dsn: bool, attempt: Attempt
) -> list[Result]:
    hop = session.hop
    limit = extensions.get("SIZE", "")
    if limit.isdigit() and int(limit) > 0 and tx.size > int(limit):
        # RFC 1870 §6.1: do not send a message larger than the advertised SIZE.
        reason = f"{hop} accepts at most {limit} octets; the message has {tx.size}"
        return [Result("failed", "5.3.4", reason)] * len(tx.recipients)
    mail = f"MAIL FROM:<{tx.sender}>"
    if "SIZE" in extensions:
        mail += f" SIZE={tx.size}"
    if tx.eight_bit and "8BITMIME" in extensions:
        mail += " BODY=8BITMIME"
    if dsn:  # RFC 3461 §5.2.1: pass on what the sender gave, nothing more.
        if tx.ret:
            mail += f" RET={tx.ret.upper()}"
        if tx.envid:
            mail += f" ENVID={tx.envid}"
    attempt.mail_sent = True
    reply = await session.command(mail)
    if not reply.ok:
        return [_from_reply(hop, "MAIL FROM", reply)] * len(tx.recipients)
    results: list[Result | None] = []
    for rcpt in tx.recipients:
        line = f"RCPT TO:<{rcpt.address}>"
        if dsn and rcpt.notify:
            line += f" NOTIFY={rcpt.notify.upper()}"
        if dsn and rcpt.orcpt:
            line += f" ORCPT={rcpt.orcpt}"
        reply = await session.command(line)
        results.append(None if reply.ok else _from_reply(hop, "RCPT TO", reply))
    if all(r is not None for r in results):
        return [r for r in results if r is not None]
    reply = await session.command("DATA")
    if reply.code != 354:
        final = _from_reply(hop, "DATA", reply)
    else:
        reply = await session.data(tx.open_message)
        final = (
            Result("delivered", reply.status("0.0"), f"accepted by {hop}", str(reply))
            if reply.ok
            else _from_reply(hop, "end of DATA", reply)
        )
    return [r if r is not None else final for r in results]


def _from_reply(hop: Hop, stage: str, reply: SmtpReply) -> Result:
    kind: ResultKind = "failed" if reply.permanent else "deferred"
    return Result(kind, reply.status(), f"{hop} answered {stage} with: {reply}", str(reply))


def _refused(hop: Hop, stage: str, reply: SmtpReply) -> Result:
    """Before MAIL every refusal is a hop problem: temporary, try another host."""
    status = reply.status()
    return Result("deferred", "4" + status[1:], f"{hop} refused {stage}: {reply}", str(reply))


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    return str(exc) or type(exc).__name__
