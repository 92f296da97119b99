"""Property tests: the reader and the MIME code never fail unexpectedly.

* any bytes, fed in any chunking, give commands/events or
  ``ImapProtocolError`` (never another exception), the same result whatever
  the chunking, with a bounded buffer and no hang (the profile deadline);
* MIME functions never raise on arbitrary or mangled messages, and every
  size they report is the length of the section they would send.
"""

from __future__ import annotations

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mssgw.imap import mime
from mssgw.imap.protocol.commands import Section
from mssgw.imap.protocol.errors import ImapProtocolError
from mssgw.imap.protocol.reader import NEED_DATA, CommandReader

PROFILE = settings.get_profile("mssgw-imap")
MAX_LINE, MAX_LITERAL = 200, 100

FRAGMENTS = st.sampled_from(
    [
        b"a1 ", b"UID ", b"FETCH ", b"SEARCH ", b"STORE ", b"APPEND ", b"LOGIN ", b"LIST ",
        b"SELECT ", b"IDLE", b"AUTHENTICATE ", b"ID ", b"ENABLE ", b"STATUS ", b"COPY ",
        b"1:*", b"$", b"*", b"(", b")", b"[", b"]", b"<0.10>", b"BODY.PEEK[", b"HEADER.FIELDS ",
        b"1.2.MIME", b"FLAGS", b"+FLAGS.SILENT ", b"\\Seen", b'"quo\\"ted"', b'"', b"\\",
        b"{3}\r\nabc", b"{4+}\r\nab\r\n", b"{0}\r\n", b"{101}\r\n", b"{999+}\r\n", b"{5}",
        b"CHARSET UTF-8 ", b"OR ", b"NOT ", b"SINCE 1-Feb-2024", b"\"1-Feb-2024 10:00:00 +0100\"",
        b"(CHANGEDSINCE 5)", b"(UNCHANGEDSINCE 5)", b"RETURN (CHILDREN)", b"INBOX", b"&AOk-",
        b"NIL", b" ", b"\r\n", b"\n", b"DONE\r\n", b"\x00", b"\xff", b"x" * 250,
    ]
)  # fmt: skip
STREAMS = st.one_of(
    st.binary(max_size=600),
    st.lists(FRAGMENTS, max_size=40).map(b"".join),
)


def run(data: bytes, cuts: list[int], spool: int | None) -> list[object]:
    reader = CommandReader(
        max_line_length=MAX_LINE,
        max_literal_size=MAX_LITERAL,
        max_command_size=400,
        spool_threshold=spool,
    )
    results: list[object] = []
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        reader.feed(data[start:end])
        for _ in range(10_000):  # a hang would exhaust this
            try:
                event = reader.next_event()
            except ImapProtocolError as exc:
                results.append(("error", type(exc).__name__, exc.tag, exc.code, exc.fatal))
                if exc.fatal:
                    return results
                continue
            if event is NEED_DATA:
                break
            results.append(event)
        else:
            raise AssertionError("reader does not return NEED_DATA")
        assert len(reader._buf) <= MAX_LINE + 2 + MAX_LITERAL + (end - start)
        # switch modes as a server would, so DONE/SASL lines get exercised
        last = results[-1] if results else None
        if getattr(last, "name", None) == "IDLE" and not reader.in_command:
            reader.start_idle(getattr(last, "tag", ""))
        elif getattr(last, "name", None) == "AUTHENTICATE" and not reader.in_command:
            reader.expect_sasl_response(getattr(last, "tag", ""))
    return results


@PROFILE
@given(STREAMS, st.lists(st.integers(min_value=0), max_size=12), st.sampled_from([None, 2, 50]))
def test_reader_only_yields_events_or_protocol_errors(
    data: bytes, cuts: list[int], spool: int | None
) -> None:
    run(data, cuts, spool)


@PROFILE
@given(STREAMS, st.lists(st.integers(min_value=0), max_size=12))
def test_reader_result_does_not_depend_on_chunking(data: bytes, cuts: list[int]) -> None:
    whole = run(data, [], None)
    chunked = run(data, cuts, None)
    # mode switches happen after each feed in run(), so compare only when no
    # mode-switching command was seen
    if not any(getattr(e, "name", None) in ("IDLE", "AUTHENTICATE") for e in whole):
        assert chunked == whole


def _walk_checks(raw: bytes) -> None:
    root = mime.parse_message(raw)
    env = mime.envelope(raw, root)
    structure = mime.bodystructure(raw, root)
    for node in (env, structure):
        assert json.loads(json.dumps(node)) == node
    mime.render_envelope(json.loads(json.dumps(env)))
    mime.render_bodystructure(json.loads(json.dumps(structure)))
    mime.render_bodystructure(structure, extensible=False)
    header = mime.section(raw, Section(text="HEADER"), root)
    text = mime.section(raw, Section(text="TEXT"), root)
    assert header is not None and text is not None and header + text == raw
    for path, part in mime.walk(root):
        assert part.start <= part.body_start <= part.end <= len(raw)
        body = mime.section(raw, Section(path), root)
        mime_header = mime.section(raw, Section(path, "MIME"), root)
        assert body is not None and mime_header is not None
        assert mime_header + body == raw[part.start : part.end]
        previous = part.body_start
        for child in part.children:
            assert previous <= child.start and child.end <= part.end
            previous = child.end
        mime.section(raw, Section(path, "HEADER.FIELDS", ("Subject", "From")), root)
        mime.section(raw, Section(path, "TEXT"), root)
    _sizes_match(raw, root, structure)


def _sizes_match(raw: bytes, part: mime.Part, node: dict[str, object]) -> None:
    """body-fld-octets equals the part's body; lines count its LFs."""
    if part.is_multipart:
        children = node["parts"]
        assert isinstance(children, list) and len(children) == len(part.children)
        for child, child_node in zip(part.children, children, strict=True):
            _sizes_match(raw, child, child_node)
        return
    assert node["size"] == part.end - part.body_start
    if "lines" in node:
        assert node["lines"] == raw.count(b"\n", part.body_start, part.end)
    if part.message is not None:
        body = node["body"]
        assert isinstance(body, dict)
        _sizes_match(raw, part.message, body)


@st.composite
def mime_messages(draw: st.DrawFn, depth: int = 0) -> bytes:
    """Plausible, often broken, MIME messages."""
    eol = draw(st.sampled_from([b"\r\n", b"\n"]))
    headers = draw(
        st.lists(
            st.sampled_from(
                [
                    b"Subject: =?UTF-8?Q?R=C3=A9sultats?=",
                    b'From: "Dr \xc3\x89lodie" <e@h\xc3\xb4pital.fr>, bad@',
                    b"To: group: a@b, <@r:c@d>;, (comment) x@y",
                    b"Cc: \x00\xff(unterminated",
                    b'Content-Disposition: attachment; filename="IHE_XDM.ZIP"',
                    b"Content-Language: fr, en",
                    b"Content-Transfer-Encoding: base64",
                    b'Content-Type: text/plain; charset="utf-8',
                    b"Content-Type: message/rfc822",
                    b" folded continuation",
                    b"Broken header line",
                ]
            ),
            max_size=4,
        )
    )
    boundary = draw(st.sampled_from([b"b", b"bb", b"=_x", b"b b"]))
    multipart = depth < 3 and draw(st.booleans())
    if multipart:
        headers.append(b'Content-Type: multipart/mixed; boundary="' + boundary + b'"')
    out = eol.join(headers) + eol + eol
    if multipart:
        for _ in range(draw(st.integers(0, 3))):
            out += b"--" + boundary + eol + draw(mime_messages(depth + 1)) + eol
        if draw(st.booleans()):
            out += b"--" + boundary + b"--" + eol
    else:
        out += draw(st.binary(max_size=60))
    if draw(st.booleans()):
        out = out[: draw(st.integers(0, len(out)))]  # truncation anywhere
    return out


@PROFILE
@given(st.binary(max_size=400))
def test_mime_never_raises_on_bytes(raw: bytes) -> None:
    _walk_checks(raw)


@PROFILE
@given(mime_messages())
def test_mime_never_raises_and_sizes_add_up(raw: bytes) -> None:
    _walk_checks(raw)
