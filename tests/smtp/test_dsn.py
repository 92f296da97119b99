"""RFC 3464 reports (smtp/dsn.py): parsed back with the email package, field by field."""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
from datetime import UTC, datetime, timedelta
from email.message import Message

import pytest

from mssgw.smtp.dsn import (
    DsnReport,
    RecipientReport,
    build_dsn,
    parse_notify,
    wants_notice,
    xtext_decode,
)
from mssgw.smtp.dsn_params import encode_xtext as xtext_encode

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
QUEUED = NOW - timedelta(hours=5)
ORIGINAL = (
    b"From: Claire Dupont <claire.dupont@op1.mssante.test>\r\n"
    b"To: bob@op2.mssante.test\r\n"
    b"Subject: =?utf-8?q?Compte_rendu?=\r\n"
    b"Message-ID: <cr-42@op1.mssante.test>\r\n"
    b"\r\n"
    b"Donnees de sante confidentielles.\r\n"
    b".leading dot line\r\n"
)


def _report(
    *recipients: RecipientReport, ret: str | None = None, envid: str | None = None
) -> DsnReport:
    return DsnReport(
        reporting_mta="mx.op1.mssante.test",
        sender="claire.dupont@op1.mssante.test",
        recipients=recipients,
        date=NOW,
        envid=envid,
        ret=ret,
        arrival_date=QUEUED,
        message_id="<cr-42@op1.mssante.test>",
    )


def _failed(**kw: object) -> RecipientReport:
    values: dict[str, object] = {
        "final_recipient": "bob@op2.mssante.test",
        "action": "failed",
        "status": "5.1.1",
        "reason": "the recipient's server refused the address",
        "remote_mta": "mx.op2.mssante.test",
        "diagnostic": "550 5.1.1 <bob@op2.mssante.test>: no such mailbox",
        "last_attempt": NOW - timedelta(minutes=1),
    }
    values.update(kw)
    return RecipientReport(**values)  # type: ignore[arg-type]


def _subject(msg: Message) -> str:
    return str(email.header.make_header(email.header.decode_header(msg["Subject"])))


def _parse(data: bytes) -> tuple[Message, list[Message]]:
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = msg.get_payload()
    assert isinstance(parts, list) and len(parts) == 3
    return msg, parts


def _status_groups(part: Message) -> list[Message]:
    assert part.get_content_type() == "message/delivery-status"
    groups = part.get_payload()
    assert isinstance(groups, list)
    return groups


def test_failure_report_every_field() -> None:
    data = build_dsn(
        _report(
            _failed(original_recipient="rfc822;bob+2Bcardio@op2.mssante.test"), envid="QX+2B42"
        ),
        ORIGINAL,
    )
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    msg, (text, status, returned) = _parse(data)
    assert msg["To"] == "<claire.dupont@op1.mssante.test>"
    assert msg["From"] == "Mail Delivery System <postmaster@mx.op1.mssante.test>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert "Undelivered" in _subject(msg)
    assert msg["References"] == "<cr-42@op1.mssante.test>"
    assert msg["Message-ID"].endswith("@mx.op1.mssante.test>")
    assert email.utils.parsedate_to_datetime(msg["Date"]) == NOW

    assert text.get_content_type() == "text/plain"
    human = text.get_payload(decode=True).decode("utf-8")
    assert "<bob@op2.mssante.test>" in human
    assert "n'a pas pu être remis" in human and "could not be delivered" in human
    assert "refused the address" in human

    per_message, per_rcpt = _status_groups(status)
    assert per_message["Reporting-MTA"] == "dns; mx.op1.mssante.test"
    assert per_message["Original-Envelope-Id"] == "QX+42"  # xtext decoded
    assert email.utils.parsedate_to_datetime(per_message["Arrival-Date"]) == QUEUED
    assert per_rcpt["Final-Recipient"] == "rfc822; bob@op2.mssante.test"
    assert per_rcpt["Original-Recipient"] == "rfc822;bob+cardio@op2.mssante.test"
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Remote-MTA"] == "dns; mx.op2.mssante.test"
    assert per_rcpt["Diagnostic-Code"] == (
        "smtp; 550 5.1.1 <bob@op2.mssante.test>: no such mailbox"
    )
    assert email.utils.parsedate_to_datetime(per_rcpt["Last-Attempt-Date"]) == NOW - timedelta(
        minutes=1
    )
    assert per_rcpt["Will-Retry-Until"] is None  # only for delayed

    # No RET: headers only, never the (health) content.
    assert returned.get_content_type() == "text/rfc822-headers"
    body = returned.get_payload(decode=True)
    assert b"Message-ID: <cr-42@op1.mssante.test>" in body
    assert b"confidentielles" not in data


def test_ret_full_returns_the_whole_message_on_failure() -> None:
    data = build_dsn(_report(_failed(), ret="FULL"), ORIGINAL)
    _, (_, _, returned) = _parse(data)
    assert returned.get_content_type() == "message/rfc822"
    inner = returned.get_payload()[0]
    assert inner["Message-ID"] == "<cr-42@op1.mssante.test>"
    assert ORIGINAL in data  # byte for byte


def test_ret_hdrs_returns_headers() -> None:
    data = build_dsn(_report(_failed(), ret="HDRS"), ORIGINAL)
    _, (_, _, returned) = _parse(data)
    assert returned.get_content_type() == "text/rfc822-headers"
    assert b"confidentielles" not in data


def test_ret_full_on_a_delay_report_still_returns_headers_only() -> None:
    delayed = RecipientReport(
        "bob@op2.mssante.test",
        "delayed",
        "4.4.1",
        reason="no answer",
        last_attempt=NOW,
        will_retry_until=QUEUED + timedelta(days=5),
    )
    data = build_dsn(_report(delayed, ret="FULL"), ORIGINAL)
    msg, (_, status, returned) = _parse(data)
    assert "Delayed" in _subject(msg)
    assert returned.get_content_type() == "text/rfc822-headers"
    _, rcpt = _status_groups(status)
    assert rcpt["Action"] == "delayed"
    assert rcpt["Status"] == "4.4.1"
    assert email.utils.parsedate_to_datetime(rcpt["Will-Retry-Until"]) == QUEUED + timedelta(days=5)
    assert rcpt["Diagnostic-Code"] is None
    assert rcpt["Remote-MTA"] is None


def test_several_recipients_local_diagnostic_and_folding() -> None:
    long_reason = "peer certificate CN=mx.unlisted.mssante.test,OU=99000000000098 " * 3
    data = build_dsn(
        _report(
            _failed(),
            _failed(
                final_recipient="carol@op2.mssante.test",
                status="4.4.7",
                diagnostic=long_reason,
                diagnostic_type="X-Mssgw",
            ),
        ),
        ORIGINAL,
    )
    _, (_, status, _) = _parse(data)
    _, first, second = _status_groups(status)
    assert first["Final-Recipient"] == "rfc822; bob@op2.mssante.test"
    assert second["Final-Recipient"] == "rfc822; carol@op2.mssante.test"
    assert second["Status"] == "4.4.7"
    unfolded = " ".join(second["Diagnostic-Code"].split())
    assert unfolded == "X-Mssgw; " + " ".join(long_reason.split())
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))


def test_relayed_success_report() -> None:
    relayed = RecipientReport(
        "bob@op2.mssante.test",
        "relayed",
        "2.0.0",
        remote_mta="mx.op2.mssante.test",
        diagnostic="250 2.0.0 OK queued",
        last_attempt=NOW,
    )
    msg, (text, status, _) = _parse(build_dsn(_report(relayed), ORIGINAL))
    assert "Relayed" in _subject(msg)
    _, rcpt = _status_groups(status)
    assert (rcpt["Action"], rcpt["Status"]) == ("relayed", "2.0.0")
    assert "does not confirm delivery" in text.get_payload(decode=True).decode()


def test_boundary_never_collides_with_the_original() -> None:
    data = build_dsn(_report(_failed(), ret="FULL"), ORIGINAL + b"--=_mssgw_\r\n")
    _, parts = _parse(data)
    assert len(parts) == 3


def test_bare_lf_original_is_normalised() -> None:
    data = build_dsn(_report(_failed(), ret="FULL"), ORIGINAL.replace(b"\r\n", b"\n"))
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert ORIGINAL in data


def test_bad_reports_are_refused() -> None:
    with pytest.raises(ValueError, match="RFC 3463"):
        RecipientReport("a@b.test", "failed", "550")
    with pytest.raises(ValueError, match=r"2\.x\.x"):
        RecipientReport("a@b.test", "delivered", "5.0.0")
    with pytest.raises(ValueError, match="null reverse-path"):
        DsnReport("mx", "", [_failed()], NOW)
    with pytest.raises(ValueError, match="at least one"):
        DsnReport("mx", "a@b.test", [], NOW)


@pytest.mark.parametrize(
    ("notify", "action", "sender", "expected"),
    [
        (None, "failed", "a@x.test", True),  # RFC 3461 §4.1 default FAILURE,DELAY
        (None, "delayed", "a@x.test", True),
        (None, "delivered", "a@x.test", False),
        (None, "relayed", "a@x.test", False),
        ("NEVER", "failed", "a@x.test", False),
        ("SUCCESS", "failed", "a@x.test", False),
        ("SUCCESS", "relayed", "a@x.test", True),
        ("SUCCESS", "delivered", "a@x.test", True),
        ("success,failure", "failed", "a@x.test", True),
        ("FAILURE", "delayed", "a@x.test", False),
        ("DELAY", "delayed", "a@x.test", True),
        ("SUCCESS,FAILURE,DELAY", "delayed", "", False),  # never a DSN for a DSN
        (None, "failed", "", False),
    ],
)
def test_notify_table(notify: str | None, action: str, sender: str, expected: bool) -> None:
    assert wants_notice(notify, action, sender=sender) is expected  # type: ignore[arg-type]


def test_notify_parsing_and_xtext_round_trip() -> None:
    assert parse_notify(" success , Delay ") == {"SUCCESS", "DELAY"}
    assert parse_notify("") == {"FAILURE", "DELAY"}
    for value in ("plain", "a+b=c", "é t", "<x@y>"):
        encoded = xtext_encode(value)
        assert all(33 <= ord(c) <= 126 and c != "=" for c in encoded)
        assert xtext_decode(encoded) == value
    assert xtext_encode("a+b=c") == "a+2Bb+3Dc"
    assert xtext_decode("a+2Bb+3dc") == "a+b=c"
