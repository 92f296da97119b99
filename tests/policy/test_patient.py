"""INS matricule checks (SPEC PAT-1), table by table."""

from __future__ import annotations

import pytest

from mssgw.policy.patient import (
    check_patient_address,
    check_patient_sender,
    ins_key,
    is_valid_matricule,
)


def _with_key(first13: str) -> str:
    return f"{first13}{ins_key(first13):02d}"


@pytest.mark.parametrize(
    ("first13", "key"),
    [
        # 1 84 12 76 451 089 -> key computed by hand: 1841276451089 mod 97 = 51, 97 - 51 = 46
        ("1841276451089", 46),
        # Corsica: 2A counts as 19 -> 2 55 08 19 004 005 ... 2550819004005 mod 97
        ("255082A004005", 97 - 2550819004005 % 97),
        ("255082B004005", 97 - 2550818004005 % 97),
    ],
)
def test_key_computation(first13: str, key: int) -> None:
    assert ins_key(first13) == key


@pytest.mark.parametrize(
    ("local", "valid"),
    [
        (_with_key("1841276451089"), True),
        (_with_key("2550899123456"), True),
        (_with_key("255082A004005"), True),
        (_with_key("255082b004005").upper(), True),
        (_with_key("7990199000001"), True),  # NIA
        ("184127645108900", False),  # key 00 never matches (keys are 1..97)
        (_with_key("1841276451089")[:-1] + "0", False),  # wrong key
        ("5841276451089" + "11", False),  # 5 is not a valid first digit
        ("18412764510", False),  # too short
        (_with_key("1841276451089") + "1", False),  # too long
        ("1841276451O8946", False),  # letter O in the number
        ("255082C004005" + "42", False),  # 2C is not a department
        ("", False),
    ],
)
def test_matricule_validity(local: str, valid: bool) -> None:
    assert is_valid_matricule(local) is valid


def test_patient_rcpt_decisions() -> None:
    good = f"{_with_key('1841276451089')}@patient.mssante.fr"
    assert check_patient_address(good).ok
    bad = check_patient_address("jean.dupont@patient.mssante.fr")
    assert (bad.smtp_code, bad.enhanced) == (553, "5.1.3")
    assert "INS matricule" in bad.reason


@pytest.mark.parametrize(
    ("sender_type", "allow_app", "ok"),
    [
        ("PER", False, True),
        ("ORG", False, True),
        ("CAB", False, True),
        ("APP", False, False),
        ("APP", True, True),
    ],
)
def test_patient_senders(sender_type: str, allow_app: bool, ok: bool) -> None:
    decision = check_patient_sender(sender_type, allow_app=allow_app)
    assert decision.ok is ok
    if not ok:
        assert (decision.smtp_code, decision.enhanced) == (550, "5.7.1")
