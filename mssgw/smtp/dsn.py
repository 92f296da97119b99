"""Delivery status notifications: RFC 3464 reports, and who gets one (RFC 3461).

Pure: ``build_dsn`` turns a ``DsnReport`` and the original message into the
bytes of a new message; ``wants_notice`` says whether a recipient's NOTIFY
asked for a report of that kind.  The relay worker decides *when* a report
is due and where it goes (the sender's INBOX when the sender is local,
otherwise queued with an empty envelope sender, never a DSN for a DSN).

The report is written byte by byte rather than through ``email.generator``:
the delivery-status part has a fixed grammar (RFC 3464 §2.1, fields, blank
line between groups) and must not be re-folded or re-encoded; the original
message or its headers are appended untouched (CRLF line ends enforced).

Choices where the RFCs leave room, written in ``docs/relay.md``:

* No NOTIFY given → FAILURE,DELAY (RFC 3461 §4.1 leaves the default to the
  MTA and says it "SHOULD" behave as NOTIFY=FAILURE,DELAY).
* No RET given → headers only.  RFC 3461 §4.3 lets the MTA choose; health
  content is not sent back unless the sender asked with RET=FULL.
* RET=FULL returns the whole message in *failed* reports only; delayed,
  delivered and relayed reports carry the headers (RFC 3461 §4.3: FULL asks
  for the message "in any DSN issued for this recipient" of failure).
* ENVID and ORCPT arrive xtext-encoded (RFC 3461 §4, §4.2); the report
  shows them decoded (RFC 3464 §2.2.1, §2.3.1 define them as ``*text``),
  exactly as Postfix does.
"""

from __future__ import annotations

import email.utils
import quopri
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from typing import Literal

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]

#: RFC 3461 §4.1: the default when RCPT had no NOTIFY parameter.
DEFAULT_NOTIFY = frozenset({"FAILURE", "DELAY"})
_NOTIFY_OF: dict[str, str] = {
    "failed": "FAILURE",
    "delayed": "DELAY",
    "delivered": "SUCCESS",
    "relayed": "SUCCESS",
    "expanded": "SUCCESS",
}
_STATUS_RE = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
_XTEXT_HEX = re.compile(r"\+([0-9A-Fa-f]{2})")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_HEADER_END = re.compile(rb"\r?\n\r?\n")


# --------------------------------------------------------------------------- NOTIFY / xtext


def parse_notify(value: str | None) -> frozenset[str]:
    """The NOTIFY keywords of a recipient, upper case; absent → the RFC 3461 default."""
    if not value:
        return DEFAULT_NOTIFY
    return frozenset(part.strip().upper() for part in value.split(",") if part.strip())


def wants_notice(notify: str | None, action: Action, *, sender: str) -> bool:
    """Does this recipient's NOTIFY ask for a report of ``action``?

    Never for a null reverse-path: a DSN is never sent about a DSN
    (RFC 3461 §6.1, RFC 5321 §4.5.5).  NOTIFY=NEVER asks for nothing
    (RFC 3461 §4.1).
    """
    if not sender:
        return False
    keywords = parse_notify(notify)
    if "NEVER" in keywords:
        return False
    return _NOTIFY_OF[action] in keywords


def xtext_decode(value: str) -> str:
    """RFC 3461 §4: ``+XX`` is the octet XX; everything else stands for itself.

    Octets are read as UTF-8 (RFC 6533 lets ORCPT carry UTF-8), invalid ones replaced.
    """
    raw = bytearray()
    pos = 0
    for match in _XTEXT_HEX.finditer(value):
        raw += value[pos : match.start()].encode("utf-8")
        raw.append(int(match.group(1), 16))
        pos = match.end()
    raw += value[pos:].encode("utf-8")
    return raw.decode("utf-8", "replace")


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True, slots=True)
class RecipientReport:
    """Per-recipient fields of RFC 3464 §2.3.

    ``original_recipient``: the ORCPT parameter as received (``rfc822;`` +
    xtext).  ``diagnostic``: what the remote MTA answered (``smtp`` type) or,
    with ``diagnostic_type="X-Mssgw"``, our own reason.  ``reason``: one
    line for people, shown in the text part.
    """

    final_recipient: str
    action: Action
    status: str
    reason: str = ""
    original_recipient: str | None = None
    remote_mta: str | None = None
    diagnostic: str | None = None
    diagnostic_type: str = "smtp"
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None

    def __post_init__(self) -> None:
        if not _STATUS_RE.match(self.status):
            raise ValueError(f"status {self.status!r} is not an RFC 3463 code")
        if self.action in ("delivered", "relayed", "expanded") and self.status[0] != "2":
            raise ValueError(f"action {self.action} needs a 2.x.x status")


@dataclass(frozen=True, slots=True)
class DsnReport:
    """Per-message fields (RFC 3464 §2.2) and the envelope of the original."""

    reporting_mta: str
    sender: str
    recipients: Sequence[RecipientReport]
    date: datetime
    envid: str | None = None
    ret: str | None = None
    arrival_date: datetime | None = None
    message_id: str | None = None

    def __post_init__(self) -> None:
        if not self.recipients:
            raise ValueError("a DSN reports on at least one recipient")
        if not self.sender:
            raise ValueError("no DSN for a null reverse-path (RFC 3461 §6.1)")


_SUBJECTS: dict[str, str] = {
    "failed": "Message non remis / Undelivered Mail Returned to Sender",
    "delayed": "Remise retardée / Delivery Delayed",
    "delivered": "Message remis / Delivery Status Notification (Success)",
    "relayed": "Message relayé / Delivery Status Notification (Relayed)",
    "expanded": "Message remis / Delivery Status Notification (Expanded)",
}
_ORDER: tuple[Action, ...] = ("failed", "delayed", "delivered", "relayed", "expanded")

_FR: dict[str, str] = {
    "failed": "n'a pas pu être remis, définitivement",
    "delayed": "n'a pas encore pu être remis ; nouvelles tentatives en cours",
    "delivered": "a été remis",
    "relayed": "a été transmis à l'opérateur du destinataire, qui ne confirme pas la remise",
    "expanded": "a été remis et redistribué",
}
_EN: dict[str, str] = {
    "failed": "could not be delivered, permanently",
    "delayed": "has not been delivered yet; delivery is still being attempted",
    "delivered": "was delivered",
    "relayed": "was relayed to the recipient's operator, which does not confirm delivery",
    "expanded": "was delivered and expanded",
}


def main_action(report: DsnReport) -> Action:
    """The most serious action in the report: it names the subject."""
    actions = {r.action for r in report.recipients}
    return next(a for a in _ORDER if a in actions)


def build_dsn(report: DsnReport, original: bytes) -> bytes:
    """The complete DSN message (RFC 3464 §2, multipart/report of RFC 6522).

    ``original`` is the reported message as queued; its headers, or all of
    it for a failed recipient with RET=FULL, form the third part.
    """
    original = _BARE_LF.sub(b"\r\n", original)
    boundary = _boundary(original)
    action = main_action(report)
    full = (report.ret or "").upper() == "FULL" and action == "failed"
    head = [
        f"From: Mail Delivery System <postmaster@{report.reporting_mta}>",
        f"To: <{report.sender}>",
        f"Subject: {Header(_SUBJECTS[action], 'utf-8').encode()}",
        f"Date: {email.utils.format_datetime(report.date)}",
        f"Message-ID: <{secrets.token_hex(12)}.dsn@{report.reporting_mta}>",
        # RFC 3834 §5: automatic responses carry Auto-Submitted: auto-replied.
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
    ]
    if report.message_id:
        head.append(f"References: {report.message_id}")
    out = bytearray(_lines(head))
    out += b"\r\nThis is a MIME-encapsulated delivery status notification (RFC 3464).\r\n"
    # Part 1: for people (RFC 6522 §3: the first part is human readable).
    out += f"\r\n--{boundary}\r\n".encode()
    out += _lines(
        [
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
            "Content-Description: Notification",
        ]
    )
    out += b"\r\n" + _qp(_human_text(report))
    # Part 2: for machines (RFC 3464 §2.1).
    out += f"\r\n--{boundary}\r\n".encode()
    out += _lines(["Content-Type: message/delivery-status", "Content-Description: Delivery report"])
    out += b"\r\n" + _delivery_status(report)
    # Part 3: the message or its headers (RFC 3461 §4.3, RFC 6522 §3).
    out += f"\r\n--{boundary}\r\n".encode()
    if full:
        content = original if original.endswith(b"\r\n") else original + b"\r\n"
        kind = ["Content-Type: message/rfc822", "Content-Description: Undelivered message"]
    else:
        content = header_block(original)
        kind = ["Content-Type: text/rfc822-headers", "Content-Description: Message headers"]
    encoding = "8bit" if any(b > 127 for b in content) else "7bit"
    out += _lines([*kind, f"Content-Transfer-Encoding: {encoding}"])
    out += b"\r\n" + content
    out += f"\r\n--{boundary}--\r\n".encode()
    return bytes(out)


def header_block(message: bytes) -> bytes:
    """The header section of ``message`` (up to, not including, the blank line)."""
    match = _HEADER_END.search(message)
    head = message[: match.start()] if match else message
    return head.rstrip(b"\r\n") + b"\r\n"


def _delivery_status(report: DsnReport) -> bytes:
    fields = [f"Reporting-MTA: dns; {report.reporting_mta}"]
    if report.envid:
        fields.append(f"Original-Envelope-Id: {_text(xtext_decode(report.envid))}")
    if report.arrival_date:
        fields.append(f"Arrival-Date: {email.utils.format_datetime(report.arrival_date)}")
    out = bytearray(_lines(fields))
    for r in report.recipients:
        group = [f"Final-Recipient: rfc822; {r.final_recipient}"]
        if r.original_recipient:
            kind, _, address = r.original_recipient.partition(";")
            group.append(f"Original-Recipient: {kind.strip()};{_text(xtext_decode(address))}")
        group += [f"Action: {r.action}", f"Status: {r.status}"]
        if r.remote_mta:
            group.append(f"Remote-MTA: dns; {r.remote_mta}")
        if r.diagnostic:
            group.append(_fold(f"Diagnostic-Code: {r.diagnostic_type}; {_text(r.diagnostic)}"))
        if r.last_attempt:
            group.append(f"Last-Attempt-Date: {email.utils.format_datetime(r.last_attempt)}")
        if r.will_retry_until and r.action == "delayed":
            group.append(f"Will-Retry-Until: {email.utils.format_datetime(r.will_retry_until)}")
        out += b"\r\n" + _lines(group)
    return bytes(out)


def _human_text(report: DsnReport) -> str:
    lines = [
        f"Ceci est un message automatique du serveur {report.reporting_mta}.",
        f"This is an automatic message from {report.reporting_mta}.",
        "",
    ]
    for r in report.recipients:
        lines.append(f"<{r.final_recipient}>:")
        lines.append(f"  Votre message {_FR[r.action]}.")
        lines.append(f"  Your message {_EN[r.action]}.")
        if r.reason:
            lines.append(f"  {r.reason}")
        if r.will_retry_until and r.action == "delayed":
            until = email.utils.format_datetime(r.will_retry_until)
            lines.append(f"  Dernière tentative / last attempt: {until}")
        lines.append("")
    return "\r\n".join(lines)


def _qp(text: str) -> bytes:
    body = quopri.encodestring(text.replace("\r\n", "\n").encode("utf-8"))
    return _BARE_LF.sub(b"\r\n", body.rstrip(b"\n")) + b"\r\n"


def _lines(lines: Sequence[str]) -> bytes:
    return "".join(f"{line}\r\n" for line in lines).encode("ascii")


def _text(value: str) -> str:
    """One line of printable ASCII for a delivery-status field (RFC 3464 §2.1: 7 bit)."""
    flat = " ".join(value.split())
    return flat.encode("ascii", "backslashreplace").decode("ascii")


def _fold(line: str, width: int = 78) -> str:
    """Fold a long field at spaces (RFC 5322 §2.2.3; RFC 3464 fields fold like headers)."""
    if len(line) <= width:
        return line
    out, current = [], ""
    for word in line.split(" "):
        if current and len(current) + 1 + len(word) > width:
            out.append(current)
            current = " " + word
        else:
            current = f"{current} {word}" if current else word
    out.append(current)
    return "\r\n".join(out)


def _boundary(original: bytes) -> str:
    while True:
        boundary = f"=_mssgw_{secrets.token_hex(12)}"
        if boundary.encode() not in original:
            return boundary
