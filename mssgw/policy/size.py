"""Message size rules (SPEC FLOW-6, RFC 1870).

One function per moment a size is known: the ``SIZE=`` the client declares
at MAIL (refuse early, before any byte is sent) and the actual size counted
during DATA (refuse at the end of data, the excess never stored).
"""

from __future__ import annotations

from mssgw.policy.decision import Decision


def too_big(limit: int) -> Decision:
    """RFC 1870 §6.1 / RFC 3463 X.3.4 "message too big for system": permanent."""
    return Decision.reject(552, "5.3.4", f"message size exceeds the limit of {limit} octets")


def check_declared_size(declared: int | None, limit: int) -> Decision:
    """MAIL ``SIZE=`` against the limit we advertise in EHLO (RFC 1870 §6.2)."""
    if declared is not None and declared > limit:
        return too_big(limit)
    return Decision("accept", 250, "2.1.0", "sender size ok")


def check_actual_size(size: int, limit: int) -> Decision:
    """The unstuffed size counted during DATA (RFC 1870 §6.3)."""
    return too_big(limit) if size > limit else Decision.accept("size ok")
