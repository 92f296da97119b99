"""The shared Decision type (policy/decision.py)."""

from __future__ import annotations

import dataclasses

import pytest

from mssgw.policy import Decision


def test_accept_defaults() -> None:
    d = Decision.accept()
    assert d.ok and d.kind == "accept"
    assert d.smtp_reply() == "250 2.0.0 OK"


def test_reject_and_tempfail_replies() -> None:
    assert Decision.reject(550, "5.7.1", "domain not listed").smtp_reply() == (
        "550 5.7.1 domain not listed"
    )
    t = Decision.tempfail(454, "4.7.0", "CRL stale")
    assert not t.ok and t.smtp_reply() == "454 4.7.0 CRL stale"


def test_frozen() -> None:
    d = Decision.accept("x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.reason = "y"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kind", "code", "enhanced"),
    [
        ("reject", 450, "5.7.1"),  # basic code class disagrees with kind
        ("reject", 550, "4.7.1"),  # enhanced class disagrees
        ("tempfail", 550, "5.7.1"),
        ("reject", 550, "5.7"),  # malformed enhanced code (RFC 3463 §2)
        ("reject", 650, "5.7.1"),
    ],
)
def test_inconsistent_codes_refused(kind: str, code: int, enhanced: str) -> None:
    factory = Decision.reject if kind == "reject" else Decision.tempfail
    with pytest.raises(ValueError):
        factory(code, enhanced, "x")


def test_reason_cannot_inject_reply_lines() -> None:
    with pytest.raises(ValueError):
        Decision.reject(550, "5.7.1", "bad\r\n250 OK")
