"""Who authenticated, and which mailbox the session works on.

SPEC BAL-3: a PER mailbox is used by its owner (a professional, by national
id), an ORG/CAB mailbox by the professionals the operator delegated, an APP
mailbox by software holding the structure's certificate.  An ``Identity`` is
the result of one successful authentication: the principal (national id or
structure id), how it was proved, and the one mailbox the session opened.
Protocols work on ``mailbox``; ``principal`` is what traces record.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class PrincipalKind(enum.StrEnum):
    PROFESSIONAL = "professional"  # RPPS/ADELI national id (CPS card, PSC token)
    STRUCTURE = "structure"  # FINESS/SIRET structure id (structure certificate)


class Method(enum.StrEnum):
    PASSWORD = "password"  # application password (AUTH-3)
    CERTIFICATE = "certificate"  # TLS client certificate, SASL EXTERNAL (AUTH-2)
    TOKEN = "token"  # Pro Santé Connect (AUTH-1), later


@dataclass(frozen=True, slots=True)
class MailboxRef:
    """The BAL a session uses."""

    id: int
    address: str
    type: str


@dataclass(frozen=True, slots=True)
class Identity:
    """A successful authentication.

    ``principal`` is the national id or structure id that proved itself;
    ``credential_id`` the application password used (``None`` otherwise);
    ``mailbox`` the BAL this session opened.
    """

    principal: str
    kind: PrincipalKind
    method: Method
    mailbox: MailboxRef
    credential_id: int | None = None

    @property
    def actor(self) -> str:
        """How traces name the actor (TRACE-1): never a secret."""
        return (
            f"{self.kind.value}:{self.principal} via {self.method.value} as {self.mailbox.address}"
        )
