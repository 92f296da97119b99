"""Framing: literals, limits, pipelining, IDLE and SASL modes."""

from __future__ import annotations

import pytest

from mssgw.imap.protocol import commands as c
from mssgw.imap.protocol.errors import BadCommand, ImapProtocolError
from mssgw.imap.protocol.lexer import SpooledLiteral
from mssgw.imap.protocol.reader import (
    NEED_DATA,
    CommandReader,
    Event,
    IdleDone,
    LiteralData,
    LiteralEnd,
    LiteralStart,
    NeedContinuation,
    SaslResponse,
)


def drain(reader: CommandReader) -> list[Event | ImapProtocolError]:
    """Every event until NEED_DATA, errors included in order."""
    out: list[Event | ImapProtocolError] = []
    while True:
        try:
            event = reader.next_event()
        except ImapProtocolError as exc:
            out.append(exc)
            if exc.fatal:
                return out
            continue
        if event is NEED_DATA:
            return out
        out.append(event)


def test_pipelined_commands_and_byte_by_byte() -> None:
    data = b"a1 NOOP\r\na2 LOGIN {3}\r\nbob {2+}\r\npw\r\n\r\na3 LOGOUT\n"
    reader = CommandReader()
    reader.feed(data)
    whole = drain(reader)
    assert whole == [
        c.Noop("a1"),
        NeedContinuation("a2", 3),
        c.Login("a2", b"bob", b"pw"),
        c.Logout("a3"),
    ]
    reader = CommandReader()
    events: list[Event | ImapProtocolError] = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        events += drain(reader)
    assert events == whole


def test_sync_literal_over_limit_refused_before_continuation() -> None:
    reader = CommandReader(max_literal_size=100)
    reader.feed(b"a1 APPEND INBOX {101}\r\na2 NOOP\r\n")
    events = drain(reader)
    assert isinstance(events[0], ImapProtocolError)
    assert events[0].code == "TOOBIG" and events[0].status == "NO" and events[0].tag == "a1"
    assert events[1:] == [c.Noop("a2")]  # no NeedContinuation was ever produced


def test_sync_literal_too_big_for_other_commands_is_bad() -> None:
    reader = CommandReader(max_literal_size=10)
    reader.feed(b"a1 LOGIN {11}\r\n")
    events = drain(reader)
    assert isinstance(events[0], BadCommand) and events[0].code == "TOOBIG"


def test_nonsync_literal_over_limit_is_discarded_exactly() -> None:
    """RFC 7888 §4: the octets arrive anyway; they are skipped, never parsed."""
    reader = CommandReader(max_literal_size=10)
    evil = b"a9 DELETE INBOX\r\n"  # inside the literal: must not run
    reader.feed(b"a1 APPEND INBOX {%d+}\r\n" % (len(evil) + 3) + evil[:5])
    assert drain(reader) == []
    assert len(reader._buf) == 0  # discarded, not buffered
    reader.feed(evil[5:] + b"xyz {3+}\r\nabc\r\na2 NOOP\r\n")
    events = drain(reader)
    assert isinstance(events[0], ImapProtocolError) and events[0].code == "TOOBIG"
    assert events[0].tag == "a1"
    assert events[1:] == [c.Noop("a2")]


def test_nonsync_refusal_then_sync_literal_in_same_command() -> None:
    reader = CommandReader(max_literal_size=4)
    reader.feed(b"a1 LOGIN {5+}\r\nhello {2}\r\na2 NOOP\r\n")
    events = drain(reader)
    assert isinstance(events[0], ImapProtocolError) and events[1:] == [c.Noop("a2")]


def test_unknown_command_with_literal_refused_without_continuation() -> None:
    reader = CommandReader()
    reader.feed(b"a1 FROB {3}\r\na2 FROB {4+}\r\nabcd\r\na3 NOOP\r\n")
    events = drain(reader)
    assert [type(e) for e in events] == [BadCommand, BadCommand, c.Noop]
    assert [getattr(e, "tag", None) for e in events] == ["a1", "a2", "a3"]


def test_line_too_long_is_fatal_and_bounded() -> None:
    reader = CommandReader(max_line_length=50)
    reader.feed(b"a1 NOOP " + b"x" * 100)
    events = drain(reader)
    assert isinstance(events[-1], ImapProtocolError) and events[-1].fatal
    reader.feed(b"\r\na2 NOOP\r\n")
    with pytest.raises(ImapProtocolError):
        reader.next_event()
    assert len(reader._buf) == 0


def test_line_exactly_at_limit_is_accepted() -> None:
    line = b"a1 LOGIN " + b"u" * 20 + b" " + b"p" * 20
    reader = CommandReader(max_line_length=len(line))
    reader.feed(line + b"\r\n")
    assert isinstance(drain(reader)[0], c.Login)


def test_command_size_limit_counts_literals() -> None:
    reader = CommandReader(max_literal_size=100, max_command_size=60)
    reader.feed(b"a1 LOGIN {30+}\r\n" + b"u" * 30 + b" {30+}\r\n" + b"p" * 30 + b"\r\na2 NOOP\r\n")
    events = drain(reader)
    assert isinstance(events[0], ImapProtocolError) and events[0].code == "TOOBIG"
    assert events[1:] == [c.Noop("a2")]


def test_huge_literal_number() -> None:
    reader = CommandReader()
    reader.feed(b"a1 APPEND INBOX {99999999999999999999}\r\na2 NOOP\r\n")
    events = drain(reader)
    assert isinstance(events[0], ImapProtocolError) and not events[0].fatal
    assert events[1:] == [c.Noop("a2")]
    reader = CommandReader()
    reader.feed(b"a1 APPEND INBOX {99999999999999999999+}\r\n")
    assert drain(reader)[0].fatal  # type: ignore[union-attr]


def test_append_spooling_streams_without_buffering() -> None:
    reader = CommandReader(spool_threshold=8)
    message = b"Subject: hi\r\n\r\nbody\r\n"
    reader.feed(b"a1 APPEND INBOX (\\Seen) {%d}\r\n" % len(message))
    assert drain(reader) == [
        NeedContinuation("a1", len(message)),
        LiteralStart("a1", "APPEND", 0, len(message)),
    ]
    reader.feed(message[:10])
    assert drain(reader) == [LiteralData(message[:10])]
    reader.feed(message[10:] + b"\r\n")
    events = drain(reader)
    assert events[:2] == [LiteralData(message[10:]), LiteralEnd(0)]
    assert events[2] == c.Append(
        "a1", c.MailboxName(b"INBOX", "INBOX"), SpooledLiteral(0, len(message)), ("\\Seen",)
    )


def test_spooled_literal_where_a_string_is_needed_is_bad() -> None:
    reader = CommandReader(spool_threshold=4)
    reader.feed(b"a1 LOGIN {5+}\r\nhello x\r\n")
    events = drain(reader)
    assert isinstance(events[-1], BadCommand) and events[-1].tag == "a1"


def test_reject_literal() -> None:
    reader = CommandReader()
    reader.feed(b"a1 APPEND Nowhere {5}\r\n")
    assert drain(reader) == [NeedContinuation("a1", 5)]
    reader.reject_literal()
    reader.feed(b"a2 NOOP\r\n")
    assert drain(reader) == [c.Noop("a2")]
    with pytest.raises(RuntimeError):
        reader.reject_literal()


def test_idle_done_mode() -> None:
    reader = CommandReader()
    reader.feed(b"a1 IDLE\r\nDONE\r\na2 NOOP\r\n")
    assert reader.next_event() == c.Idle("a1")
    reader.start_idle("a1")
    assert reader.next_event() == IdleDone("a1")
    assert reader.next_event() == c.Noop("a2")
    reader.feed(b"a3 IDLE\r\nNOPE\r\n")
    assert reader.next_event() == c.Idle("a3")
    reader.start_idle("a3")
    with pytest.raises(BadCommand) as info:
        reader.next_event()
    assert info.value.tag == "a3"


def test_sasl_mode() -> None:
    reader = CommandReader()
    reader.feed(b"a1 AUTHENTICATE PLAIN\r\nAGJvYgBwdw==\r\na2 AUTHENTICATE LOGIN\r\n*\r\n")
    assert reader.next_event() == c.Authenticate("a1", "PLAIN")
    reader.expect_sasl_response("a1")
    assert reader.next_event() == SaslResponse("a1", b"\0bob\0pw")
    assert reader.next_event() == c.Authenticate("a2", "LOGIN")
    reader.expect_sasl_response("a2")
    assert reader.next_event() == SaslResponse("a2", None)
    reader.feed(b"a3 AUTHENTICATE PLAIN\r\n@@@\r\n")
    reader.next_event()
    reader.expect_sasl_response("a3")
    with pytest.raises(BadCommand):
        reader.next_event()


def test_mode_switch_only_between_commands() -> None:
    reader = CommandReader()
    reader.feed(b"a1 LOGIN {3}\r\n")
    reader.next_event()
    assert reader.in_command
    with pytest.raises(RuntimeError):
        reader.start_idle("a1")


def test_parse_error_resynchronises() -> None:
    reader = CommandReader()
    reader.feed(b"a1 FETCH x FLAGS\r\na2 NOOP\r\n")
    events = drain(reader)
    assert isinstance(events[0], BadCommand) and events[0].tag == "a1"
    assert events[1] == c.Noop("a2")
