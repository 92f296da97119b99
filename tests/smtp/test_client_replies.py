"""The relay client's sans-IO reply parser (RFC 5321 §4.2): any server line is
a reply, a continuation, or ``ProtocolError``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mssgw.smtp.client import ProtocolError, ReplyParser


def test_multiline_reply() -> None:
    parser = ReplyParser()
    assert parser.feed(b"250-mx.op2.mssante.test\r\n") is None
    assert parser.feed(b"250-PIPELINING\r\n") is None
    reply = parser.feed(b"250 DSN\r\n")
    assert reply is not None and reply.code == 250
    assert reply.lines == ("mx.op2.mssante.test", "PIPELINING", "DSN")


@pytest.mark.parametrize(
    "line",
    [b"\xc2\xb2\xc2\xb2\xc2\xb2 superscript digits\r\n", b"\xd9\xa3\xd9\xa3\xd9\xa3 x\r\n",
     b"25 short\r\n", b"2500 four digits\r\n", b"199 too low\r\n", b"abc\r\n", b"\r\n"],
)
def test_lines_that_are_not_smtp(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        ReplyParser().feed(line)


@given(st.lists(st.binary(max_size=40), max_size=5))
def test_any_lines_parse_or_raise_protocol_error(lines: list[bytes]) -> None:
    parser = ReplyParser()
    try:
        for line in lines:
            parser.feed(line)
    except ProtocolError:
        pass
