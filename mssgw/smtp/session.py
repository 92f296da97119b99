"""The ESMTP session shared by the port-25 listener and (later) submission.

Built on aiosmtpd's ``SMTP`` protocol (connection handling, STARTTLS
plumbing, timers), with the parts where it falls short replaced:

* the command loop (``_handle_client``): every reply carries an enhanced
  status code (RFC 2034), command lines are bounded (RFC 5321 §4.5.3.1.4,
  with room for the SIZE/SMTPUTF8/DSN parameters), bare LF in commands is
  refused, floods of unknown or junk commands and of errors end the session
  with ``421``, and the inactivity timer is re-armed on every line and every
  data chunk (RFC 5321 §4.5.3.2.7: a server waits at least 5 minutes);
* replies are batched while pipelined commands are waiting (RFC 2920 §3.2),
  and flushed before the session would wait for input;
* EHLO advertises PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES,
  DSN and STARTTLS (not after TLS is on, RFC 3207 §4.2);
* MAIL/RCPT parameters go through ``dsn_params`` (values kept as sent);
* STARTTLS takes the listener's *current* context for every handshake, so a
  reloaded certificate, anchor set or CRL applies to the next connection;
* DATA is streamed through the sans-IO ``DataReader`` into a ``Spool``
  (memory up to a small bound, then an unlinked temporary file): a message
  body never sits whole in memory.

Subclasses decide: ``check_mail``, ``check_rcpt``, ``trace_headers`` and
``end_of_data`` (store, trace, return the ``Decision``), plus the trace
hooks ``refused`` and ``tls_failed``.  Nothing here knows the store.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto as sslproto
import inspect
import logging
import secrets
import ssl
import tempfile
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, AnyStr, ClassVar, cast

import aiosmtpd.smtp
from aiosmtpd.smtp import SMTP
from cryptography import x509

from mssgw.config import LimitsSettings
from mssgw.policy.decision import Decision
from mssgw.policy.size import check_declared_size
from mssgw.smtp.data import DataProblem, DataReader
from mssgw.smtp.dsn_params import (
    ArgumentError,
    MailArgument,
    MailParams,
    RcptArgument,
    RcptParams,
    parse_mail,
    parse_rcpt,
)
from mssgw.smtp.received import TlsInfo
from mssgw.smtp.stats import HeaderFacts, HeaderSniffer, ListenerStats
from mssgw.tls import transport as _tls_transport  # noqa: F401  (installs the TLS protocol)
from mssgw.tls.context import peer_chain
from mssgw.tls.identity import subject_dn
from mssgw.tls.reload import ReloadingContext

log = logging.getLogger(__name__)

#: Bytes asked of the socket per read during DATA.
CHUNK = 64 * 1024
#: Commands allowed before STARTTLS on a listener that requires TLS (RFC 3207 §4).
ALLOWED_BEFORE_TLS = frozenset({"EHLO", "HELO", "STARTTLS", "NOOP", "QUIT", "RSET"})
#: Commands that do not advance a transaction; too many of them is a flood.
JUNK_COMMANDS = frozenset({"NOOP", "RSET", "VRFY", "EXPN", "HELP", "HELO", "EHLO"})


# --------------------------------------------------------------------------- protocol replies
# Protocol syntax and sequence replies (RFC 5321 §4.2.2-§4.3.2, RFC 3463 X.5.x).
# They are not policy: they say the dialogue itself went wrong.


def _r(code: int, enhanced: str, reason: str) -> Decision:
    kind = {"2": "accept", "4": "tempfail", "5": "reject"}[str(code)[0]]
    return Decision(kind, code, enhanced, reason)  # type: ignore[arg-type]


OK = _r(250, "2.0.0", "OK")
BYE = _r(221, "2.0.0", "Bye")
NEED_EHLO = _r(503, "5.5.1", "send EHLO first")
NEED_MAIL = _r(503, "5.5.1", "need MAIL command")
NESTED_MAIL = _r(503, "5.5.1", "nested MAIL command")
NO_RECIPIENTS = _r(554, "5.5.1", "no valid recipients")
NEED_TLS = _r(530, "5.7.0", "must issue a STARTTLS command first")
TLS_ACTIVE = _r(503, "5.5.1", "TLS already active")
TLS_UNAVAILABLE = _r(454, "4.7.0", "TLS not available")
LINE_TOO_LONG = _r(500, "5.5.2", "line too long (RFC 5321 4.5.3.1)")
BARE_LF_COMMAND = _r(500, "5.5.2", "commands must end with CRLF")
BAD_COMMAND = _r(500, "5.5.2", "syntax error")
UNKNOWN = _r(500, "5.5.1", "command not recognized")
NOT_IMPLEMENTED = _r(502, "5.5.1", "command not implemented")
DUPLICATE_RCPT = _r(250, "2.1.5", "recipient ok (duplicate)")
TOO_MANY_UNKNOWN = _r(421, "4.7.0", "too many unrecognized commands, closing connection")
TOO_MANY_JUNK = _r(421, "4.7.0", "too many commands without mail, closing connection")
TOO_MANY_ERRORS = _r(421, "4.7.0", "too many errors, closing connection")
TOO_MANY_CONNECTIONS = _r(421, "4.7.0", "too many connections, try again later")
VRFY_REPLY = _r(252, "2.5.0", "cannot VRFY user, but will accept message and attempt delivery")
HELP_REPLY = _r(214, "2.0.0", "see RFC 5321")
#: After an error in the data stream (the whole message is refused).
DATA_PROBLEMS: dict[DataProblem, Decision] = {
    # Postfix (smtpd_forbid_bare_newline) answers the same; RFC 5321 §2.3.8.
    DataProblem.BARE_LF: _r(550, "5.5.2", "bare LF in message data (RFC 5321 2.3.8)"),
    DataProblem.LONE_CR: _r(550, "5.5.2", "bare CR in message data (RFC 5321 2.3.8)"),
    DataProblem.LINE_TOO_LONG: _r(500, "5.5.2", "line too long (RFC 5321 4.5.3.1.6)"),
}


def syntax_error(usage: str) -> Decision:
    return _r(501, "5.5.4", f"syntax: {usage}")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class SessionLimits:
    """Bounds applied to one session (from ``[limits]`` plus fixed protocol bounds)."""

    max_message_size: int
    max_recipients: int
    max_line_length: int
    command_timeout: float
    #: RFC 5321 §4.5.3.1.4: 512 octets for a command line, CRLF included.
    command_line: int = 512
    #: MAIL/RCPT: 512 + SIZE (26, RFC 1870) + SMTPUTF8 (10) + DSN (110 for MAIL,
    #: 500 for RCPT, RFC 3461 §5) + BODY, rounded up for UTF-8 addresses.
    address_command_line: int = 2048
    max_unknown_commands: int = 10
    max_junk_commands: int = 100
    max_errors: int = 20
    handshake_timeout: float = 60.0
    #: Message bytes kept in memory before the spool moves to a temporary file.
    spool_memory: int = 256 * 1024

    @classmethod
    def from_settings(cls, limits: LimitsSettings) -> SessionLimits:
        return cls(
            max_message_size=limits.max_message_size,
            max_recipients=limits.max_recipients,
            max_line_length=limits.max_line_length,
            command_timeout=float(limits.command_timeout),
            handshake_timeout=float(min(60, limits.command_timeout)),
        )


class ConnectionGate:
    """Concurrent connections of one listener: bounded in total and per client IP."""

    def __init__(self, total: int, per_ip: int) -> None:
        self.total = total
        self.per_ip_limit = per_ip
        self.sessions: set[EsmtpSession] = set()
        self.per_ip: Counter[str] = Counter()

    def admit(self, session: EsmtpSession, ip: str) -> bool:
        if len(self.sessions) >= self.total or self.per_ip[ip] >= self.per_ip_limit:
            return False
        self.sessions.add(session)
        self.per_ip[ip] += 1
        return True

    def release(self, session: EsmtpSession, ip: str) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            self.per_ip[ip] -= 1
            if self.per_ip[ip] <= 0:
                del self.per_ip[ip]


@dataclass
class ListenerEnv:
    """What every session of one listener shares."""

    name: str
    hostname: str
    limits: SessionLimits
    gate: ConnectionGate
    stats: ListenerStats
    spool_dir: Path
    #: ``None``: no TLS on this listener (never the case for port 25).
    tls: ReloadingContext | None = None
    require_tls: bool = True
    #: Background tasks (traces of failed handshakes); kept so they are not collected.
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


# --------------------------------------------------------------------------- transaction


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    params: RcptParams


@dataclass
class Transaction:
    """One MAIL ... DATA transaction (RFC 5321 §3.3)."""

    id: str = field(default_factory=lambda: secrets.token_hex(6))
    sender: str | None = None
    mail: MailParams = field(default_factory=MailParams)
    recipients: list[Recipient] = field(default_factory=list)

    @property
    def addresses(self) -> list[str]:
        return [r.address for r in self.recipients]


class Spool:
    """Message bytes of one DATA phase: memory up to a bound, then a temporary file.

    The file is created unlinked (``TemporaryFile``) in the spool folder, so a
    crash leaves nothing behind; it is the same file system as the state
    folder, where the store's blob folder usually lives.
    """

    def __init__(self, directory: Path, memory_limit: int) -> None:
        self.directory = directory
        self.memory_limit = memory_limit
        self._memory = bytearray()
        self._file: IO[bytes] | None = None
        self.size = 0

    def write(self, data: bytes) -> None:
        """Append; raises ``OSError`` (disk full...)."""
        self.size += len(data)
        if self._file is None:
            if len(self._memory) + len(data) <= self.memory_limit:
                self._memory += data
                return
            # Lives until close(), beyond this call: no context manager.
            self._file = tempfile.TemporaryFile(dir=self.directory, prefix="spool-")  # noqa: SIM115
            self._file.write(self._memory)
            self._memory = bytearray()
        self._file.write(data)

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def source(self) -> bytes | IO[bytes]:
        """What to hand to the store: the bytes, or the file rewound."""
        if self._file is None:
            return bytes(self._memory)
        self._file.flush()
        self._file.seek(0)
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._memory = bytearray()


@dataclass
class DataOutcome:
    """What the end of DATA hands to ``end_of_data``."""

    transaction: Transaction
    spool: Spool
    #: Unstuffed message size (trace headers excluded).
    size: int
    #: Raw octets received, for the trace when the message was refused.
    received: int
    facts: HeaderFacts
    #: Set when the data stream was invalid or too big: the message is refused.
    problem: DataProblem | None = None
    #: Set when the spool could not be written (disk full...).
    spool_error: OSError | None = None


class _NoHooks:
    """aiosmtpd wants a handler object; every decision is made by the session."""


class _MembersByClass:
    """Stands in for ``inspect`` inside ``aiosmtpd.smtp`` (its only uses are below).

    ``SMTP.__init__`` looks for ``auth_*`` methods with ``inspect.getmembers``
    on every new connection, which reads every attribute of the session
    (~0.1-0.4 ms of the event loop per connection, measured in
    ``bench/smtp_inbound.py``'s profile).  Which names start with ``auth_``
    depends only on the class: they are found once per class, then read from
    the object as before, so aiosmtpd gets exactly the same members.
    """

    signature = staticmethod(inspect.signature)
    _names: ClassVar[dict[type, tuple[str, ...]]] = {}

    @classmethod
    def getmembers(cls, obj: object) -> list[tuple[str, Any]]:
        kind = type(obj)
        names = cls._names.get(kind)
        if names is None:
            names = tuple(n for n, _ in inspect.getmembers(kind) if n.startswith("auth_"))
            cls._names[kind] = names
        return [(name, getattr(obj, name)) for name in names]


aiosmtpd.smtp.inspect = _MembersByClass  # type: ignore[attr-defined,assignment]


# --------------------------------------------------------------------------- session


class EsmtpSession(SMTP):
    """One ESMTP connection.  See the module documentation."""

    #: asyncio.StreamReader buffer limit: bounds one command line read and the
    #: per-connection read buffer (pauses the socket at twice this).
    line_length_limit = 64 * 1024
    #: RFC 3848 "with" keyword for the Received field.
    protocol_name = "ESMTPS"

    def __init__(self, env: ListenerEnv, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(
            _NoHooks(),
            hostname=env.hostname,
            ident="mssgw",
            data_size_limit=env.limits.max_message_size,
            enable_SMTPUTF8=True,
            timeout=env.limits.command_timeout,
            loop=loop,
        )
        self.env = env
        # Set after the base constructor: passing a CERT_REQUIRED context there
        # only makes aiosmtpd log a warning per connection.
        self.tls_context = env.tls.current if env.tls is not None else None
        self.tls: TlsInfo | None = None
        self.peer_chain: list[x509.Certificate] = []
        self.peer_ip = ""
        self.txn = Transaction()
        self._out: list[bytes] = []
        self._admitted = False
        self._unknown = 0
        self._junk = 0
        self._errors = 0

    # ------------------------------------------------------------------ hooks

    async def check_mail(self, argument: MailArgument) -> Decision:
        """Policy for MAIL FROM (size already checked)."""
        raise NotImplementedError

    async def check_rcpt(self, argument: RcptArgument) -> Decision:
        """Policy for one RCPT TO (count already checked)."""
        raise NotImplementedError

    def trace_headers(self) -> bytes:
        """Header lines to prepend to the message (Received, maybe Return-Path)."""
        return b""

    async def end_of_data(self, outcome: DataOutcome) -> Decision:
        """Store (or refuse) the message; trace; return the reply."""
        raise NotImplementedError

    async def refused(self, stage: str, decision: Decision, subject: str | None) -> None:
        """A MAIL or RCPT was refused (trace it)."""

    async def tls_failed(self, error: BaseException) -> None:
        """A STARTTLS handshake failed (trace it)."""

    # ------------------------------------------------------------------ connection

    @property
    def peer_dn(self) -> str | None:
        return self.tls.peer_dn if self.tls is not None else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self._original_transport is None and self.transport is None
        super().connection_made(transport)
        if first:
            peer = transport.get_extra_info("peername")
            self.peer_ip = str(peer[0]) if peer else "unknown"
            self._admitted = self.env.gate.admit(self, self.peer_ip)
            if self._admitted:
                self.env.stats.connections += 1
            else:
                self.env.stats.connections_refused += 1

    def connection_lost(self, error: Exception | None) -> None:
        self.env.gate.release(self, self.peer_ip)
        if self.transport is None:
            return  # already handled (failed handshake)
        super().connection_lost(error)

    def _timeout_cb(self) -> None:
        # RFC 5321 §4.5.3.2.7 / §3.8: say why before closing.
        transport = self.transport
        if transport is not None and not transport.is_closing():
            log.info("%s: timeout, closing", self.peer_ip)
            reply = f"421 4.4.2 {self.hostname} timeout, closing connection\r\n"
            transport.write(reply.encode())  # type: ignore[attr-defined]
            transport.close()

    def _set_post_data_state(self) -> None:
        """After DATA, RSET, EHLO, STARTTLS: a fresh transaction (RFC 5321 §4.1.1.5)."""
        self.envelope = self._create_envelope()
        self.txn = Transaction()

    def _set_rset_state(self) -> None:
        self._set_post_data_state()

    def close(self) -> None:
        """Close the connection now (shutdown, limits)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # ------------------------------------------------------------------ replies

    async def push(self, status: AnyStr) -> None:
        """Queue a reply; send now unless another command is already waiting (RFC 2920)."""
        data = status.encode("utf-8") if isinstance(status, str) else bytes(status)
        if data[:1] in (b"4", b"5"):
            self._errors += 1
        self._out.append(data + b"\r\n")
        if not self._input_has_line():
            await self._flush()

    async def reply(self, decision: Decision) -> None:
        await self.push(decision.smtp_reply())

    def _input_has_line(self) -> bool:
        # StreamReader keeps unread bytes in ``_buffer`` (a bytearray) since
        # Python 3.4; aiosmtpd itself reaches into it for RFC 3207.
        buffer: bytearray = cast(Any, self._reader)._buffer
        return b"\n" in buffer

    async def _flush(self) -> None:
        if not self._out:
            return
        data = b"".join(self._out)
        self._out.clear()
        if self.transport is None or self.transport.is_closing():
            return
        self._writer.write(data)
        await self._writer.drain()

    async def _close_with(self, decision: Decision) -> None:
        await self.reply(decision)
        await self._flush()
        self.close()

    def _unread(self, data: bytes) -> None:
        """Give back bytes received after the end of data (pipelined commands)."""
        cast(Any, self._reader)._buffer[0:0] = data

    # ------------------------------------------------------------------ command loop

    async def _handle_client(self) -> None:
        if not self._admitted:
            await self._close_with(TOO_MANY_CONNECTIONS)
            return
        await self.push(f"220 {self.hostname} ESMTP mssgw")
        limits = self.env.limits
        while self.transport is not None and not self.transport.is_closing():
            await self._flush()
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.LimitOverrunError as exc:
                await self._skip_long_line(exc.consumed)
                await self.reply(LINE_TOO_LONG)
                continue
            except (asyncio.IncompleteReadError, ConnectionError):
                self.close()
                return
            self._reset_timeout()
            try:
                await self._dispatch(line)
            except (asyncio.CancelledError, ConnectionError):
                raise
            except Exception:
                log.exception("%s: SMTP session error", self.peer_ip)
                await self.reply(_r(451, "4.3.0", "temporary local problem, try again later"))
            if self._errors > limits.max_errors:
                await self._close_with(TOO_MANY_ERRORS)
                return

    async def _skip_long_line(self, consumed: int) -> None:
        await self._reader.readexactly(consumed)
        while True:
            try:
                await self._reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await self._reader.readexactly(exc.consumed)

    async def _dispatch(self, line: bytes) -> None:
        if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            await self.reply(BARE_LF_COMMAND)
            return
        verb_bytes, _, arg_bytes = line[:-2].partition(b" ")
        try:
            verb = verb_bytes.decode("ascii").upper()
            arg = arg_bytes.decode("utf-8").strip(" ")
        except UnicodeDecodeError:
            await self.reply(BAD_COMMAND)
            return
        limits = self.env.limits
        limit = limits.address_command_line if verb in ("MAIL", "RCPT") else limits.command_line
        if len(line) > limit:
            await self.reply(LINE_TOO_LONG)
            return
        method = self._smtp_methods.get(verb) if verb.isalpha() else None
        if method is None:
            self._unknown += 1
            if self._unknown > limits.max_unknown_commands:
                await self._close_with(TOO_MANY_UNKNOWN)
            else:
                await self.reply(UNKNOWN)
            return
        if verb in JUNK_COMMANDS:
            self._junk += 1
            if self._junk > limits.max_junk_commands:
                await self._close_with(TOO_MANY_JUNK)
                return
        if (
            self.env.require_tls
            and self.tls is None
            and verb not in ALLOWED_BEFORE_TLS
        ):
            await self.reply(NEED_TLS)
            return
        await method(arg or None)

    # ------------------------------------------------------------------ commands

    def extensions(self) -> list[str]:
        """EHLO keywords (RFC 5321 §4.1.1.1), in the order advertised."""
        out = [
            "PIPELINING",  # RFC 2920
            f"SIZE {self.env.limits.max_message_size}",  # RFC 1870
            "8BITMIME",  # RFC 6152
            "SMTPUTF8",  # RFC 6531
            "ENHANCEDSTATUSCODES",  # RFC 2034
            "DSN",  # RFC 3461
        ]
        if self.env.tls is not None and self.tls is None:
            out.append("STARTTLS")  # RFC 3207; never again once TLS is on (§4.2)
        return out

    async def smtp_EHLO(self, arg: str | None) -> None:
        if not arg:
            await self.reply(syntax_error("EHLO hostname"))
            return
        self._set_rset_state()
        assert self.session is not None
        self.session.extended_smtp = True
        self.session.host_name = arg
        lines = [self.hostname, *self.extensions()]
        text = "\r\n".join(
            f"250{'-' if i < len(lines) - 1 else ' '}{value}" for i, value in enumerate(lines)
        )
        await self.push(text)

    async def smtp_HELO(self, arg: str | None) -> None:
        if not arg:
            await self.reply(syntax_error("HELO hostname"))
            return
        self._set_rset_state()
        assert self.session is not None
        self.session.extended_smtp = False
        self.session.host_name = arg
        await self.push(f"250 {self.hostname}")

    async def smtp_STARTTLS(self, arg: str | None) -> None:
        if arg:
            await self.reply(syntax_error("STARTTLS"))
            return
        if self.tls is not None or self._tls_protocol is not None:
            await self.reply(TLS_ACTIVE)
            return
        if self.env.tls is None:
            await self.reply(TLS_UNAVAILABLE)
            return
        # The newest context for each handshake: hot reload (SPEC TLS-4).
        context = self.env.tls.current
        self.tls_context = context
        await self.reply(_r(220, "2.0.0", "ready to start TLS"))
        await self._flush()
        waiter: asyncio.Future[None] = self.loop.create_future()
        # Same plumbing as aiosmtpd's STARTTLS, with a handshake timeout; the
        # new protocol calls ``connection_made`` again, which clears anything
        # the client pipelined in clear text (RFC 3207 §4.2, aiosmtpd does it).
        self._tls_protocol = sslproto.SSLProtocol(
            self.loop, self, context, waiter, server_side=True,
            ssl_handshake_timeout=int(self.env.limits.handshake_timeout),
        )
        self._original_transport = self.transport
        assert self._original_transport is not None
        self._original_transport.set_protocol(self._tls_protocol)
        self.transport = self._tls_protocol._app_transport
        self._tls_protocol.connection_made(self._original_transport)
        try:
            await waiter
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.env.stats.tls_failures += 1
            log.info("%s: TLS handshake failed: %s", self.peer_ip, _brief(exc))
            self.env.spawn(self.tls_failed(exc))
            self._original_transport.close()
            # The SSL protocol does not report a connection that never got past
            # the handshake: release the slot and stop the command loop here.
            self.connection_lost(None)
            self.transport = None
            return
        assert self.transport is not None
        sslobj = cast("ssl.SSLObject | None", self.transport.get_extra_info("ssl_object"))
        chain = peer_chain(sslobj) if sslobj is not None else []
        cipher = sslobj.cipher() if sslobj is not None else None
        self.peer_chain = chain
        self.tls = TlsInfo(
            version=(sslobj.version() if sslobj is not None else None) or "TLS",
            cipher=cipher[0] if cipher else "unknown",
            bits=int(cipher[2]) if cipher else 0,
            peer_dn=subject_dn(chain[0]) if chain else None,
        )

    async def smtp_AUTH(self, arg: str | None) -> None:
        await self.reply(NOT_IMPLEMENTED)

    async def smtp_NOOP(self, arg: str | None) -> None:
        await self.reply(OK)

    async def smtp_RSET(self, arg: str | None) -> None:
        if arg:
            await self.reply(syntax_error("RSET"))
            return
        self._set_rset_state()
        await self.reply(OK)

    async def smtp_QUIT(self, arg: str | None) -> None:
        await self._close_with(BYE)

    async def smtp_VRFY(self, arg: str | None) -> None:
        # RFC 5321 §3.5.3: 252 tells nothing about which mailboxes exist.
        await self.reply(VRFY_REPLY if arg else syntax_error("VRFY address"))

    async def smtp_EXPN(self, arg: str | None) -> None:
        await self.reply(NOT_IMPLEMENTED)

    async def smtp_HELP(self, arg: str | None) -> None:
        await self.reply(HELP_REPLY)

    def _helo_missing(self) -> bool:
        return self.session is None or not self.session.host_name

    async def smtp_MAIL(self, arg: str | None) -> None:
        if self._helo_missing():
            await self.reply(NEED_EHLO)
            return
        if self.txn.sender is not None:
            await self.reply(NESTED_MAIL)
            return
        if not arg or arg[:5].upper() != "FROM:":
            await self.reply(syntax_error("MAIL FROM:<address> [parameters]"))
            return
        assert self.session is not None
        try:
            argument = parse_mail(arg[5:], esmtp=self.session.extended_smtp)
        except ArgumentError as exc:
            await self.refused("mail", exc.decision, None)
            await self.reply(exc.decision)
            return
        decision = check_declared_size(argument.params.size, self.env.limits.max_message_size)
        if decision.ok:
            decision = await self.check_mail(argument)
        if decision.ok:
            self.txn.sender = argument.sender
            self.txn.mail = argument.params
        else:
            self.env.stats.refused(decision.enhanced)
            await self.refused("mail", decision, argument.sender)
        await self.reply(decision)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if self._helo_missing():
            await self.reply(NEED_EHLO)
            return
        if self.txn.sender is None:
            await self.reply(NEED_MAIL)
            return
        if not arg or arg[:3].upper() != "TO:":
            await self.reply(syntax_error("RCPT TO:<address> [parameters]"))
            return
        assert self.session is not None
        try:
            argument = parse_rcpt(
                arg[3:], esmtp=self.session.extended_smtp, smtputf8=self.txn.mail.smtputf8
            )
        except ArgumentError as exc:
            await self.refused("rcpt", exc.decision, None)
            await self.reply(exc.decision)
            return
        address = argument.recipient.lower()
        if any(r.address.lower() == address for r in self.txn.recipients):
            # RFC 5321 §3.3 allows duplicates; one copy per mailbox is enough.
            await self.reply(DUPLICATE_RCPT)
            return
        decision = await self.check_rcpt(argument)
        if decision.ok:
            self.txn.recipients.append(Recipient(argument.recipient, argument.params))
            self.env.stats.recipients_accepted += 1
        else:
            self.env.stats.recipients_refused += 1
            self.env.stats.refused(decision.enhanced)
            await self.refused("rcpt", decision, argument.recipient)
        await self.reply(decision)

    async def smtp_DATA(self, arg: str | None) -> None:
        if self._helo_missing():
            await self.reply(NEED_EHLO)
            return
        if self.txn.sender is None:
            await self.reply(NEED_MAIL)
            return
        if not self.txn.recipients:
            await self.reply(NO_RECIPIENTS)
            return
        if arg:
            await self.reply(syntax_error("DATA"))
            return
        # RFC 2034 §3: the 354 intermediate reply carries no enhanced code.
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        limits = self.env.limits
        reader = DataReader(limits.max_message_size, limits.max_line_length)
        spool = Spool(self.env.spool_dir, limits.spool_memory)
        sniffer = HeaderSniffer()
        spool_error: OSError | None = None
        txn = self.txn
        try:
            try:
                spool.write(self.trace_headers())
            except OSError as exc:
                spool_error = exc
            while True:
                await self._flush()
                self._reset_timeout()
                chunk = await self._reader.read(CHUNK)
                if not chunk:
                    self.close()  # the client went away mid-message: nothing stored
                    return
                fed = reader.feed(chunk)
                if fed.content:
                    sniffer.feed(fed.content)
                    if spool_error is None:
                        try:
                            spool.write(fed.content)
                        except OSError as exc:
                            spool_error = exc
                if fed.done:
                    break
            self._reset_timeout()
            if fed.leftover:
                self._unread(fed.leftover)
            outcome = DataOutcome(
                txn, spool, reader.size, reader.received, sniffer.facts(),
                reader.problem, spool_error,
            )
            decision = await asyncio.shield(self.end_of_data(outcome))
            if decision.ok:
                self.env.stats.messages_accepted += 1
                self.env.stats.octets_accepted += reader.size
                self.env.stats.count_headers(outcome.facts)
            else:
                self.env.stats.messages_refused += 1
                self.env.stats.refused(decision.enhanced)
            await self.reply(decision)
        finally:
            spool.close()
            self._set_post_data_state()


def _brief(exc: BaseException) -> str:
    # ssl.SSLCertVerificationError has a readable verify_message ("certificate
    # has expired"); other SSLErrors an OpenSSL reason code
    # ("PEER_DID_NOT_RETURN_A_CERTIFICATE"), made readable here.
    verify = getattr(exc, "verify_message", None)
    reason = getattr(exc, "reason", None)
    if verify:
        text = str(verify)
    elif reason:
        text = str(reason).replace("_", " ").lower()
    else:
        text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def describe_tls_error(exc: BaseException) -> str:
    """One line for a trace: what went wrong in the handshake."""
    return _brief(exc)
