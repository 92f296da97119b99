"""ENVELOPE/BODYSTRUCTURE against published Dovecot vectors, and sections.

The Dovecot vectors (src/lib-imap/test-imap-bodystructure.c and
test-imap-envelope.c, which copies imaptest) use LF line endings and count
CRLF "virtual" sizes; fed with CRLF line endings our physical sizes must be
identical, byte for byte.
"""

from __future__ import annotations

import pytest

from mssgw.imap import mime
from mssgw.imap.protocol.commands import Section


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


DOVECOT_BODYSTRUCTURE = [
    (
        "From: user@domain.org\nDate: Sat, 24 Mar 2017 23:00:00 +0200\nMime-Version: 1.0\n"
        "Content-Type: text/plain; charset=us-ascii\n\nbody\n",
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL)',
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1)',
    ),
    (
        "From: user@domain.org\nDate: Sat, 24 Mar 2017 23:00:00 +0200\nMime-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nbody\n\n",
        '("text" "plain" ("charset" "utf-8") NIL NIL "8bit" 8 2 NIL NIL NIL NIL)',
        '("text" "plain" ("charset" "utf-8") NIL NIL "8bit" 8 2)',
    ),
    (
        "From: user@domain.org\nDate: Sat, 24 Mar 2007 23:00:00 +0200\nMime-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="foo\n bar"\n\n--foo bar\n'
        "Content-Type: text/x-myown; charset=us-ascii\n\nhello\n\n--foo bar--\n\n",
        '(("text" "x-myown" ("charset" "us-ascii") NIL NIL "7bit" 7 1 NIL NIL NIL NIL) "mixed" '
        '("boundary" "foo bar") NIL NIL NIL)',
        '(("text" "x-myown" ("charset" "us-ascii") NIL NIL "7bit" 7 1) "mixed")',
    ),
    (
        "From: user@domain.org\nDate: Sat, 24 Mar 2017 23:00:00 +0200\nMime-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="foo bar"\n\n--foo bar\n'
        "Content-Type: text/plain; charset=us-ascii\nContent-ID: <A.frop.example.com>\n"
        "Content-Description: Container message\n\nSee attached...\n\n--foo bar\n"
        "Content-Type: message/rfc822\nContent-ID: <B.frop.example.com>\n"
        "Content-Description: Forwarded\n\nFrom: user@domain.org\n"
        "Date: Sat, 24 Mar 2017 23:00:00 +0200\nMime-Version: 1.0\n"
        "Content-Type: text/plain; charset=us-ascii\n\nbody\n\n--foo bar--\n",
        '(("text" "plain" ("charset" "us-ascii") "<A.frop.example.com>" "Container message" '
        '"7bit" 17 1 NIL NIL NIL NIL)("message" "rfc822" NIL "<B.frop.example.com>" "Forwarded" '
        '"7bit" 133 ("Sat, 24 Mar 2017 23:00:00 +0200" NIL ((NIL NIL "user" "domain.org")) '
        '((NIL NIL "user" "domain.org")) ((NIL NIL "user" "domain.org")) NIL NIL NIL NIL NIL) '
        '("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL) 6 NIL NIL NIL '
        'NIL) "mixed" ("boundary" "foo bar") NIL NIL NIL)',
        '(("text" "plain" ("charset" "us-ascii") "<A.frop.example.com>" "Container message" '
        '"7bit" 17 1)("message" "rfc822" NIL "<B.frop.example.com>" "Forwarded" "7bit" 133 '
        '("Sat, 24 Mar 2017 23:00:00 +0200" NIL ((NIL NIL "user" "domain.org")) ((NIL NIL "user" '
        '"domain.org")) ((NIL NIL "user" "domain.org")) NIL NIL NIL NIL NIL) ("text" "plain" '
        '("charset" "us-ascii") NIL NIL "7bit" 6 1) 6) "mixed")',
    ),
    (
        'Content-Type: multipart/mixed; boundary="foo"\n\n',
        '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed" '
        '("boundary" "foo") NIL NIL NIL)',
        '(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")',
    ),
    (
        'Content-Type: multipart/mixed; boundary="foo bar"\n\n--foo bar\n'
        'Content-Type: text/plain; charset=us-ascii; format="flowed";\n  delsp="no"\n'
        "Content-Language: la\n\nLorem\n\n--foo bar\nContent-Type: image/png\n"
        "Content-Transfer-Encoding: base64\n"
        'Content-Disposition: attachment; filename="pigeon.png"\n\niVBORw0K\n--foo bar--\n',
        '(("text" "plain" ("charset" "us-ascii" "format" "flowed" "delsp" "no") NIL NIL "7bit" 7 1 '
        'NIL NIL ("la") NIL)("image" "png" NIL NIL NIL "base64" 8 NIL ("attachment" ("filename" '
        '"pigeon.png")) NIL NIL) "mixed" ("boundary" "foo bar") NIL NIL NIL)',
        '(("text" "plain" ("charset" "us-ascii" "format" "flowed" "delsp" "no") NIL NIL "7bit" 7 1)'
        '("image" "png" NIL NIL NIL "base64" 8) "mixed")',
    ),
]


@pytest.mark.parametrize(("message", "structure", "body"), DOVECOT_BODYSTRUCTURE)
def test_dovecot_bodystructure_vectors(message: str, structure: str, body: str) -> None:
    raw = crlf(message)
    node = mime.bodystructure(raw)
    assert mime.render_bodystructure(node).decode() == structure
    assert mime.render_bodystructure(node, extensible=False).decode() == body


IMAPTEST_ENVELOPES = [
    (
        "Message-ID: <msg@id>\nIn-Reply-To: <reply@to.id>\nDate: Thu, 15 Feb 2007 01:02:03 +0200\n"
        "Subject: subject header\nFrom: From Real <fromuser@fromdomain.org>\n"
        "To: To Real <touser@todomain.org>\nCc: Cc Real <ccuser@ccdomain.org>\n"
        "Bcc: Bcc Real <bccuser@bccdomain.org>\n"
        "Sender: Sender Real <senderuser@senderdomain.org>\n"
        "Reply-To: ReplyTo Real <replytouser@replytodomain.org>\n\nbody\n",
        '("Thu, 15 Feb 2007 01:02:03 +0200" "subject header" (("From Real" NIL "fromuser" '
        '"fromdomain.org")) (("Sender Real" NIL "senderuser" "senderdomain.org")) (("ReplyTo Real" '
        'NIL "replytouser" "replytodomain.org")) (("To Real" NIL "touser" "todomain.org")) '
        '(("Cc Real" NIL "ccuser" "ccdomain.org")) (("Bcc Real" NIL "bccuser" "bccdomain.org")) '
        '"<reply@to.id>" "<msg@id>")',
    ),
    (
        "Date: Thu, 15 Feb 2007 01:02:03 +0200\nFrom: user@domain (Real Name)\n"
        "To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\n"
        "Cc: group:;, group2: (foo) ;\n\nbody\n",
        '("Thu, 15 Feb 2007 01:02:03 +0200" NIL (("Real Name" NIL "user" "domain")) (("Real Name" '
        'NIL "user" "domain")) (("Real Name" NIL "user" "domain")) ((NIL NIL "group" NIL)(NIL NIL '
        '"g1" "d1.org")(NIL NIL "g2" "d2.org")(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL "g3" '
        '"d3.org")(NIL NIL NIL NIL)) ((NIL NIL "group" NIL)(NIL NIL NIL NIL)(NIL NIL "group2" NIL)'
        "(NIL NIL NIL NIL)) NIL NIL NIL)",
    ),
    (
        "Date: Thu, 15 Feb 2007 01:02:03 +0200\nFrom: user@domain (Real Name)\nSender: \n"
        "Reply-To: \n\nbody\n",
        '("Thu, 15 Feb 2007 01:02:03 +0200" NIL (("Real Name" NIL "user" "domain")) (("Real Name" '
        'NIL "user" "domain")) (("Real Name" NIL "user" "domain")) NIL NIL NIL NIL NIL)',
    ),
    (
        "Date: Thu, 15 Feb 2007 01:02:03 +0200\nFrom: <@route:user@domain>\n\nbody\n",
        '("Thu, 15 Feb 2007 01:02:03 +0200" NIL ((NIL "@route" "user" "domain")) ((NIL "@route" '
        '"user" "domain")) ((NIL "@route" "user" "domain")) NIL NIL NIL NIL NIL)',
    ),
]


@pytest.mark.parametrize(("message", "expected"), IMAPTEST_ENVELOPES)
def test_imaptest_envelope_vectors(message: str, expected: str) -> None:
    raw = crlf(message)
    assert mime.render_envelope(mime.envelope(raw)).decode() == expected


NESTED = crlf(
    "Subject: outer\nContent-Type: multipart/mixed; boundary=o\n\n--o\n"
    "Content-Type: text/plain\n\none\n--o\nContent-Type: message/rfc822\n\n"
    "Subject: inner\nX-Mss-Ins: 1\nContent-Type: multipart/alternative; boundary=i\n\n"
    "--i\nContent-Type: text/plain\n\nplain\n--i\nContent-Type: text/html\n\n<p>html</p>\n"
    "--i--\n--o--\n"
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (Section((1,)), b"one"),
        (Section((1,), "MIME"), b"Content-Type: text/plain\r\n\r\n"),
        (Section((2,), "MIME"), b"Content-Type: message/rfc822\r\n\r\n"),
        (
            Section((2,), "HEADER.FIELDS", ("subject", "X-MSS-INS")),
            b"Subject: inner\r\nX-Mss-Ins: 1\r\n\r\n",
        ),
        (Section((2,), "HEADER.FIELDS.NOT", ("Content-Type", "Subject")), b"X-Mss-Ins: 1\r\n\r\n"),
        (Section((2, 1)), b"plain"),
        (Section((2, 2)), b"<p>html</p>"),
        (Section((2, 2), "MIME"), b"Content-Type: text/html\r\n\r\n"),
        (Section((), "HEADER.FIELDS", ("Subject",)), b"Subject: outer\r\n\r\n"),
        (Section((), "HEADER.FIELDS", ("Nope",)), b"\r\n"),
        (Section((3,)), None),
        (Section((1, 1)), None),
        (Section((1,), "TEXT"), None),  # TEXT needs a message/rfc822 part
        (Section((2, 3)), None),
    ],
)
def test_sections(spec: Section, expected: bytes | None) -> None:
    assert mime.section(NESTED, spec) == expected


def test_section_text_of_rfc822_part_and_whole_message() -> None:
    text = mime.section(NESTED, Section((2,), "TEXT"))
    assert text is not None and text.startswith(b"--i\r\n") and text.endswith(b"--i--")
    assert mime.section(NESTED, Section()) == NESTED
    header = mime.section(NESTED, Section(text="HEADER")) or b""
    body = mime.section(NESTED, Section(text="TEXT")) or b""
    assert header + body == NESTED


def test_single_part_message_numbering() -> None:
    raw = crlf("Subject: s\n\nhello\n")
    assert mime.section(raw, Section((1,))) == b"hello\r\n"
    assert mime.section(raw, Section((1,), "MIME")) == b"Subject: s\r\n\r\n"
    assert mime.section(raw, Section((2,))) is None


def test_partial() -> None:
    assert mime.partial(b"0123456789", 2, 3) == b"234"
    assert mime.partial(b"0123456789", 8, 65536) == b"89"
    assert mime.partial(b"0123456789", 20, 5) == b""


def test_header_field_without_final_newline_gets_one() -> None:
    raw = b"Subject: a\r\nX: b"
    assert mime.section(raw, Section((), "HEADER.FIELDS", ("X",))) == b"X: b\r\n\r\n"


def test_boundary_prefix_of_another_is_not_a_delimiter() -> None:
    raw = crlf(
        "Content-Type: multipart/mixed; boundary=abc\n\n--abc\n"
        "Content-Type: multipart/mixed; boundary=abcdef\n\n--abcdef\n\ninner\n--abcdef--\n"
        "--abc--\n"
    )
    root = mime.parse_message(raw)
    assert [p for p, _ in mime.walk(root)] == [(1,), (1, 1)]
    assert mime.section(raw, Section((1, 1))) == b"inner"


def test_deep_nesting_is_bounded() -> None:
    depth = 500
    head = "".join(
        f"Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n" for i in range(depth)
    )
    raw = crlf(head + "x\n")
    node = mime.bodystructure(raw)
    assert mime.render_bodystructure(node).startswith(b"((")
