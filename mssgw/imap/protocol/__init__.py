"""Sans-IO IMAP4rev1 protocol core: command reader/parser and response writer.

No sockets, no store: bytes in, typed values out (and the reverse), in the
style of h11.  See ``docs/imap-protocol.md`` for the server loop.
"""

from . import commands, search, utf7, writer
from .commands import Command, FetchAttribute, MailboxName, Section
from .errors import BadCommand, ImapProtocolError
from .lexer import SpooledLiteral
from .parser import parse_line
from .reader import (
    NEED_DATA,
    CommandReader,
    Event,
    IdleDone,
    LiteralData,
    LiteralEnd,
    LiteralStart,
    NeedContinuation,
    NeedData,
    SaslResponse,
)
from .sequence import SequenceSet

__all__ = [
    "NEED_DATA",
    "BadCommand",
    "Command",
    "CommandReader",
    "Event",
    "FetchAttribute",
    "IdleDone",
    "ImapProtocolError",
    "LiteralData",
    "LiteralEnd",
    "LiteralStart",
    "MailboxName",
    "NeedContinuation",
    "NeedData",
    "SaslResponse",
    "Section",
    "SequenceSet",
    "SpooledLiteral",
    "commands",
    "parse_line",
    "search",
    "utf7",
    "writer",
]
