"""Every SEARCH key of RFC 3501 §6.4.4 (plus MODSEQ) and every FETCH item."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mssgw.store.delivery import LocalTarget
from mssgw.store.models import Flag
from tests.imap.server_support import Raw, imap_env

ONE = (
    b"From: =?utf-8?q?Ren=C3=A9e?= <renee@op2.mssante.test>\r\nTo: b@op1.mssante.test\r\n"
    b"Cc: c@op1.mssante.test\r\nBcc: secret@op1.mssante.test\r\n"
    b"Subject: =?utf-8?b?UsOpc3VsdGF0cyBiaW9sb2dpZQ==?=\r\n"
    b"Date: Tue, 2 Jan 2024 23:30:00 -0500\r\nX-MSS-NIL: LOGICIEL-1\r\nMessage-ID: <one@test>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nH=C3=A9moglobine normale.\r\n"
)
TWO = (
    b"From: a@op2.mssante.test\r\nTo: b@op1.mssante.test\r\nSubject: courrier\r\n"
    b"Date: Fri, 5 Jan 2024 08:00:00 +0100\r\nMessage-ID: <two@test>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n"
    b"--b1\r\nContent-Type: text/plain\r\n\r\nCorps du courrier\r\n"
    b"--b1\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: x@op3.mssante.test\r\nSubject: interne\r\n\r\nTexte interne\r\n"
    b"--b1--\r\n" + b"z" * 3000 + b"\r\n"
)


async def _setup(env: Any) -> Raw:
    store = env.gw.store
    await store.messages.deliver(
        ONE,
        [LocalTarget(env.per, flags=Flag.SEEN | Flag.ANSWERED, keywords=("$Label1",))],
        internaldate=datetime(2024, 1, 3, 4, 0, tzinfo=UTC),
    )
    await store.messages.deliver(
        TWO,
        [LocalTarget(env.per, flags=Flag.FLAGGED | Flag.DRAFT)],
        internaldate=datetime(2024, 1, 6, 12, 0, tzinfo=UTC),
    )
    raw = await Raw.connect(env.imaps, env.client_context())
    await raw.login(env.per, env.per_password)
    await raw.command("SELECT INBOX")
    return raw


def _literals(criteria: str) -> bytes:
    """Non-ASCII words as LITERAL+ literals, as clients send them with CHARSET UTF-8."""
    out = []
    for word in criteria.split(" "):
        data = word.strip('"').encode()
        out.append(b"{%d+}\r\n" % len(data) + data if not word.isascii() else word.encode())
    return b" ".join(out)


async def test_every_search_key(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    cases = {
        "ALL": "1 2",
        "ANSWERED": "1",
        "UNANSWERED": "2",
        "DELETED": "",
        "UNDELETED": "1 2",
        "DRAFT": "2",
        "UNDRAFT": "1",
        "FLAGGED": "2",
        "UNFLAGGED": "1",
        "SEEN": "1",
        "UNSEEN": "2",
        "NEW": "",
        "OLD": "1 2",
        "RECENT": "",
        "KEYWORD $label1": "1",
        "UNKEYWORD $Label1": "2",
        "BEFORE 4-Jan-2024": "1",
        "ON 3-Jan-2024": "1",
        "SINCE 4-Jan-2024": "2",
        "SENTBEFORE 3-Jan-2024": "1",
        "SENTON 2-Jan-2024": "1",
        "SENTSINCE 3-Jan-2024": "2",
        "FROM renée": "1",
        "TO b@op1": "1 2",
        "CC c@op1": "1",
        "BCC secret": "1",
        "SUBJECT résultats": "1",
        'HEADER X-MSS-NIL ""': "1",
        "HEADER X-MSS-NIL logiciel": "1",
        "BODY hémoglobine": "1",
        "BODY interne": "2",
        "TEXT renee@op2": "1",
        "LARGER 1000": "2",
        "SMALLER 1000": "1",
        "UID 2": "2",
        "2": "2",
        "1:*": "1 2",
        "NOT SEEN": "2",
        "OR ANSWERED FLAGGED": "1 2",
        "(SEEN ANSWERED) KEYWORD $Label1": "1",
    }
    async with imap_env(tmp_path, trust_space) as env:
        raw = await _setup(env)
        for criteria, expected in cases.items():
            lines = await raw.command(b"SEARCH CHARSET UTF-8 " + _literals(criteria))
            assert lines[0] == f"* SEARCH{' ' if expected else ''}{expected}\r\n".encode(), criteria
        lines = await raw.command("UID SEARCH MODSEQ 1")
        assert re.fullmatch(rb"\* SEARCH 1 2 \(MODSEQ \d+\)\r\n", lines[0])
        lines = await raw.command("SEARCH CHARSET KOI8-R ALL")
        assert b"NO [BADCHARSET" in lines[-1]
        await raw.close()


async def test_every_fetch_item(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    async with imap_env(tmp_path, trust_space) as env:
        raw = await _setup(env)
        lines = await raw.command("FETCH 2 (UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ)")
        assert re.fullmatch(
            rb"\* 2 FETCH \(UID 2 FLAGS \(\\Flagged \\Draft\) "
            rb'INTERNALDATE "06-Jan-2024 12:00:00 \+0000"'
            rb" RFC822.SIZE %d MODSEQ \(\d+\)\)\r\n" % len(TWO),
            lines[0],
        ), lines[0]
        lines = await raw.command("FETCH 2 (ENVELOPE BODY BODYSTRUCTURE)")
        assert b'"courrier"' in lines[0] and b'("text" "plain"' in lines[0]
        assert b'"message" "rfc822"' in lines[0] and b'"interne"' in lines[0]
        lines = await raw.command("FETCH 2 (BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[1])")
        assert b"BODY[2.HEADER] {" in lines[0] and b"Subject: interne\r\n\r\n" in lines[0]
        assert b"BODY[2.TEXT] {13}\r\nTexte interne " in lines[0]
        assert b"BODY[1] {17}\r\nCorps du courrier)" in lines[0]
        not_fields = "From To Date Message-ID MIME-Version Content-Type"
        lines = await raw.command(
            f"FETCH 2 (BODY.PEEK[2.1] BODY.PEEK[3] BODY.PEEK[HEADER.FIELDS.NOT ({not_fields})])"
        )
        assert b"BODY[2.1] {13}\r\nTexte interne " in lines[0]
        assert b"BODY[3] NIL" in lines[0]
        assert (
            f"BODY[HEADER.FIELDS.NOT ({not_fields})] {{21}}\r\nSubject: courrier\r\n\r\n".encode()
            in lines[0]
        )
        lines = await raw.command("FETCH 2 (BODY.PEEK[TEXT]<0.10> BODY.PEEK[]<5000.10>)")
        assert b"BODY[TEXT]<0> {10}\r\n--b1\r\nCont" in lines[0]
        assert b"BODY[]<5000> {0}\r\n" in lines[0]
        lines = await raw.command("FETCH 1 (RFC822.HEADER RFC822.TEXT)")
        assert (
            b"RFC822.HEADER {" in lines[0]
            and b"RFC822.TEXT {27}\r\nH=C3=A9moglobine normale.\r\n" in lines[0]
        )
        lines = await raw.command("FETCH 2 (RFC822)")
        assert b"RFC822 {%d}\r\n" % len(TWO) in lines[0]
        assert b"\\Seen" in lines[0]  # RFC822 sets \Seen, reported with the data
        lines = await raw.command("FETCH 1:2 (FLAGS) (CHANGEDSINCE 1)")
        assert all(b"MODSEQ" in line for line in lines[:-1])
        lines = await raw.command("FETCH 1 FAST")
        assert b"INTERNALDATE" in lines[0] and b"RFC822.SIZE" in lines[0]
        lines = await raw.command("FETCH 1 FULL")
        assert b"ENVELOPE" in lines[0] and b"BODY (" in lines[0]
        await raw.close()
