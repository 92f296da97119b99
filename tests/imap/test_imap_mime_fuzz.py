"""Any message bytes give an ENVELOPE and a BODYSTRUCTURE, quickly.

Every delivery computes them (``imap.cache.annotate``), on whatever a peer
sent: an exception or a hang there would refuse or stall delivery.  A stray
``)`` in an address header once looped for ever.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mssgw.imap import mime
from mssgw.imap.cache import annotate

RICH = (
    b"From: Dr A <a@op2.mssante.test>\r\nTo: \"B, C\" <b@op1.mssante.test>, (x) d@e\r\n"
    b"Cc: group: e@f, g@h;\r\nSubject: =?UTF-8?B?w6k=?= et =?ISO-8859-1?Q?caf=E9?=\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
    b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"
    b"--XX\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@y\r\n"
    b"Content-Type: multipart/alternative; boundary=YY\r\n\r\n"
    b"--YY\r\nContent-Type: text/html\r\n\r\n<b>x</b>\r\n--YY--\r\n"
    b"--XX\r\nContent-Type: application/zip; name=IHE_XDM.ZIP\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b'Content-Disposition: attachment; filename="IHE_XDM.ZIP"\r\n\r\nUEsDBA==\r\n--XX--\r\n'
)
PIECES = [
    b"\r\n", b"\n", b"\r", b"--", b"XX", b"YY", b";", b"=", b'"', b":", b" ", b"\t", b"(",
    b")", b"<", b">", b"@", b",", b"\\", b"[", b"]", b"=?", b"?=", b"?B?", b"?Q?", b"\x00",
    b"\xff", b"Content-Type: multipart/mixed; boundary=", b"message/rfc822",
]  # fmt: skip

EDIT = st.tuples(
    st.floats(min_value=0, max_value=1),
    st.integers(min_value=0, max_value=20),
    st.sampled_from(PIECES) | st.binary(max_size=4),
)


@contextlib.contextmanager
def no_hang(seconds: float = 2.0) -> Iterator[None]:
    """Fail (instead of hanging the suite) if the block runs longer than ``seconds``."""

    def expired(*_: Any) -> None:
        raise AssertionError(f"still running after {seconds} s: a parser loops")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def mutate(data: bytes, edits: list[tuple[float, int, bytes]]) -> bytes:
    out = bytearray(data)
    for where, cut, insert in edits:
        at = int(where * len(out))
        out[at : at + cut] = insert
    return bytes(out)


def test_stray_parenthesis_in_an_address_header() -> None:
    raw = b"From: a@b\r\nTo: )c@d\r\n\r\nhello\r\n"
    with no_hang():
        assert mime.envelope(raw, mime.parse_message(raw))["to"] == [[None, None, "c", "d"]]


@settings(max_examples=400, deadline=2000)
@given(edits=st.lists(EDIT, min_size=1, max_size=6))
def test_any_damaged_message_is_annotated(edits: list[tuple[float, int, bytes]]) -> None:
    raw = mutate(RICH, edits)
    with no_hang():
        meta = annotate(raw)
        root = mime.parse_message(raw)
        paths = [path for path, _part in mime.walk(root)]
        structure = mime.render_bodystructure(mime.bodystructure(raw, root))
        envelope = mime.render_envelope(mime.envelope(raw, root))
    assert meta.envelope.startswith("{") and meta.bodystructure
    assert all(mime.find_part(root, path) is not None for path in paths)
    assert structure.startswith(b"(") and envelope.startswith(b"(")
