"""Character-level reading of one assembled command (RFC 3501 §9 lexical rules).

The :class:`~.reader.CommandReader` frames a command as alternating *line
segments* and *literals*: ``lines[i]`` ends with a literal announcement
``{n}``/``{n+}`` that is followed by ``literals[i]``.  :class:`Cursor` walks
that structure so the grammar in :mod:`.parser` reads a literal exactly where
it reads a quoted string, and never needs the pieces concatenated (an APPEND
message literal stays the single ``bytes`` object the reader built).

IMAP tokens are not context free (``BODY[1.MIME]`` is not an atom followed by
something; ``[`` is an ATOM-CHAR), so the cursor offers primitives and the
grammar decides which one applies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import BadCommand

# RFC 3501 §9: ATOM-CHAR is any CHAR except atom-specials
#   "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials / resp-specials
ATOM_RE = re.compile(rb'[^(){ \x00-\x1f\x7f-\xff%*"\\\]]+')
# ASTRING-CHAR = ATOM-CHAR / resp-specials
ASTRING_RE = re.compile(rb'[^(){ \x00-\x1f\x7f-\xff%*"\\]+')
# list-char = ATOM-CHAR / list-wildcards / resp-specials (RFC 3501 §9)
LIST_CHAR_RE = re.compile(rb'[^(){ \x00-\x1f\x7f-\xff"\\]+')
# tag = 1*<any ASTRING-CHAR except "+">
TAG_RE = re.compile(rb'[^(){ \x00-\x1f\x7f-\xff%*"\\+]+')
DIGITS_RE = re.compile(rb"\d+")
# Quoted body: TEXT-CHAR except quoted-specials, or a backslash escape.  8-bit
# octets are tolerated (several clients send UTF-8 passwords quoted).
QUOTED_RE = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
LITERAL_PREFIX_RE = re.compile(rb"\{(\d{1,20})(\+?)\}\Z")


@dataclass(frozen=True, slots=True)
class SpooledLiteral:
    """Stands in a command for a literal the reader streamed out.

    The bytes were delivered as :class:`~.reader.LiteralData` events between
    ``LiteralStart(index=...)`` and ``LiteralEnd``; the server kept them (in a
    spool file, typically) and finds them again by ``index``.
    """

    index: int
    size: int


LiteralValue = bytes | SpooledLiteral


class Cursor:
    """Reads one framed command; every failure is a :class:`BadCommand`."""

    __slots__ = ("_idx", "_lines", "_literals", "line", "pos")

    def __init__(self, lines: list[bytes], literals: list[LiteralValue]) -> None:
        if len(lines) != len(literals) + 1:
            raise ValueError("a command has one more line segment than literals")
        self._lines = lines
        self._literals = literals
        self._idx = 0
        self.line = lines[0]
        self.pos = 0

    # -- position ---------------------------------------------------------
    def peek(self) -> int | None:
        """Next octet of the current line segment, ``None`` at its end."""
        return self.line[self.pos] if self.pos < len(self.line) else None

    def at_end(self) -> bool:
        return self.pos >= len(self.line) and self._idx == len(self._lines) - 1

    def startswith(self, prefix: bytes) -> bool:
        """Case-insensitive look-ahead (keywords are case-insensitive)."""
        return self.line[self.pos : self.pos + len(prefix)].upper() == prefix

    def error(self, message: str) -> BadCommand:
        return BadCommand(message)

    # -- simple tokens ------------------------------------------------------
    def expect(self, octets: bytes) -> None:
        if not self.startswith(octets.upper()):
            raise self.error(f"expected {octets.decode('ascii')!r}")
        self.pos += len(octets)

    def skip(self, octet: bytes) -> bool:
        """Consume ``octet`` if it is next."""
        if self.peek() == octet[0]:
            self.pos += 1
            return True
        return False

    def sp(self) -> None:
        if not self.skip(b" "):
            raise self.error("expected a space")

    def expect_end(self) -> None:
        if not self.at_end():
            raise self.error("unexpected characters at end of command")

    def match(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        m = pattern.match(self.line, self.pos)
        if m is None:
            raise self.error(f"expected {what}")
        self.pos = m.end()
        return m.group(0)

    def atom(self) -> bytes:
        return self.match(ATOM_RE, "an atom")

    def keyword(self) -> str:
        """An atom upper-cased, for case-insensitive keywords."""
        return self.atom().decode("ascii").upper()

    def tag(self) -> str:
        return self.match(TAG_RE, "a tag").decode("ascii")

    def number(self, *, limit: int = 0xFFFFFFFF, nonzero: bool = False) -> int:
        """RFC 3501 ``number`` (32-bit) or a wider limit for mod-sequences."""
        digits = self.match(DIGITS_RE, "a number")
        value = int(digits) if len(digits) <= 20 else limit + 1
        if value > limit or (nonzero and value == 0):
            raise self.error("number out of range")
        return value

    # -- strings ------------------------------------------------------------
    def quoted(self) -> bytes:
        m = QUOTED_RE.match(self.line, self.pos)
        if m is None:
            raise self.error("bad quoted string")
        self.pos = m.end()
        body = m.group(1)
        return body.replace(b"\\\\", b"\\").replace(b'\\"', b'"') if b"\\" in body else body

    def literal(self) -> LiteralValue:
        """A literal announced at the very end of the current line segment."""
        m = LITERAL_PREFIX_RE.match(self.line, self.pos)
        if m is None or self._idx >= len(self._literals):
            raise self.error("bad literal")
        value = self._literals[self._idx]
        self._idx += 1
        self.line = self._lines[self._idx]
        self.pos = 0
        return value

    def string(self) -> bytes:
        """``string = quoted / literal`` held in memory."""
        c = self.peek()
        if c == 0x22:
            return self.quoted()
        if c == 0x7B:
            value = self.literal()
            if isinstance(value, SpooledLiteral):
                raise self.error("literal too large for this argument")
            return value
        raise self.error("expected a string")

    def astring(self) -> bytes:
        c = self.peek()
        if c in (0x22, 0x7B):
            return self.string()
        return self.match(ASTRING_RE, "an atom or a string")

    def nstring(self) -> bytes | None:
        if self.startswith(b"NIL") and not _continues_atom(self.line, self.pos + 3):
            self.pos += 3
            return None
        return self.string()

    def list_mailbox(self) -> bytes:
        """``list-mailbox = 1*list-char / string`` (LIST patterns)."""
        c = self.peek()
        if c in (0x22, 0x7B):
            return self.string()
        return self.match(LIST_CHAR_RE, "a mailbox pattern")


def _continues_atom(line: bytes, pos: int) -> bool:
    return ASTRING_RE.match(line, pos) is not None
