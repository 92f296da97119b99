"""The one result type of every policy check.

A ``Decision`` carries what an SMTP edge needs to answer: the kind
(accept / temporary refusal / permanent refusal), the basic reply code
(RFC 5321 §4.2), the enhanced status code (RFC 3463, registry of RFC 5248)
and a human reason.  Policy functions stay pure by returning one; edges
never make up codes of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

DecisionKind = Literal["accept", "tempfail", "reject"]

_ENHANCED_RE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
#: The first digit of the reply code and of the enhanced code must agree
#: (RFC 3463 §2: class 2 success, 4 persistent transient, 5 permanent).
_CLASS = {"accept": "2", "tempfail": "4", "reject": "5"}


@dataclass(frozen=True, slots=True)
class Decision:
    """An accept / tempfail / reject verdict with its SMTP codes and reason."""

    kind: DecisionKind
    smtp_code: int
    enhanced: str
    reason: str

    def __post_init__(self) -> None:
        # Catch a wrong code where it is written, not when a peer reads it.
        expected = _CLASS[self.kind]
        match = _ENHANCED_RE.match(self.enhanced)
        if not (200 <= self.smtp_code <= 599) or str(self.smtp_code)[0] != expected:
            raise ValueError(
                f"{self.kind} decision needs a {expected}xx code, got {self.smtp_code}"
            )
        if match is None or match.group(1) != expected:
            raise ValueError(
                f"{self.kind} decision needs an enhanced code {expected}.x.y, got {self.enhanced!r}"
            )
        if "\r" in self.reason or "\n" in self.reason:
            # A reason goes on one reply line; a CR/LF would let it forge replies.
            raise ValueError("decision reason must be a single line")

    @classmethod
    def accept(cls, reason: str = "") -> Decision:
        """Success: ``250 2.0.0`` (RFC 3463 X.0.0, "other or undefined")."""
        return cls("accept", 250, "2.0.0", reason or "OK")

    @classmethod
    def tempfail(cls, code: int, enhanced: str, reason: str) -> Decision:
        """Temporary refusal (4xx): the peer should retry later."""
        return cls("tempfail", code, enhanced, reason)

    @classmethod
    def reject(cls, code: int, enhanced: str, reason: str) -> Decision:
        """Permanent refusal (5xx): the peer must not retry as is."""
        return cls("reject", code, enhanced, reason)

    @property
    def ok(self) -> bool:
        """True for an accept decision."""
        return self.kind == "accept"

    def smtp_reply(self) -> str:
        """One reply line without CRLF, e.g. ``"550 5.7.1 domain not listed"``."""
        return f"{self.smtp_code} {self.enhanced} {self.reason}".rstrip()
