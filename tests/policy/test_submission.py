"""Submission rules (SPEC FLOW-2, PAT-1, PAT-4), table by table."""

from __future__ import annotations

import pytest

from mssgw.policy.patient import ins_key
from mssgw.policy.submission import (
    RecipientFacts,
    SubmissionRules,
    check_header_from,
    check_recipient,
    check_sender,
    size_limit,
)

USABLE = {"jean.dupont@op1.mssante.test", "secretariat@op1.mssante.test"}
INS = "1841276451089" + f"{ins_key('1841276451089'):02d}"


@pytest.mark.parametrize(
    ("mail_from", "code"),
    [
        ("jean.dupont@op1.mssante.test", 250),
        ("Jean.Dupont@OP1.mssante.test", 250),
        ("secretariat@op1.mssante.test", 250),
        ("boss@op1.mssante.test", 553),
        ("", 553),
        ("jean.dupont@op2.mssante.test", 553),
    ],
)
def test_sender(mail_from: str, code: int) -> None:
    decision = check_sender(mail_from, USABLE)
    assert decision.smtp_code == code
    if code == 553:
        assert decision.enhanced == "5.7.1"


def test_header_from() -> None:
    assert check_header_from(["jean.dupont@op1.mssante.test"], USABLE).ok
    spoof = check_header_from(["jean.dupont@op1.mssante.test", "boss@op1.mssante.test"], USABLE)
    assert (spoof.smtp_code, spoof.enhanced) == (553, "5.7.1") and "boss@" in spoof.reason
    assert check_header_from([], USABLE).smtp_code == 553


R = SubmissionRules()
STRICT = SubmissionRules(unknown_remote="refuse")


@pytest.mark.parametrize(
    ("facts", "rules", "sender_type", "expected", "route"),
    [
        (RecipientFacts("a@op1.mssante.test", True, "active"), R, "PER", (250, "2.0.0"), "local"),
        (RecipientFacts("a@op1.mssante.test", True, None), R, "PER", (550, "5.1.1"), "local"),
        (RecipientFacts("a@op1.mssante.test", True, "deleted"), R, "PER", (550, "5.1.1"), "local"),
        (
            RecipientFacts("a@op1.mssante.test", True, "suspended"),
            R,
            "PER",
            (550, "5.2.1"),
            "local",
        ),
        (
            RecipientFacts("b@op2.mssante.test", False, listed=True),
            R,
            "PER",
            (250, "2.0.0"),
            "remote",
        ),
        (RecipientFacts("b@gmail.com", False, listed=False), R, "PER", (550, "5.7.1"), "none"),
        (
            RecipientFacts("b@op2.mssante.test", False, listed=True, directory="absent"),
            R,
            "PER",
            (250, "2.0.0"),
            "remote",
        ),
        (
            RecipientFacts("b@op2.mssante.test", False, listed=True, directory="absent"),
            STRICT,
            "PER",
            (550, "5.1.1"),
            "none",
        ),
        (
            RecipientFacts("b@op2.mssante.test", False, listed=True, directory="unavailable"),
            R,
            "PER",
            (451, "4.4.3"),
            "none",
        ),
        (
            RecipientFacts(f"{INS}@patient.mssante.fr", False, listed=True),
            R,
            "PER",
            (250, "2.0.0"),
            "remote",
        ),
        (
            RecipientFacts("123@patient.mssante.fr", False, listed=True),
            R,
            "PER",
            (553, "5.1.3"),
            "none",
        ),
        (
            RecipientFacts(f"{INS}@patient.mssante.fr", False, listed=True),
            R,
            "APP",
            (550, "5.7.1"),
            "none",
        ),
        (
            RecipientFacts(f"{INS}@patient.mssante.fr", False, listed=True),
            SubmissionRules(patient_allow_app=True),
            "APP",
            (250, "2.0.0"),
            "remote",
        ),
        (
            RecipientFacts(f"{INS}@patient.mssante.fr", False, listed=False),
            R,
            "PER",
            (550, "5.7.1"),
            "none",
        ),
    ],
)
def test_recipients(
    facts: RecipientFacts,
    rules: SubmissionRules,
    sender_type: str,
    expected: tuple[int, str],
    route: str,
) -> None:
    verdict = check_recipient(facts, rules, sender_type=sender_type)
    assert (verdict.decision.smtp_code, verdict.decision.enhanced) == expected
    assert verdict.route == route
    assert verdict.patient == facts.address.endswith("@patient.mssante.fr")


def test_patient_size_cap() -> None:
    assert size_limit(True, general=50_000_000, patient=25_000_000) == 25_000_000
    assert size_limit(False, general=50_000_000, patient=25_000_000) == 50_000_000
    assert size_limit(True, general=10_000_000, patient=25_000_000) == 10_000_000
