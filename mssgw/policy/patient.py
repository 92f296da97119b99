"""Patient addresses of Mon espace santé (SPEC PAT-1, PAT-4, FLOW-6).

A patient is written to at ``<INS matricule>@patient.mssante.fr``.  The
matricule is the 15-character NIR or NIA: 13 characters then a two-digit
key, ``key = 97 - (number mod 97)``, where the Corsican department codes
``2A`` and ``2B`` count as ``19`` and ``18`` for the computation.  An
address that fails this check is refused at RCPT (``553 5.1.3``) before the
message ever leaves the operator.
"""

from __future__ import annotations

import re

from mssgw.policy.decision import Decision

PATIENT_DOMAIN = "patient.mssante.fr"

# 1 sex/kind digit, 2 year, 2 month, 2 department (digits or 2A/2B), 3 commune,
# 3 order, 2 key.  The first digit: 1/2 (NIR), 3/4 (provisional NIR of people born
# abroad), 7/8 (NIA, temporary registration number).
_MATRICULE = re.compile(r"^([123478])(\d{4})(\d{2}|2[AB])(\d{6})(\d{2})$")
_CORSICA = {"2A": "19", "2B": "18"}


def ins_key(first13: str) -> int:
    """The control key of the first 13 characters (``2A``/``2B`` counted as 19/18)."""
    first13 = first13.upper()
    digits = first13[:5] + _CORSICA.get(first13[5:7], first13[5:7]) + first13[7:]
    return 97 - int(digits) % 97


def is_valid_matricule(text: str) -> bool:
    """True for a well-formed INS matricule whose key matches (SPEC PAT-1)."""
    candidate = text.upper()
    match = _MATRICULE.match(candidate)
    if match is None:
        return False
    return ins_key(candidate[:13]) == int(match.group(5))


def check_patient_address(address: str) -> Decision:
    """RCPT rule for ``…@patient.mssante.fr`` (the caller has checked the domain)."""
    local = address.rsplit("@", 1)[0]
    if not is_valid_matricule(local):
        return Decision.reject(
            553,
            "5.1.3",
            f"{address}: the local part must be the patient's 15-character INS matricule "
            "(NIR or NIA with its key)",
        )
    return Decision.accept(f"patient address {address}")


def check_patient_sender(sender_type: str, *, allow_app: bool) -> Decision:
    """SPEC PAT-4: PER, ORG and CAB mailboxes write to patients; APP only if allowed."""
    if sender_type in ("PER", "ORG", "CAB") or (sender_type == "APP" and allow_app):
        return Decision.accept()
    return Decision.reject(
        550,
        "5.7.1",
        f"a {sender_type} mailbox may not write to patients (Mon espace sante); "
        "use a personal, organisational or practice mailbox",
    )
