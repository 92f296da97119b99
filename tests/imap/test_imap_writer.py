"""Response building (RFC 3501 §7) and writer -> parser round trips."""

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from mssgw.imap.protocol import writer
from mssgw.imap.protocol.commands import Fetch, Login, Select, Store
from mssgw.imap.protocol.errors import BadCommand, ImapProtocolError
from mssgw.imap.protocol.parser import parse_line
from mssgw.imap.protocol.sequence import SequenceSet

codes = writer.codes


def test_status_responses_and_codes() -> None:
    assert (
        writer.ok("a1", "SELECT completed", codes.READ_WRITE)
        == b"a1 OK [READ-WRITE] SELECT completed\r\n"
    )
    assert writer.ok(None, "UIDs valid", codes.uidvalidity(3857529045)) == (
        b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"
    )
    assert (
        writer.no("a2", "no such folder", codes.TRYCREATE)
        == b"a2 NO [TRYCREATE] no such folder\r\n"
    )
    assert writer.ok("a3", "APPEND done", codes.appenduid(38505, [3955])) == (
        b"a3 OK [APPENDUID 38505 3955] APPEND done\r\n"
    )
    assert (
        codes.copyuid(38505, [304, 319, 320], [3956, 3957, 3958])
        == b"COPYUID 38505 304,319:320 3956:3958"
    )
    # pairing kept when the source order is not ascending (RFC 4315 §3)
    assert codes.copyuid(1, [5, 3, 4], [10, 11, 12]) == b"COPYUID 1 5,3:4 10:12"
    assert (
        codes.permanentflags(["\\Seen", "\\Deleted", "\\*"])
        == b"PERMANENTFLAGS (\\Seen \\Deleted \\*)"
    )
    assert codes.highestmodseq(715194045007) == b"HIGHESTMODSEQ 715194045007"
    assert codes.capability(["IMAP4rev1", "IDLE"]) == b"CAPABILITY IMAP4rev1 IDLE"
    assert codes.modified([7, 9, 8]) == b"MODIFIED 7:9"
    assert writer.bye("server shutting down") == b"* BYE server shutting down\r\n"
    assert writer.bad("a4", "bad\r\ninjection") == b"a4 BAD bad injection\r\n"
    assert writer.continuation() == b"+ Ready\r\n"
    assert writer.continuation_data(b"") == b"+ \r\n"


def test_error_response() -> None:
    assert writer.error_response(BadCommand("oops", tag="t")) == b"t BAD oops\r\n"
    assert (
        writer.error_response(ImapProtocolError("big", tag="t", code="TOOBIG"))
        == b"t NO [TOOBIG] big\r\n"
    )
    assert (
        writer.error_response(BadCommand("line too long", fatal=True)) == b"* BYE line too long\r\n"
    )
    assert writer.error_response(BadCommand("no tag")) == b"* BAD no tag\r\n"


def test_strings() -> None:
    assert writer.string("plain") == b'"plain"'
    assert writer.string('a"b\\c') == b'"a\\"b\\\\c"'
    assert writer.string("é") == b"{2}\r\n\xc3\xa9"
    assert writer.string(b"a\r\nb") == b"{4}\r\na\r\nb"
    assert writer.string("x" * 2000).startswith(b"{2000}\r\n")
    assert writer.nstring(None) == b"NIL"
    assert writer.astring("INBOX") == b"INBOX"
    assert writer.astring("NIL") == b'"NIL"'
    assert writer.astring("") == b'""'
    assert writer.mailbox("inbox") == b"INBOX"
    assert writer.mailbox("Envoyés") == b"Envoy&AOk-s"
    assert writer.mailbox("Mes dossiers") == b'"Mes dossiers"'


def test_data_responses() -> None:
    assert writer.exists(23) == b"* 23 EXISTS\r\n"
    assert writer.expunge(3) == b"* 3 EXPUNGE\r\n"
    assert writer.flags_data(["\\Seen", "$Forwarded"]) == b"* FLAGS (\\Seen $Forwarded)\r\n"
    assert writer.list_data("Envoyés", "/", ["\\HasNoChildren", "\\Sent"]) == (
        b'* LIST (\\HasNoChildren \\Sent) "/" Envoy&AOk-s\r\n'
    )
    assert writer.list_data("INBOX", None, [], kind="LSUB") == b"* LSUB () NIL INBOX\r\n"
    assert writer.list_data("Foo", "/", [], childinfo_subscribed=True).endswith(
        b'Foo ("CHILDINFO" ("SUBSCRIBED"))\r\n'
    )
    assert (
        writer.status_data("INBOX", {"MESSAGES": 3, "UNSEEN": 1})
        == b"* STATUS INBOX (MESSAGES 3 UNSEEN 1)\r\n"
    )
    assert writer.search_data([2, 5], 917162500) == b"* SEARCH 2 5 (MODSEQ 917162500)\r\n"
    assert writer.search_data([]) == b"* SEARCH\r\n"
    assert writer.enabled_data(["CONDSTORE"]) == b"* ENABLED CONDSTORE\r\n"
    assert writer.id_data({"name": "mssgw", "os": None}) == b'* ID ("name" "mssgw" "os" NIL)\r\n'
    assert writer.id_data(None) == b"* ID NIL\r\n"
    assert writer.namespace_data([("", "/")]) == b'* NAMESPACE (("" "/")) NIL NIL\r\n'
    assert (
        writer.capability_data(["IMAP4rev1", "LITERAL+"]) == b"* CAPABILITY IMAP4rev1 LITERAL+\r\n"
    )


def test_internal_date() -> None:
    when = datetime(2024, 2, 5, 9, 8, 7, tzinfo=timezone(-timedelta(hours=1, minutes=30)))
    assert writer.internal_date(when) == b'"05-Feb-2024 09:08:07 -0130"'


def test_fetch_response_chunks_do_not_copy_the_body() -> None:
    body = b"Subject: x\r\n\r\nhello\r\n"
    chunks = writer.fetch_data(
        12,
        [
            (b"UID", b"5"),
            (b"FLAGS", writer.flag_list(["\\Seen"])),
            (b"BODY[]<0>", writer.section_value(body)),
            (b"BODY[9]", writer.section_value(None)),
        ],
    )
    assert any(chunk is body for chunk in chunks)
    assert b"".join(chunks) == (
        b"* 12 FETCH (UID 5 FLAGS (\\Seen) BODY[]<0> {21}\r\n"
        b"Subject: x\r\n\r\nhello\r\n BODY[9] NIL)\r\n"
    )


@settings(settings.get_profile("mssgw-imap"))
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_round_trip_strings_through_login(user: bytes, password: bytes) -> None:
    """What the writer encodes as astring/string parses back to the octets."""
    line = b"t LOGIN " + writer.astring(user) + b" " + writer.string(password)
    assert parse_line(line) == Login("t", user, password)


@settings(settings.get_profile("mssgw-imap"))
@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40))
def test_round_trip_folder_names(name: str) -> None:
    cmd = parse_line(b"t SELECT " + writer.mailbox(name))
    assert isinstance(cmd, Select)
    assert cmd.mailbox.name == ("INBOX" if name.upper() == "INBOX" else name)


@settings(settings.get_profile("mssgw-imap"))
@given(
    st.lists(
        st.tuples(st.integers(1, 10**6), st.integers(1, 10**6) | st.none()), min_size=1, max_size=20
    )
)
def test_round_trip_sequence_sets(ranges: list[tuple[int, int | None]]) -> None:
    seq = SequenceSet(tuple(ranges))
    cmd = parse_line(b"t FETCH " + bytes(seq) + b" FLAGS")
    assert isinstance(cmd, Fetch) and cmd.sequence == seq


@settings(settings.get_profile("mssgw-imap"))
@given(
    st.lists(
        st.sampled_from(
            ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Forwarded", "Junk"]
        ),
        max_size=7,
    )
)
def test_round_trip_flag_lists(flags: list[str]) -> None:
    cmd = parse_line(b"t STORE 1 FLAGS " + writer.flag_list(flags))
    assert isinstance(cmd, Store) and cmd.flags == tuple(flags)
