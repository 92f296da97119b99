"""The outbound SMTP client: transactions to other operators' servers, over mandatory TLS.

Why our own client rather than aiosmtplib: the relay must stop between the
TLS handshake and ``MAIL`` to check the server's certificate against the
liste blanche (TRUST-6) and quit without sending anything if it is not
listed; it must keep every reply for the DSN (RFC 3464 ``Diagnostic-Code``)
and decide per recipient; and it streams message files of up to 50 MB from
the blob store.  That is a small protocol (RFC 5321 §3-4, RFC 3207,
RFC 3461, RFC 1870, RFC 2920); its reply parser is a pure class
(``ReplyParser``).

A new connection, in order, with what each failure means:

1. connect, greeting, EHLO, STARTTLS (RFC 3207), TLS handshake with our
   certificate as client certificate (TLS-2), peer binding (``check_peer``),
   EHLO again.  A failure here is a *hop* failure (``Attempt.hop_error``):
   nothing was sent, the caller may try the next MX host.  A server without
   STARTTLS, or whose certificate is not listed for the recipient domain,
   never sees ``MAIL``: we ``QUIT`` at once.
2. ``MAIL FROM`` with ``SIZE`` (RFC 1870 §6) and, when the server
   advertises DSN, ``RET``/``ENVID`` as received (RFC 3461 §5.2.1); ``RCPT
   TO`` per recipient with ``NOTIFY``/``ORCPT`` under the same condition;
   ``DATA`` (in one write when the server offers PIPELINING, RFC 2920).
   From here on every recipient gets a result: 2xx delivered, 4xx
   deferred, 5xx failed, lost connection deferred.

``ConnectionPool`` keeps connections open between transactions to the same
server, each one reused for a recipient domain only when its peer's
certificate is bound to that domain under the trust state in use (see
``Connection.bound_to``); ``RSET`` ends a transaction left open (RFC 5321
§4.1.1.5) before the next ``MAIL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Literal

from cryptography import x509

from mssgw.policy.decision import Decision
from mssgw.smtp.mx import Hop
from mssgw.text import is_digits
from mssgw.tls import transport as _tls_transport  # noqa: F401  (installs the TLS protocol)
from mssgw.tls.context import peer_chain
from mssgw.tls.identity import subject_dn

ResultKind = Literal["delivered", "deferred", "failed"]
CheckPeer = Callable[[list[x509.Certificate]], Decision]
OpenMessage = Callable[[], BinaryIO]

#: RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; be lenient, not unbounded.
MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 100
_CHUNK = 1 << 20
#: Pool key: the server's address and port, and the name we greet it with.
_Key = tuple[str, int, str]
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
        if len(text) < 3 or not is_digits(text[:3]) or (len(text) > 3 and text[3] not in " -"):
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
    if not data:
        return b"", at_line_start
    if data.count(b"\n") == data.count(b"\r\n"):
        # Fast path (every stored message: lines end with CRLF): a dot is
        # doubled after each LF, and at the start when a line starts there.
        stuffed = data.replace(b"\n.", b"\n..")
        if at_line_start and stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        return stuffed, stuffed.endswith(b"\n")
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
    #: The message itself when small enough to be held in memory (else read by ``open_message``).
    content: bytes | None = None


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
    #: The transaction ran on a connection kept from an earlier one (``ConnectionPool``).
    reused: bool = False


@dataclass(frozen=True)
class PeerBinding:
    """How to decide whether a server may receive mail for ``domain`` (TRUST-6).

    ``check`` is ``trust.binding.check_peer`` for ``domain`` at instant
    ``at`` with the trust state identified by ``key`` (liste blanche,
    anchors, CRLs).  ``horizon`` is when that trust state stops being good
    by itself (the earliest CRL next update or anchor expiry): a decision
    taken on a connection is reused only under the same ``key``, from the
    instant it was taken until the peer's certificates or the horizon
    expire, whichever comes first.
    """

    domain: str
    check: CheckPeer
    at: datetime
    key: Hashable
    horizon: datetime | None = None


class _HopFailure(Exception):
    def __init__(self, result: Result) -> None:
        super().__init__(result.reason)
        self.result = result


class _Stale(Exception):
    """A kept connection failed before anything of the message was sent: use a new one."""


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

    async def send(self, lines: Sequence[str]) -> None:
        """Write command lines at once (one line, or a PIPELINING group, RFC 2920)."""
        self.writer.write(b"".join(line.encode("utf-8") + b"\r\n" for line in lines))
        async with asyncio.timeout(self.timeout):
            await self.writer.drain()

    async def command(self, line: str) -> SmtpReply:
        await self.send((line,))
        return await self.reply()

    async def data(self, tx: Transaction) -> SmtpReply:
        """Stream the message dot-stuffed, then ``CRLF.CRLF``; the final reply."""
        if tx.content is not None:
            stuffed, _ = dot_stuff(tx.content, True)
            ends_with_crlf = not stuffed or stuffed.endswith(b"\r\n")
            self.writer.write(stuffed + (b".\r\n" if ends_with_crlf else b"\r\n.\r\n"))
            async with asyncio.timeout(self.timeout):
                await self.writer.drain()
            return await self.reply()
        at_start, ends_with_crlf = True, True
        with tx.open_message() as f:
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

    def usable(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

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


@dataclass(eq=False)
class Connection:
    """An open session past STARTTLS and EHLO, its peer's chain checked for some domains."""

    session: _Session
    extensions: dict[str, str]
    chain: list[x509.Certificate]
    peer_dn: str | None
    peer_ip: str | None
    tls_info: str | None
    #: The TLS context it was opened with (a reloaded context makes a new object).
    context: ssl.SSLContext
    #: ``PeerBinding.key`` of the decisions taken on it, and the instants they hold for.
    trust_key: Hashable
    checked_at: datetime
    valid_until: datetime
    #: Recipient domains this peer was found bound to (under ``trust_key``).
    domains: set[str] = field(default_factory=set)
    last_used: float = 0.0
    transactions: int = 0
    #: A transaction is still open on the server (MAIL accepted, no final reply to
    #: the message): RSET before the next MAIL (RFC 5321 §4.1.1.5).
    needs_rset: bool = False
    #: The server said it is closing (421) or the dialogue is out of step.
    broken: bool = False

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.extensions

    def attempt(self, hop: Hop, *, reused: bool) -> Attempt:
        return Attempt(
            hop,
            peer_dn=self.peer_dn,
            peer_ip=self.peer_ip,
            tls=self.tls_info,
            dsn="DSN" in self.extensions,
            reused=reused,
        )

    def bound_to(self, binding: PeerBinding) -> bool:
        """May this connection carry mail for ``binding.domain`` now?  (TRUST-6)

        Only under the trust state it was checked with, within the validity
        of the decisions; a domain not yet seen is checked with ``check_peer``
        on the chain the peer presented.
        """
        if binding.key != self.trust_key:
            return False
        if not self.checked_at <= binding.at <= self.valid_until:
            return False
        if binding.domain in self.domains:
            return True
        if binding.check(self.chain).ok:
            self.domains.add(binding.domain)
            return True
        return False


def _valid_until(chain: Sequence[x509.Certificate], horizon: datetime | None) -> datetime:
    ends = [c.not_valid_after_utc for c in chain]
    if horizon is not None:
        ends.append(horizon)
    return min(ends)


class ConnectionPool:
    """Open, verified connections to next hops, kept between transactions.

    A connection goes back to the pool after a transaction that left it in
    step (every reply read, no ``421``) and is taken again for the same hop
    (address, port) when it is still open, was used less than
    ``idle_timeout`` seconds ago, has carried fewer than ``max_transactions``
    transactions, was opened with the TLS context in use and is bound to the
    recipient domain under the current trust state (``Connection.bound_to``).
    Anything else opens a new connection, which checks the peer from
    scratch; a connection that errs is closed.  A kept connection that turns
    out to be dead before the message was sent (the server closed it while
    idle) is replaced by a new one for the same transaction: nothing had been
    accepted on it.
    """

    def __init__(
        self,
        *,
        idle_timeout: float = 30.0,
        max_transactions: int = 100,
        max_idle: int = 8,
        pipelining: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.max_transactions = max_transactions
        self.max_idle = max_idle
        self.pipelining = pipelining
        self.monotonic = monotonic
        self._idle: dict[_Key, list[Connection]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        #: Counters: connections opened, transactions on a kept connection.
        self.opened = 0
        self.reused = 0

    def idle(self) -> int:
        return sum(len(v) for v in self._idle.values())

    async def deliver(
        self,
        hop: Hop,
        transaction: Transaction,
        binding: PeerBinding,
        *,
        tls: ssl.SSLContext,
        helo: str,
        connect_timeout: float,
        command_timeout: float,
    ) -> Attempt:
        """Run one transaction against ``hop``; never raises for network or SMTP errors."""
        key = (hop.address, hop.port, helo)
        conn = self._take(key, binding, tls)
        if conn is not None:
            try:
                return await self._run(key, conn, hop, transaction, reused=True)
            except _Stale:
                pass  # nothing of this transaction was accepted: a new connection
        attempt = Attempt(hop)
        conn = await _open(hop, attempt, binding, tls, helo, connect_timeout, command_timeout)
        if conn is None:
            return attempt
        self.opened += 1
        return await self._run(key, conn, hop, transaction, reused=False)

    def _take(self, key: _Key, binding: PeerBinding, tls: ssl.SSLContext) -> Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now, found, kept = self.monotonic(), None, []
        while idle:
            conn = idle.pop()  # the most recently used first
            if (
                conn.context is not tls
                or conn.trust_key != binding.key
                or now - conn.last_used >= self.idle_timeout
                or not conn.session.usable()
            ):
                self._discard(conn)
            elif conn.bound_to(binding):
                found = conn
                break
            else:  # fine for other domains, not for this one
                kept.append(conn)
        idle.extend(reversed(kept))
        return found

    async def _run(
        self, key: _Key, conn: Connection, hop: Hop, tx: Transaction, *, reused: bool
    ) -> Attempt:
        """The transaction on ``conn``; raises ``_Stale`` when a kept connection was dead."""
        attempt = conn.attempt(hop, reused=reused)
        progress = _Progress()
        try:
            attempt.results = await _transaction(
                conn, hop, tx, attempt, progress, pipelining=self.pipelining
            )
        except (OSError, TimeoutError, ConnectionError, ProtocolError, ssl.SSLError) as exc:
            self._discard(conn)
            if reused and not progress.content_sent and not isinstance(exc, TimeoutError):
                raise _Stale from None
            lost = Result("deferred", "4.4.2", f"connection with {hop} lost: {_why(exc)}")
            if attempt.mail_sent:
                attempt.results = [lost] * len(tx.recipients)
            else:
                attempt.hop_error = lost
            return attempt
        except BaseException:  # cancelled: the session is in an unknown state
            self._discard(conn)
            raise
        if reused and conn.broken and not progress.content_sent:
            # e.g. "421 idle too long" to our MAIL: nothing was accepted, use a new one
            self._discard(conn)
            raise _Stale
        self._release(key, conn)
        if reused:
            self.reused += 1
        return attempt

    def _release(self, key: _Key, conn: Connection) -> None:
        conn.transactions += 1
        conn.last_used = self.monotonic()
        idle = self._idle.setdefault(key, [])
        if (
            conn.broken
            or conn.transactions >= self.max_transactions
            or len(idle) >= self.max_idle
            or not conn.session.usable()
        ):
            self._discard(conn)
        else:
            idle.append(conn)

    def _discard(self, conn: Connection) -> None:
        """QUIT and close in the background (the caller does not wait for the reply)."""
        task = asyncio.get_running_loop().create_task(_shut(conn.session))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def expire(self) -> int:
        """Close (in the background) connections idle for ``idle_timeout`` or more."""
        now, closed = self.monotonic(), 0
        for key, idle in list(self._idle.items()):
            keep = [c for c in idle if now - c.last_used < self.idle_timeout]
            for conn in idle:
                if conn not in keep:
                    self._discard(conn)
                    closed += 1
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        return closed

    def next_expiry(self) -> float | None:
        """Seconds until the next idle connection expires (``None``: none kept)."""
        ends = [c.last_used + self.idle_timeout for v in self._idle.values() for c in v]
        return max(0.0, min(ends) - self.monotonic()) if ends else None

    async def close(self) -> None:
        """QUIT every kept connection and wait for the closes."""
        for idle in self._idle.values():
            for conn in idle:
                self._discard(conn)
        self._idle.clear()
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


async def _shut(session: _Session) -> None:
    if session.usable():
        await session.quit()
    await session.close()


async def _open(
    hop: Hop,
    attempt: Attempt,
    binding: PeerBinding,
    tls: ssl.SSLContext,
    helo: str,
    connect_timeout: float,
    command_timeout: float,
) -> Connection | None:
    """Connect, secure and bind; ``None`` with ``attempt.hop_error`` set on any failure."""
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
        extensions, chain = await _secure(session, attempt, tls, binding.check, helo)
        attempt.dsn = "DSN" in extensions
        return Connection(
            session,
            extensions,
            chain,
            attempt.peer_dn,
            attempt.peer_ip,
            attempt.tls,
            tls,
            binding.key,
            binding.at,
            _valid_until(chain, binding.horizon),
            {binding.domain},
        )
    except _HopFailure as failure:
        attempt.hop_error = failure.result
    except (OSError, TimeoutError, ConnectionError, ProtocolError, ssl.SSLError) as exc:
        attempt.hop_error = Result("deferred", "4.4.2", f"connection with {hop} lost: {_why(exc)}")
    except BaseException:
        if session is not None:
            await session.close()
        raise
    if session is not None:
        await session.quit()
        await session.close()
    return None


async def _secure(
    session: _Session, attempt: Attempt, tls: ssl.SSLContext, check_peer: CheckPeer, helo: str
) -> tuple[dict[str, str], list[x509.Certificate]]:
    """Greeting, EHLO, STARTTLS, handshake, peer binding, EHLO: the extensions and chain."""
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
    return parse_ehlo(ehlo), chain


@dataclass
class _Progress:
    #: The first byte of the message was written: from then on it may be delivered.
    content_sent: bool = False


async def _transaction(
    conn: Connection,
    hop: Hop,
    tx: Transaction,
    attempt: Attempt,
    progress: _Progress,
    *,
    pipelining: bool,
) -> list[Result]:
    """MAIL, RCPT…, DATA and the message on ``conn``; per-recipient results.

    With PIPELINING (RFC 2920) the RSET (when needed), MAIL, RCPTs and DATA
    go in one write and their replies are read in order; without it, one
    command at a time, stopping as soon as the outcome is known.  Either way
    the results are the same.  Leaves ``conn.needs_rset`` and ``conn.broken``
    describing the session afterwards.
    """
    session, extensions, dsn = conn.session, conn.extensions, attempt.dsn
    limit = extensions.get("SIZE", "")
    if is_digits(limit) and int(limit) > 0 and tx.size > int(limit):
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
    rcpts = []
    for rcpt in tx.recipients:
        line = f"RCPT TO:<{rcpt.address}>"
        if dsn and rcpt.notify:
            line += f" NOTIFY={rcpt.notify.upper()}"
        if dsn and rcpt.orcpt:
            line += f" ORCPT={rcpt.orcpt}"
        rcpts.append(line)
    if pipelining and conn.pipelining:
        return await _pipelined(conn, hop, tx, attempt, progress, mail, rcpts)
    if conn.needs_rset:
        if not (await session.command("RSET")).ok:
            raise ProtocolError("RSET refused")
        conn.needs_rset = False
    attempt.mail_sent = True
    reply = await session.command(mail)
    if not reply.ok:
        conn.broken = reply.code == 421
        return [_from_reply(hop, "MAIL FROM", reply)] * len(tx.recipients)
    conn.needs_rset = True
    results: list[Result | None] = []
    for line in rcpts:
        reply = await session.command(line)
        conn.broken = conn.broken or reply.code == 421
        results.append(None if reply.ok else _from_reply(hop, "RCPT TO", reply))
    if all(r is not None for r in results):
        return [r for r in results if r is not None]
    reply = await session.command("DATA")
    if reply.code != 354:
        conn.broken = conn.broken or reply.code == 421
        final = _from_reply(hop, "DATA", reply)
    else:
        final = await _content(conn, hop, tx, progress)
    return [r if r is not None else final for r in results]


async def _pipelined(
    conn: Connection,
    hop: Hop,
    tx: Transaction,
    attempt: Attempt,
    progress: _Progress,
    mail: str,
    rcpts: list[str],
) -> list[Result]:
    """RFC 2920 §3.1: [RSET,] MAIL, RCPT…, DATA in one group, then the replies in order."""
    session = conn.session
    lines = (["RSET"] if conn.needs_rset else []) + [mail, *rcpts, "DATA"]
    attempt.mail_sent = True
    await session.send(lines)
    if conn.needs_rset:
        reset = await session.reply()
        if not reset.ok:
            raise ProtocolError(f"RSET refused: {reset}")
    mail_reply = await session.reply()
    rcpt_replies = [await session.reply() for _ in rcpts]
    data_reply = await session.reply()
    replies = [mail_reply, *rcpt_replies, data_reply]
    conn.broken = any(r.code == 421 for r in replies)
    conn.needs_rset = mail_reply.ok
    results: list[Result | None]
    if not mail_reply.ok:
        results = [_from_reply(hop, "MAIL FROM", mail_reply)] * len(tx.recipients)
    else:
        results = [None if r.ok else _from_reply(hop, "RCPT TO", r) for r in rcpt_replies]
    accepted = any(r is None for r in results)
    if data_reply.code == 354 and not accepted:
        # RFC 2920 §3.1: DATA accepted without any recipient: end it at once.
        session.writer.write(b".\r\n")
        await session.reply()
        conn.broken = True
    if not accepted:
        return [r for r in results if r is not None]
    if data_reply.code != 354:
        final = _from_reply(hop, "DATA", data_reply)
    else:
        final = await _content(conn, hop, tx, progress)
    return [r if r is not None else final for r in results]


async def _content(conn: Connection, hop: Hop, tx: Transaction, progress: _Progress) -> Result:
    """After ``354``: the message, its final reply as the result for accepted recipients."""
    progress.content_sent = True
    reply = await conn.session.data(tx)
    conn.needs_rset = False
    conn.broken = reply.code == 421
    if reply.ok:
        return Result("delivered", reply.status("0.0"), f"accepted by {hop}", str(reply))
    return _from_reply(hop, "end of DATA", reply)


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
