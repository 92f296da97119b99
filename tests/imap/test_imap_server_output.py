"""The driver's output and TLS plumbing (sans-socket parts)."""

from __future__ import annotations

from mssgw.imap import server


def test_coalesce_joins_small_chunks_and_passes_big_ones() -> None:
    big = b"x" * server.COALESCE
    chunks = [b"* 1 FETCH (", b"{3}\r\n", b"abc", b")\r\n", big, b"a", b"b"]
    out = server.coalesce(chunks)
    assert out == [b"* 1 FETCH ({3}\r\nabc)\r\n", big, b"ab"]
    assert out[1] is big  # never copied
    assert b"".join(out) == b"".join(chunks)
    assert server.coalesce([]) == []
