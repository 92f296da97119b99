"""Sans-IO reader of the SMTP mail data stream (RFC 5321 §4.1.1.4, §4.5.2).

Bytes go in (``DataReader.feed``), unstuffed message octets come out, and
the reader says when the data ended and which bytes after the end belong to
the next command.  No I/O, no asyncio: the session drives it with chunks of
whatever size the socket gives, and the result does not depend on where the
chunks are cut (a property test checks that).

Why so strict:

* The end of data is only ``CRLF . CRLF`` (RFC 5321 §4.1.1.4).  A bare LF or
  a CR not followed by LF anywhere in the data makes the message refused,
  never ends it: ``\\n.\\n``, ``\\r.\\n``, ``\\n.\\r\\n`` and friends are the
  "SMTP smuggling" sequences that let a second message hide inside a first
  one when two MTAs disagree on where data ends (CVE-2023-51764 and co.).
  After such an error the reader keeps swallowing bytes until the real
  ``CRLF . CRLF``, so whatever was smuggled is discarded with the message.
* Dot-unstuffing (RFC 5321 §4.5.2): a line that starts with a period loses
  that one period.
* A line longer than the limit is refused (RFC 5321 §4.5.3.1.6 sets 1000
  octets including CRLF; operators may allow more, the limit here counts
  the CRLF and allows one transparency dot on top).
* The size limit counts unstuffed octets; past it nothing more is emitted,
  so the excess is never held anywhere (RFC 1870 §6.3: refuse at the end
  of data, after reading the rest).

Memory: at most one incomplete line (bounded by the line limit) plus the
chunk being fed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: The end-of-data indicator (RFC 5321 §4.1.1.4), the CRLF included being the
#: end of the last line of the message.
END = b"\r\n.\r\n"
_HIST = len(END) - 1


class DataProblem(enum.Enum):
    """Why a message's data is refused (the session maps each to a reply)."""

    BARE_LF = "bare LF in message data"
    LONE_CR = "CR not followed by LF in message data"
    LINE_TOO_LONG = "line too long"
    TOO_BIG = "message too big"


@dataclass(frozen=True, slots=True)
class Fed:
    """What one ``feed`` produced."""

    #: Unstuffed message octets to append (always empty once in error).
    content: bytes
    #: True once ``CRLF . CRLF`` was seen; the reader takes no more input.
    done: bool = False
    #: Bytes received after the end of data: the next command(s), pipelined.
    leftover: bytes = b""


class DataReader:
    """Incremental decoder of one DATA phase.

    ``max_size``: largest message (unstuffed octets) accepted.
    ``max_line``: largest line, CRLF included, before dot-stuffing.
    """

    def __init__(self, max_size: int, max_line: int = 1000) -> None:
        if max_size < 0 or max_line < 3:
            raise ValueError("max_size must be >= 0 and max_line >= 3")
        self.max_size = max_size
        #: A raw line may carry one transparency dot more than the limit.
        self._raw_line_max = max_line + 1
        #: Unstuffed octets emitted so far (stops growing past the limit).
        self.size = 0
        #: Raw octets consumed, end marker excluded (for traces, even in error).
        self.received = 0
        self.problem: DataProblem | None = None
        self.done = False
        # The incomplete last line of what was fed (no LF in it).
        self._tail = b""
        # The last raw bytes before the unprocessed input, to find END across
        # chunk boundaries.  The DATA command's own CRLF precedes the first line.
        self._hist = b"\r\n"

    # ------------------------------------------------------------------ input

    def feed(self, chunk: bytes) -> Fed:
        """Consume ``chunk``; return the content it completes."""
        if self.done:
            raise RuntimeError("DataReader.feed after the end of data")
        if self.problem is not None:
            return self._swallow(chunk)
        data = self._tail + chunk if self._tail else chunk
        last = data.rfind(b"\n")
        if last < 0:
            self._tail = data
            if len(data) >= self._raw_line_max:
                return self._fail_tail(DataProblem.LINE_TOO_LONG)
            return Fed(b"")
        part, self._tail = data[: last + 1], data[last + 1 :]
        # ``part`` is whole lines, starting at a line start: find the end
        # marker, the CRLF before the dot possibly being in ``_hist``.
        probe = self._hist + part
        found = probe.find(END)
        if found >= 0:
            cut = found + 2 - len(self._hist)
            body, after = part[:cut], part[cut + 3 :]
            self.received += len(body)
            content = self._decode(body)
            self.done = True
            return Fed(content, done=True, leftover=after + self._tail)
        self.received += len(part)
        self._hist = probe[-_HIST:]
        content = self._decode(part)
        if self.problem is not None:
            tail, self._tail = self._tail, b""
            return Fed(b"", done=self._swallow(tail).done)
        if len(self._tail) >= self._raw_line_max:
            return self._fail_tail(DataProblem.LINE_TOO_LONG)
        return Fed(content)

    # ------------------------------------------------------------------ internals

    def _decode(self, lines: bytes) -> bytes:
        """Validate whole lines and undo the dot-stuffing; b"" on a problem."""
        if not lines or self.problem is not None:
            return b""
        crlf = lines.count(b"\r\n")
        if lines.count(b"\n") != crlf:
            return self._fail(DataProblem.BARE_LF)
        if lines.count(b"\r") != crlf:
            return self._fail(DataProblem.LONE_CR)
        if len(lines) > self._raw_line_max and (
            max(map(len, lines.split(b"\n"))) + 1 > self._raw_line_max
        ):
            return self._fail(DataProblem.LINE_TOO_LONG)
        # RFC 5321 §4.5.2: remove the first character of a line that is a period.
        content = lines.replace(b"\n.", b"\n")
        if content.startswith(b"."):
            content = content[1:]
        if self.size + len(content) > self.max_size:
            self.size = self.max_size + 1
            return self._fail(DataProblem.TOO_BIG)
        self.size += len(content)
        return content

    def _fail(self, problem: DataProblem) -> bytes:
        if self.problem is None:
            self.problem = problem
        return b""

    def _fail_tail(self, problem: DataProblem) -> Fed:
        """The pending line is already too long: drop it, swallow from here."""
        self._fail(problem)
        tail, self._tail = self._tail, b""
        return Fed(b"", done=self._swallow(tail).done)

    def _swallow(self, chunk: bytes) -> Fed:
        """After a problem: discard everything up to and including END."""
        probe = self._hist + chunk
        found = probe.find(END)
        if found < 0:
            self.received += len(chunk)
            self._hist = probe[-_HIST:]
            return Fed(b"")
        end = found + len(END) - len(self._hist)
        self.received += max(0, found + 2 - len(self._hist))
        self.done = True
        return Fed(b"", done=True, leftover=chunk[end:])


def stuff(content: bytes) -> bytes:
    """The transmitted form of ``content`` (CRLF lines), end marker included.

    The inverse of ``DataReader``, for tests and the relay: every line
    starting with a period gets one more (RFC 5321 §4.5.2).
    """
    if content and not content.endswith(b"\r\n"):
        content += b"\r\n"
    body = content.replace(b"\r\n.", b"\r\n..")
    if body.startswith(b"."):
        body = b"." + body
    return body + b".\r\n"
