"""Incremental command reader: bytes in, events out (h11 style, no I/O).

A server loop::

    reader.feed(data)
    while True:
        event = reader.next_event()        # may raise ImapProtocolError
        if event is NEED_DATA: break       # read more from the socket
        ...

Framing follows RFC 3501 §4.3 (literals), RFC 7888 (``{n+}``), RFC 2177
(``DONE`` ends IDLE) and RFC 3501 §6.2.2 / RFC 4959 (AUTHENTICATE lines).
Parsing is lazy: nothing is interpreted until :meth:`CommandReader.next_event`
is called, so a server may switch the reader into IDLE or SASL mode after
seeing the command even if the client pipelined the next line already.

Limits bound memory whatever the client sends: a line over
``max_line_length`` is fatal (framing can no longer be trusted); a literal
over ``max_literal_size`` is refused *before* it is read.  For a
synchronising literal ``{n}`` the refusal is raised at once and no ``+`` is
ever sent, so the client abandons the command.  For a non-synchronising
literal ``{n+}`` the client sends the octets without waiting: RFC 7888 §4
lets the server either close the connection or read and discard them; the
reader discards exactly ``n`` octets without buffering them, skips the rest
of the command (discarding further ``{m+}`` literals the same way) and only
then raises the error, so the stream stays in sync and no literal octet is
ever taken for a command.
"""

from __future__ import annotations

from dataclasses import dataclass

from .commands import Command
from .errors import BadCommand, ImapProtocolError
from .lexer import LITERAL_PREFIX_RE, LiteralValue, SpooledLiteral
from .parser import command_head, decode_base64, is_known_command, parse_command

MAX_LITERAL_NUMBER = 0xFFFFFFFF  # RFC 3501 §9: number is 32-bit


@dataclass(frozen=True, slots=True)
class NeedData:
    """The reader needs more bytes: call :meth:`CommandReader.feed`."""


NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True)
class NeedContinuation:
    """A synchronising literal was announced and accepted.

    The server must now send a continuation request (``+ Ready``); the client
    sends the ``size`` octets only after it.  Call
    :meth:`CommandReader.reject_literal` instead to refuse it.
    """

    tag: str
    size: int


@dataclass(frozen=True, slots=True)
class LiteralStart:
    """A literal of ``size`` octets will be streamed (``spool_threshold``).

    ``command`` is the command word (``"APPEND"``, ``"UID SEARCH"``...).  The
    octets follow as :class:`LiteralData` events, then :class:`LiteralEnd`;
    the command later holds a :class:`SpooledLiteral` with the same ``index``.
    """

    tag: str
    command: str
    index: int
    size: int


@dataclass(frozen=True, slots=True)
class LiteralData:
    """A chunk of a streamed literal (each octet delivered exactly once)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class LiteralEnd:
    """The streamed literal ``index`` is complete."""

    index: int


@dataclass(frozen=True, slots=True)
class SaslResponse:
    """A client line during AUTHENTICATE, base64-decoded.

    ``data`` is ``None`` when the client cancelled with ``*`` (the server
    answers ``BAD``, RFC 3501 §6.2.2).
    """

    tag: str
    data: bytes | None

    def __repr__(self) -> str:  # carries credentials
        state = "cancelled" if self.data is None else f"<{len(self.data)} octets>"
        return f"SaslResponse(tag={self.tag!r}, data={state})"


@dataclass(frozen=True, slots=True)
class IdleDone:
    """The client ended IDLE with ``DONE`` (RFC 2177)."""

    tag: str


Event = (
    Command
    | NeedData
    | NeedContinuation
    | LiteralStart
    | LiteralData
    | LiteralEnd
    | SaslResponse
    | IdleDone
)

# reader states
_LINE = "line"
_LITERAL = "literal"
_SPOOL = "spool"
_DISCARD = "discard"
_SKIP = "skip"
_SASL = "sasl"
_IDLE = "idle"
_CLOSED = "closed"


class CommandReader:
    """Turns the client byte stream into :data:`Event` values.

    ``max_line_length``: longest line segment (without CRLF) accepted.
    ``max_literal_size``: largest literal; advertise it as APPENDLIMIT
    (RFC 7889).  ``max_command_size``: bytes one command may hold in memory
    (its lines plus in-memory literals; default: one literal plus 64 KiB).
    ``spool_threshold``: literals of at least this size are streamed as
    :class:`LiteralStart`/:class:`LiteralData`/:class:`LiteralEnd` instead of
    being buffered (``None``: never).
    """

    def __init__(
        self,
        *,
        max_line_length: int = 64 * 1024,
        max_literal_size: int = 50 * 1024 * 1024,
        max_command_size: int | None = None,
        spool_threshold: int | None = None,
    ) -> None:
        self.max_line_length = max_line_length
        self.max_literal_size = max_literal_size
        self.max_command_size = (
            max_literal_size + 64 * 1024 if max_command_size is None else max_command_size
        )
        self.spool_threshold = spool_threshold
        self._buf = bytearray()
        self._scan = 0  # where to resume looking for LF in _buf
        self._state = _LINE
        # A list, not a deque: it holds at most two events, and an empty deque
        # costs 600 octets in every idle connection.
        self._pending: list[Event] = []
        self._error: ImapProtocolError | None = None  # raised after skipping
        self._mode_tag = ""
        self._reset_command()

    # -- public API ---------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Append bytes received from the client."""
        if self._state != _CLOSED:
            self._buf += data

    def next_event(self) -> Event:
        """Return the next event, or raise :class:`ImapProtocolError`.

        After a non-fatal error the reader has already resynchronised on the
        next command; after a fatal one (``error.fatal``) every call raises.
        """
        while True:
            if self._pending:
                return self._pending.pop(0)
            event = self._step()
            if event is not None:
                return event

    def start_idle(self, tag: str) -> None:
        """Call after sending ``+ idling``: the next line must be DONE."""
        self._switch_mode(_IDLE, tag)

    def expect_sasl_response(self, tag: str) -> None:
        """Call after each AUTHENTICATE challenge (``+ <base64>``)."""
        self._switch_mode(_SASL, tag)

    def reject_literal(self) -> None:
        """Refuse the literal of the last :class:`NeedContinuation`.

        The server sends its tagged ``NO``/``BAD`` instead of ``+``; the client
        then abandons the command (RFC 3501 §7.5), so the reader forgets it.
        """
        if self._state not in (_LITERAL, _SPOOL) or self._received:
            raise RuntimeError("no synchronising literal is waiting")
        self._pending.clear()
        self._reset_command()
        self._state = _LINE

    @property
    def buffered(self) -> int:
        """Octets received but not yet consumed (e.g. pipelined after STARTTLS,
        which a server must not carry over into the TLS session)."""
        return len(self._buf)

    @property
    def in_command(self) -> bool:
        """Whether part of a command has been read (useful for timeouts)."""
        return bool(self._lines) or self._state not in (_LINE, _CLOSED)

    # -- internals ----------------------------------------------------------
    def _switch_mode(self, state: str, tag: str) -> None:
        if self._state != _LINE or self._lines:
            raise RuntimeError("mode switches happen between commands only")
        self._state = state
        self._mode_tag = tag

    def _reset_command(self) -> None:
        self._lines: list[bytes] = []
        self._literals: list[LiteralValue] = []
        self._size = 0
        self._tag: str | None = None
        self._word = ""
        self._remaining = 0
        self._received = 0
        self._chunks: list[bytes] = []

    def _fail(self, error: ImapProtocolError) -> ImapProtocolError:
        """Forget the current command and return ``error`` to raise."""
        self._reset_command()
        self._pending.clear()
        if error.fatal:
            self._state = _CLOSED
            self._buf.clear()
        else:
            self._state = _LINE
        return error

    def _step(self) -> Event | None:
        state = self._state
        if state == _CLOSED:
            raise ImapProtocolError("connection closed after a protocol error", fatal=True)
        if state in (_LITERAL, _SPOOL, _DISCARD):
            return self._read_literal()
        line = self._take_line()
        if line is None:
            return NEED_DATA
        if state == _IDLE:
            return self._idle_line(line)
        if state == _SASL:
            return self._sasl_line(line)
        if state == _SKIP:
            return self._skip_line(line)
        return self._command_line(line)

    def _take_line(self) -> bytes | None:
        """Next line without its terminator (CRLF, or a bare LF tolerated)."""
        buf = self._buf
        lf = buf.find(b"\n", self._scan)
        if lf < 0:
            if len(buf) > self.max_line_length + 1:
                raise self._fail(BadCommand("line too long", fatal=True))
            self._scan = len(buf)
            return None
        end = lf - 1 if lf and buf[lf - 1] == 0x0D else lf
        if end > self.max_line_length:
            raise self._fail(BadCommand("line too long", fatal=True))
        line = bytes(buf[:end])
        del buf[: lf + 1]
        self._scan = 0
        return line

    def _idle_line(self, line: bytes) -> Event:
        self._state = _LINE
        if line.upper() != b"DONE":
            raise self._fail(BadCommand("expected DONE", tag=self._mode_tag))
        return IdleDone(self._mode_tag)

    def _sasl_line(self, line: bytes) -> Event:
        self._state = _LINE
        if line == b"*":
            return SaslResponse(self._mode_tag, None)
        try:
            return SaslResponse(self._mode_tag, decode_base64(line))
        except ImapProtocolError as exc:
            raise self._fail(exc.with_tag(self._mode_tag)) from None

    def _command_line(self, line: bytes) -> Event | None:
        if not self._lines and not line:
            return None  # tolerate empty lines between commands
        m = LITERAL_PREFIX_RE.search(line)
        if m is None:
            return self._finish_command(line)
        size = int(m.group(1))
        synchronising = not m.group(2)
        if not self._lines:
            self._tag, word = command_head(line)
            self._word = word or ""
            if self._tag is None or word is None or not is_known_command(word):
                return self._refuse(BadCommand("unknown command"), size, synchronising)
        spool = self.spool_threshold is not None and size >= self.spool_threshold
        held = self._size + len(line) + (0 if spool else size)
        if size > self.max_literal_size or held > self.max_command_size:
            return self._refuse(_too_big(self._word), size, synchronising)
        self._lines.append(line)
        self._size += len(line)
        self._remaining = size
        self._received = 0
        tag = self._tag or ""
        if spool:
            self._state = _SPOOL
            index = len(self._literals)
            self._pending.append(LiteralStart(tag, self._word, index, size))
        else:
            self._state = _LITERAL
        return NeedContinuation(tag, size) if synchronising else None

    def _refuse(self, error: ImapProtocolError, size: int, synchronising: bool) -> Event | None:
        """Refuse a literal before reading it (see the module docstring)."""
        error.with_tag(self._tag)
        if synchronising:
            raise self._fail(error)
        if size > MAX_LITERAL_NUMBER:
            raise self._fail(BadCommand("literal size out of range", tag=self._tag, fatal=True))
        self._reset_command()
        self._error = error
        self._remaining = size
        self._state = _DISCARD
        return None

    def _finish_command(self, line: bytes) -> Event:
        if self._size + len(line) > self.max_command_size:
            raise self._fail(BadCommand("command too long", tag=self._tag))
        self._lines.append(line)
        lines, literals = self._lines, self._literals
        self._reset_command()
        try:
            return parse_command(lines, literals)
        except ImapProtocolError as exc:
            raise self._fail(exc) from None

    def _read_literal(self) -> Event | None:
        take = min(self._remaining, len(self._buf))
        state = self._state
        if take == 0 and self._remaining:
            return NEED_DATA
        chunk = bytes(self._buf[:take]) if state != _DISCARD else b""
        del self._buf[:take]
        self._scan = 0
        self._remaining -= take
        self._received += take
        if state == _LITERAL:
            self._chunks.append(chunk)
        if self._remaining:
            return LiteralData(chunk) if state == _SPOOL and chunk else None
        # literal complete
        if state == _DISCARD:
            self._state = _SKIP
            return None
        self._state = _LINE
        index = len(self._literals)
        if state == _SPOOL:
            self._literals.append(SpooledLiteral(index, self._received))
            if chunk:
                self._pending.append(LiteralEnd(index))
                return LiteralData(chunk)
            return LiteralEnd(index)
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        self._literals.append(data)
        self._size += len(data)
        return None

    def _skip_line(self, line: bytes) -> Event | None:
        """Rest of a command whose ``{n+}`` literal was refused."""
        m = LITERAL_PREFIX_RE.search(line)
        if m is not None and m.group(2):
            size = int(m.group(1))
            if size > MAX_LITERAL_NUMBER:
                raise self._fail(BadCommand("literal size out of range", fatal=True))
            self._remaining = size
            self._state = _DISCARD
            return None
        # End of the command, or a synchronising literal the client now
        # waits on in vain: either way the refusal can be sent now.
        error = self._error or BadCommand("command refused")
        self._error = None
        raise self._fail(error)


def _too_big(word: str) -> ImapProtocolError:
    # RFC 7889 §3 / RFC 4469: APPEND over the limit is NO [TOOBIG]; any
    # other command with such a literal is malformed.
    if word == "APPEND":
        return ImapProtocolError("message too large", code="TOOBIG")
    return BadCommand("literal too large", code="TOOBIG")
