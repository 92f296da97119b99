"""What our own users may send (SPEC FLOW-2, PAT-1, PAT-4, BAL-2).

Pure functions over facts the submission edge gathers (the mailboxes an
identity may use, the recipient's mailbox state, whether its domain is on the
liste blanche, what the directory replica says).  Every refusal happens at
MAIL or RCPT time, never as a later bounce: a message that could not leave
the trust space is never accepted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from mssgw.policy.decision import Decision
from mssgw.policy.patient import check_patient_address, check_patient_sender

DirectoryAnswer = Literal["found", "absent", "unavailable", "not_checked"]
Route = Literal["local", "remote", "none"]


@dataclass(frozen=True)
class SubmissionRules:
    """Operator choices (``[submission]`` in the configuration)."""

    patient_domain: str = "patient.mssante.fr"
    patient_allow_app: bool = False
    #: A remote address absent from the directory replica: accept (and trace), or refuse.
    #: Accept is the default because unlisted (liste rouge) BALs exist (BAL-2).
    unknown_remote: Literal["accept", "refuse"] = "accept"


@dataclass(frozen=True)
class RecipientFacts:
    """What is known of one RCPT TO address when the rule runs."""

    address: str
    hosted: bool
    local_state: str | None = None
    listed: bool = False
    directory: DirectoryAnswer = "not_checked"


@dataclass(frozen=True)
class RecipientVerdict:
    decision: Decision
    route: Route
    patient: bool = False


def check_sender(mail_from: str, usable: Iterable[str]) -> Decision:
    """MAIL FROM must be a mailbox the authenticated identity may send as (FLOW-2)."""
    sender = mail_from.strip().lower()
    if not sender:
        return Decision.reject(553, "5.7.1", "an empty sender is reserved for notifications")
    if sender not in {u.lower() for u in usable}:
        return Decision.reject(
            553, "5.7.1", f"you may not send as {sender}: not a mailbox you own or are delegated to"
        )
    return Decision.accept(f"sender {sender}")


def check_header_from(from_addresses: Iterable[str], usable: Iterable[str]) -> Decision:
    """The header From (RFC 5322 §3.6.2) must name mailboxes the identity may use."""
    allowed = {u.lower() for u in usable}
    found = [a.strip().lower() for a in from_addresses if a.strip()]
    if not found:
        return Decision.reject(553, "5.7.1", "the message has no From header address")
    for address in found:
        if address not in allowed:
            return Decision.reject(
                553, "5.7.1", f"header From {address} is not a mailbox you may send as"
            )
    return Decision.accept()


def check_recipient(
    facts: RecipientFacts, rules: SubmissionRules, *, sender_type: str
) -> RecipientVerdict:
    """Where a recipient goes, or why it is refused (FLOW-2, PAT-1, PAT-4)."""
    address = facts.address.lower()
    domain = address.rsplit("@", 1)[-1]
    if facts.hosted:
        return RecipientVerdict(_local(address, facts.local_state), "local")
    if not facts.listed:
        return _refused(
            domain == rules.patient_domain,
            550,
            "5.7.1",
            f"domain {domain} is not in the MSSante trust space (liste blanche)",
        )
    if domain == rules.patient_domain:
        decision = check_patient_address(address)
        if decision.ok:
            decision = check_patient_sender(sender_type, allow_app=rules.patient_allow_app)
        return RecipientVerdict(decision, "remote" if decision.ok else "none", patient=True)
    if facts.directory == "unavailable":
        return _refused_temp(451, "4.4.3", "directory replica unavailable, try again later")
    if facts.directory == "absent" and rules.unknown_remote == "refuse":
        return _refused(False, 550, "5.1.1", f"{address} is not in the MSSante directory")
    return RecipientVerdict(Decision.accept(f"remote recipient {address}"), "remote")


def _local(address: str, state: str | None) -> Decision:
    if state is None or state == "deleted":
        return Decision.reject(550, "5.1.1", f"no such mailbox {address}")
    if state == "suspended":
        return Decision.reject(550, "5.2.1", f"mailbox {address} is suspended")
    return Decision.accept(f"local recipient {address}")


def _refused(patient: bool, code: int, enhanced: str, reason: str) -> RecipientVerdict:
    return RecipientVerdict(Decision.reject(code, enhanced, reason), "none", patient)


def _refused_temp(code: int, enhanced: str, reason: str) -> RecipientVerdict:
    return RecipientVerdict(Decision.tempfail(code, enhanced, reason), "none")


def size_limit(patient_recipients: bool, *, general: int, patient: int) -> int:
    """FLOW-6: a message with any patient recipient is capped at the patient limit."""
    return min(general, patient) if patient_recipients else general
