"""Command grammar: RFC 3501 §9 and the extensions Thunderbird uses."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from mssgw.imap.protocol import commands as c
from mssgw.imap.protocol import search as s
from mssgw.imap.protocol.errors import BadCommand, ImapProtocolError
from mssgw.imap.protocol.parser import parse_line
from mssgw.imap.protocol.sequence import SequenceSet


def mb(name: str, raw: bytes | None = None) -> c.MailboxName:
    return c.MailboxName(raw if raw is not None else name.encode(), name)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"a CAPABILITY", c.Capability("a")),
        (b"a noop", c.Noop("a")),
        (b"a LOGOUT", c.Logout("a")),
        (b"a STARTTLS", c.StartTLS("a")),
        (b"a CHECK", c.Check("a")),
        (b"a CLOSE", c.Close("a")),
        (b"a UNSELECT", c.Unselect("a")),
        (b"a EXPUNGE", c.Expunge("a")),
        (b"a UID EXPUNGE 3:5", c.Expunge("a", SequenceSet(((3, 5),)))),
        (b"a IDLE", c.Idle("a")),
        (b"a NAMESPACE", c.Namespace("a")),
        (b'a LOGIN bob "p\\"w\\\\d"', c.Login("a", b"bob", b'p"w\\d')),
        (b"a LOGIN {3+}\r\nbob {2+}\r\npw", c.Login("a", b"bob", b"pw")),
        (b"a AUTHENTICATE PLAIN", c.Authenticate("a", "PLAIN")),
        (b"a AUTHENTICATE plain =", c.Authenticate("a", "PLAIN", b"")),
        (b"a AUTHENTICATE PLAIN AGJvYgBwdw==", c.Authenticate("a", "PLAIN", b"\0bob\0pw")),
        (b"a ENABLE CONDSTORE utf8=accept", c.Enable("a", ("CONDSTORE", "UTF8=ACCEPT"))),
        (b"a SELECT inbox", c.Select("a", mb("INBOX", b"inbox"))),
        (b"a SELECT INBOX (CONDSTORE)", c.Select("a", mb("INBOX"), condstore=True)),
        (b'a EXAMINE "Envoy&AOk-s"', c.Examine("a", mb("Envoyés", b"Envoy&AOk-s"))),
        (b"a CREATE Archives/2024", c.Create("a", mb("Archives/2024"))),
        (b"a CREATE Poubelle (USE (\\Trash))", c.Create("a", mb("Poubelle"), ("\\Trash",))),
        (b"a DELETE foo", c.Delete("a", mb("foo"))),
        (b"a RENAME foo bar", c.Rename("a", mb("foo"), mb("bar"))),
        (b"a SUBSCRIBE foo", c.Subscribe("a", mb("foo"))),
        (b"a UNSUBSCRIBE foo", c.Unsubscribe("a", mb("foo"))),
        (b'a LSUB "" *', c.Lsub("a", mb(""), mb("*"))),
        (
            b"a STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ)",
            c.Status(
                "a", mb("INBOX"), ("MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ")
            ),
        ),
        (b"a COPY 1:3 Trash", c.Copy("a", SequenceSet(((1, 3),)), mb("Trash"))),
        (b"a UID MOVE 4,7 Trash", c.Move("a", SequenceSet(((4, 4), (7, 7))), mb("Trash"), True)),
        (b"a ID NIL", c.Id("a", None)),
        (
            b'a ID ("name" "Thunderbird" "version" "115.0")',
            c.Id("a", (("name", "Thunderbird"), ("version", "115.0"))),
        ),
    ],
)
def test_commands(line: bytes, expected: c.Command) -> None:
    assert parse_line(line) == expected


def test_list_plain_and_extended() -> None:
    assert parse_line(b'a LIST "" "*"') == c.List("a", mb(""), (mb("*"),))
    assert parse_line(b'a LIST "" %') == c.List("a", mb(""), (mb("%"),))
    # Thunderbird: LIST (SPECIAL-USE) "" "*" and the RETURN forms
    cmd = parse_line(
        b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("*" "Envoy&AOk-s") '
        b"RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN))"
    )
    assert isinstance(cmd, c.List)
    assert cmd.extended and cmd.selection == {"SUBSCRIBED", "RECURSIVEMATCH"}
    assert [p.name for p in cmd.patterns] == ["*", "Envoyés"]
    assert cmd.return_children and cmd.return_special_use and not cmd.return_subscribed
    assert cmd.return_status == ("MESSAGES", "UNSEEN")
    assert parse_line(b'a LIST "" "*" RETURN (SPECIAL-USE)') == c.List(
        "a", mb(""), (mb("*"),), return_special_use=True, extended=True
    )


@pytest.mark.parametrize(
    "line",
    [
        b'a LIST (RECURSIVEMATCH) "" "*"',  # RFC 5258 §3: needs a base option
        b'a LIST (BOGUS) "" "*"',
        b'a LIST "" "*" RETURN (BOGUS)',
        b'a LIST "" ()',
    ],
)
def test_list_errors(line: bytes) -> None:
    with pytest.raises(BadCommand):
        parse_line(line)


def test_append_with_flags_date_and_literal() -> None:
    cmd = parse_line(
        b'a APPEND Drafts (\\Draft \\seen $Label1) "5-Feb-2024 09:08:07 -0130" {5}\r\nhello'
    )
    assert cmd == c.Append(
        "a",
        mb("Drafts"),
        b"hello",
        ("\\Draft", "\\Seen", "$Label1"),
        datetime(2024, 2, 5, 9, 8, 7, tzinfo=timezone(-timedelta(hours=1, minutes=30))),
    )
    assert parse_line(b'a APPEND INBOX " 5-Feb-2024 09:08:07 +0000" {0}\r\n') == c.Append(
        "a", mb("INBOX"), b"", (), datetime(2024, 2, 5, 9, 8, 7, tzinfo=UTC)
    )
    assert "hello" not in repr(cmd)


@pytest.mark.parametrize(
    "line",
    [b'a APPEND INBOX "hello"', b'a APPEND INBOX "31-Feb-2024 00:00:00 +0000" {1}\r\nx'],
)
def test_append_errors(line: bytes) -> None:
    with pytest.raises(BadCommand):
        parse_line(line)


def body(
    section: c.Section, partial: tuple[int, int] | None = None, peek: bool = False
) -> c.FetchAttribute:
    return c.FetchAttribute("BODY", section, partial, peek)


def test_fetch_attributes() -> None:
    cmd = parse_line(
        b'a UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (From To "Subject")] '
        b"BODY.PEEK[]<0.65536> BODY[2.MIME] BODY[1.2.TEXT] BODY[3] BODYSTRUCTURE BODY "
        b"ENVELOPE INTERNALDATE MODSEQ RFC822 RFC822.HEADER RFC822.TEXT) (CHANGEDSINCE 12345)"
    )
    assert isinstance(cmd, c.Fetch)
    assert cmd.uid and cmd.changedsince == 12345 and cmd.sequence == SequenceSet(((1, None),))
    atts = cmd.attributes
    assert atts[3] == body(c.Section((), "HEADER.FIELDS", ("From", "To", "Subject")), peek=True)
    assert atts[4] == body(c.Section(), (0, 65536), peek=True)
    assert atts[5] == body(c.Section((2,), "MIME"))
    assert atts[6] == body(c.Section((1, 2), "TEXT"))
    assert atts[7] == body(c.Section((3,)))
    assert [a.name for a in atts[8:]] == [
        "BODYSTRUCTURE", "BODY", "ENVELOPE", "INTERNALDATE", "MODSEQ", "RFC822",
        "RFC822.HEADER", "RFC822.TEXT",
    ]  # fmt: skip
    # RFC 3501 §7.4.2: the partial is answered with its origin only, no PEEK
    assert atts[4].response_name() == b"BODY[]<0>"
    assert atts[3].response_name() == b"BODY[HEADER.FIELDS (From To Subject)]"
    assert not atts[4].sets_seen and atts[5].sets_seen and not atts[0].sets_seen


@pytest.mark.parametrize(
    ("macro", "names"),
    [
        ("ALL", ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"]),
        ("FAST", ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]),
        ("full", ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]),
    ],
)
def test_fetch_macros(macro: str, names: list[str]) -> None:
    cmd = parse_line(b"a FETCH 1 " + macro.encode())
    assert isinstance(cmd, c.Fetch)
    assert [a.name for a in cmd.attributes] == names and cmd.macro == macro.upper()


@pytest.mark.parametrize(
    "line",
    [
        b"a FETCH 1 (BODY[MIME])",  # MIME needs a part
        b"a FETCH 1 (BODY[0])",
        b"a FETCH 1 (BODY[1.])",
        b"a FETCH 1 (BODY[]<0.0>)",
        b"a FETCH 1 (BODY[HEADER.FIELDS ()])",
        b"a FETCH 1 (BOGUS)",
        b"a FETCH 1 ()",
        b"a FETCH 0 FLAGS",
        b"a FETCH 1 FLAGS (CHANGEDSINCE 0)",
    ],
)
def test_fetch_errors(line: bytes) -> None:
    with pytest.raises(BadCommand):
        parse_line(line)


def test_store_forms() -> None:
    assert parse_line(b"a STORE 1 FLAGS (\\Seen)") == c.Store(
        "a", SequenceSet(((1, 1),)), "replace", ("\\Seen",)
    )
    assert parse_line(b"a UID STORE 2:4 +FLAGS.SILENT \\Deleted $Junk") == c.Store(
        "a", SequenceSet(((2, 4),)), "add", ("\\Deleted", "$Junk"), silent=True, uid=True
    )
    assert parse_line(b"a STORE $ (UNCHANGEDSINCE 320162338) -FLAGS ()") == c.Store(
        "a", SequenceSet(saved=True), "remove", (), unchangedsince=320162338
    )
    with pytest.raises(BadCommand):
        parse_line(b"a STORE 1 FLAGZ (\\Seen)")


def test_search_every_rfc3501_key() -> None:
    cmd = parse_line(
        b"a SEARCH ALL ANSWERED BCC x BEFORE 1-Feb-2024 BODY y CC z DELETED DRAFT FLAGGED "
        b'FROM "a b" HEADER X-MSS-Ins 123 KEYWORD $Urgent LARGER 10 NEW NOT SEEN OLD '
        b'ON "2-Mar-2024" OR RECENT UNSEEN SENTBEFORE 3-Apr-2024 SENTON 4-May-2024 '
        b"SENTSINCE 5-Jun-2024 SINCE 6-Jul-2024 SMALLER 99 SUBJECT hi TEXT t TO u UID 1:* "
        b"UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNKEYWORD $Old 2,4:5 (SEEN FLAGGED) MODSEQ 7"
    )
    assert isinstance(cmd, c.Search)
    keys = cmd.criteria.keys if isinstance(cmd.criteria, s.And) else ()
    assert keys[:4] == (
        s.AllKey(),
        s.FlagKey("\\Answered"),
        s.HeaderKey("Bcc", "x"),
        s.DateKey("INTERNAL", "BEFORE", date(2024, 2, 1)),
    )
    assert s.HeaderKey("X-MSS-Ins", "123") in keys
    assert s.And((s.FlagKey("\\Recent"), s.FlagKey("\\Seen", False))) in keys  # NEW
    assert s.Not(s.FlagKey("\\Seen")) in keys
    assert s.FlagKey("\\Recent", False) in keys  # OLD
    assert s.Or(s.FlagKey("\\Recent"), s.FlagKey("\\Seen", False)) in keys
    assert s.SequenceKey(SequenceSet(((1, None),)), uid=True) in keys
    assert s.SequenceKey(SequenceSet(((2, 2), (4, 5)))) in keys
    assert s.And((s.FlagKey("\\Seen"), s.FlagKey("\\Flagged"))) in keys
    assert s.SizeKey("LARGER", 10) in keys and s.SizeKey("SMALLER", 99) in keys
    assert s.FlagKey("$Urgent") in keys and s.FlagKey("$Old", False) in keys
    assert s.DateKey("SENT", "ON", date(2024, 5, 4)) in keys
    assert s.TextKey("BODY", "y") in keys and s.TextKey("TEXT", "t") in keys
    assert keys[-1] == s.ModSeqKey(7)


def test_search_charset_and_literal() -> None:
    cmd = parse_line(b"a UID SEARCH CHARSET UTF-8 SUBJECT {9}\r\nr\xc3\xa9sultat")
    assert cmd == c.Search("a", s.HeaderKey("Subject", "résultat"), "UTF-8", uid=True)
    cmd = parse_line(b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338')
    assert cmd == c.Search("a", s.ModSeqKey(620162338, "/flags/\\draft", "ALL"))


def test_search_bad_charset_is_no_with_code() -> None:
    with pytest.raises(ImapProtocolError) as info:
        parse_line(b"t1 SEARCH CHARSET ISO-8859-1 SUBJECT x")
    assert not isinstance(info.value, BadCommand)
    assert info.value.code == "BADCHARSET (US-ASCII UTF-8)" and info.value.tag == "t1"


@pytest.mark.parametrize(
    "line",
    [
        b"a SEARCH",
        b"a SEARCH BOGUS",
        b"a SEARCH (SEEN",
        b"a SEARCH OR SEEN",
        b"a SEARCH SINCE 31-Feb-2024",
        b"a SEARCH SINCE 1-Foo-2024",
        b"a SEARCH CHARSET UTF-8 SUBJECT {1}\r\n\xff",
        b"a SEARCH RETURN (MIN) ALL",
        b"a SEARCH " + b"NOT " * 100 + b"ALL",
    ],
)
def test_search_errors(line: bytes) -> None:
    with pytest.raises(BadCommand):
        parse_line(line)


@pytest.mark.parametrize(
    ("line", "tag"),
    [
        (b"", None),
        (b"a", "a"),
        (b"+tag NOOP", None),
        (b"a FOO", "a"),
        (b"a NOOP extra", "a"),
        (b"a  NOOP", "a"),
        (b'a LOGIN "unterminated', "a"),
        (b'a LOGIN "bad\\escape" x', "a"),
        (b"a SELECT", "a"),
        (b"a SELECT INBOX (QRESYNC)", "a"),
        (b"a STATUS INBOX (BOGUS)", "a"),
        (b"a ENABLE", "a"),
        (b"a AUTHENTICATE PLAIN @@@", "a"),
        (b"a UID FOO 1", "a"),
    ],
)
def test_syntax_errors_carry_the_tag(line: bytes, tag: str | None) -> None:
    with pytest.raises(BadCommand) as info:
        parse_line(line)
    assert info.value.tag == tag


def test_bad_mailbox_name_is_no() -> None:
    with pytest.raises(ImapProtocolError) as info:
        parse_line(b"a SELECT &AGE-")
    assert info.value.status == "NO" and info.value.tag == "a"
