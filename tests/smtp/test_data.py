"""The DATA reader: end detection, unstuffing, smuggling, limits, any chunking."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mssgw.smtp.data import DataProblem, DataReader, stuff


def run(stream: bytes, cuts: list[int] | None = None, *, max_size: int = 10_000,
        max_line: int = 100) -> tuple[DataReader, bytes, bytes]:
    """Feed ``stream`` cut at ``cuts``; return the reader, content and leftover."""
    reader = DataReader(max_size, max_line)
    content = bytearray()
    leftover = b""
    bounds = sorted({c for c in (cuts or []) if 0 < c < len(stream)})
    pieces = [stream[a:b] for a, b in zip([0, *bounds], [*bounds, len(stream)], strict=True)]
    for i, piece in enumerate(pieces):
        fed = reader.feed(piece)
        content += fed.content
        if fed.done:
            leftover = fed.leftover + b"".join(pieces[i + 1 :])
            break
    return reader, bytes(content), leftover


def reference(stream: bytes, max_size: int, max_line: int) -> tuple[str, bytes, bytes]:
    """A deliberately naive decoder: ("ok"|"error"|"open", content, leftover)."""
    probe = b"\r\n" + stream
    end = probe.find(b"\r\n.\r\n")
    if end < 0:
        return "open", b"", b""
    body, leftover = stream[:end], stream[end + 3 :]
    out = bytearray()
    ok = True
    for line in body.split(b"\r\n")[:-1] if body else []:
        if b"\r" in line or b"\n" in line or len(line) + 2 > max_line + 1:
            ok = False
        out += (line[1:] if line.startswith(b".") else line) + b"\r\n"
    if body and not body.endswith(b"\r\n"):
        ok = False
    if len(out) > max_size:
        ok = False
    return ("ok" if ok else "error"), bytes(out) if ok else b"", leftover


# ---------------------------------------------------------------------- examples


def test_simple_message_and_pipelined_leftover() -> None:
    reader, content, leftover = run(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n")
    assert reader.done and reader.problem is None
    assert content == b"Subject: x\r\n\r\nhello\r\n"
    assert leftover == b"QUIT\r\n"


def test_empty_message() -> None:
    reader, content, leftover = run(b".\r\n")
    assert reader.done and reader.problem is None and content == b"" and leftover == b""


def test_dot_unstuffing_removes_one_dot_only() -> None:
    reader, content, _ = run(b"..\r\n...x\r\n.y\r\nz.\r\n.\r\n")
    assert reader.problem is None
    assert content == b".\r\n..x\r\ny\r\nz.\r\n"


def test_end_marker_split_across_every_boundary() -> None:
    stream = b"a\r\nb\r\n.\r\nNOOP\r\n"
    for cut in range(1, len(stream)):
        _, content, leftover = run(stream, [cut])
        assert (content, leftover) == (b"a\r\nb\r\n", b"NOOP\r\n"), cut


@pytest.mark.parametrize(
    "smuggle",
    [b"\n.\n", b"\r.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r"],
)
def test_smuggling_sequences_never_end_data(smuggle: bytes) -> None:
    """The sequence is swallowed with the message, and so is what it smuggles."""
    stream = (
        b"Subject: a\r\n\r\nbody" + smuggle + b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@y>\r\nDATA\r\n"
        b"smuggled\r\n.\r\nQUIT\r\n"
    )
    for cut in range(1, len(stream), 3):
        reader, content, leftover = run(stream, [cut])
        assert reader.done
        assert reader.problem in (DataProblem.BARE_LF, DataProblem.LONE_CR)
        assert content == b"" or b"MAIL FROM" not in content
        assert leftover == b"QUIT\r\n"


def test_bare_lf_alone_is_refused() -> None:
    reader, _, _ = run(b"line one\nline two\r\n.\r\n")
    assert reader.problem is DataProblem.BARE_LF


def test_lone_cr_at_chunk_end_is_refused() -> None:
    reader, _, leftover = run(b"abc\rdef\r\n.\r\nQUIT\r\n", [4])
    assert reader.problem is DataProblem.LONE_CR and leftover == b"QUIT\r\n"


def test_line_limit_counts_crlf_and_allows_one_dot() -> None:
    ok_line = b"x" * 98 + b"\r\n"  # 100 octets with CRLF: at the limit
    reader, content, _ = run(b"." + ok_line + b".\r\n", max_line=100)
    assert reader.problem is None and content == ok_line
    reader, _, _ = run(b"y" + ok_line + b".\r\n", max_line=100)  # 101, no dot: tolerated
    assert reader.problem is None
    reader, _, leftover = run(b"yy" + ok_line + b".\r\nQUIT\r\n", max_line=100)
    assert reader.problem is DataProblem.LINE_TOO_LONG and leftover == b"QUIT\r\n"


def test_endless_line_is_dropped_not_buffered() -> None:
    reader = DataReader(10_000_000, 1000)
    for _ in range(100):
        assert reader.feed(b"z" * 65536).content == b""
    assert reader.problem is DataProblem.LINE_TOO_LONG
    assert len(reader._tail) == 0  # nothing of the line kept
    fed = reader.feed(b"\r\n.\r\n")
    assert fed.done


def test_size_limit_stops_emitting_and_swallows_the_rest() -> None:
    line = b"a" * 78 + b"\r\n"
    reader = DataReader(max_size=1000, max_line=1000)
    emitted = 0
    for _ in range(100):
        emitted += len(reader.feed(line * 10).content)
    assert reader.problem is DataProblem.TOO_BIG
    assert emitted <= 1000
    fed = reader.feed(b".\r\nRSET\r\n")
    assert fed.done and fed.leftover == b"RSET\r\n" and fed.content == b""


def test_stuff_roundtrip() -> None:
    content = b".a\r\n..\r\nb\r\n"
    _, out, _ = run(stuff(content))
    assert out == content


# ---------------------------------------------------------------------- properties

alphabet = st.sampled_from([b"a", b"b", b".", b"\r", b"\n", b"\r\n", b"\r\n.", b"\r\n.\r\n", b" "])
streams = st.lists(alphabet, max_size=80).map(b"".join)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams, cuts=st.lists(st.integers(0, 200), max_size=6),
       max_line=st.integers(3, 12), max_size=st.integers(0, 60))
def test_any_input_gives_the_reference_result_whatever_the_chunking(
    stream: bytes, cuts: list[int], max_line: int, max_size: int
) -> None:
    reader, content, leftover = run(stream, cuts, max_size=max_size, max_line=max_line)
    verdict, expected, expected_leftover = reference(stream, max_size, max_line)
    if verdict == "open":
        assert not reader.done
        return
    assert reader.done
    assert leftover == expected_leftover
    if verdict == "ok":
        assert reader.problem is None
        assert content == expected
    else:
        assert reader.problem is not None


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.binary(max_size=30).map(lambda b: b.translate(None, b"\r\n")),
                      max_size=20),
       cuts=st.lists(st.integers(0, 800), max_size=8))
def test_stuffed_messages_roundtrip(lines: list[bytes], cuts: list[int]) -> None:
    content = b"".join(line + b"\r\n" for line in lines)
    reader, out, leftover = run(stuff(content) + b"QUIT\r\n", cuts, max_line=40)
    assert reader.problem is None and out == content and leftover == b"QUIT\r\n"


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=8))
def test_arbitrary_bytes_never_crash(data: bytes, cuts: list[int]) -> None:
    reader, content, _ = run(data, cuts, max_size=100, max_line=50)
    assert len(content) <= 100
    if reader.done and reader.problem is None:
        assert b"\r\n.\r\n" in b"\r\n" + data
