"""Certificate path validation at a chosen instant, in Python.

Why not only OpenSSL: peer binding (TRUST-6) and the liste blanche signer
check (TRUST-2) must answer "was this chain good at instant T?" as pure
functions with a precise reason, and client listeners (TLS-3) receive
certificates that OpenSSL was told not to judge.  OpenSSL still verifies
during the handshake where the certificate is required; this module is the
second, explainable opinion.

Scope (RFC 5280 §6 subset, enough for a closed two-level PKI like
IGC-Santé): name chaining, signatures, validity periods, CA basic
constraints and keyCertSign on issuers, path length, revocation of the leaf
(required when CRLs are given) and of intermediates (when a CRL of their
issuer is present).  Policies and name constraints are not processed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from mssgw.errors import MssgwError
from mssgw.tls.crl import Revocation, revocation_status

ChainProblem = Literal[
    "no_certificate",
    "expired",
    "not_yet_valid",
    "unknown_ca",
    "not_ca",
    "too_long",
    "revoked",
    "crl_unavailable",
    "crl_stale",
]
#: Problems that may go away by themselves (retry later, SMTP 4xx).
TRANSIENT: frozenset[ChainProblem] = frozenset({"crl_unavailable", "crl_stale"})
MAX_DEPTH = 6


@dataclass(frozen=True)
class ChainError(MssgwError):
    """A chain failed validation; ``problem`` is machine readable."""

    problem: ChainProblem
    message: str

    def __str__(self) -> str:
        return self.message

    @property
    def transient(self) -> bool:
        return self.problem in TRANSIENT


def describe(cert: x509.Certificate) -> str:
    """Subject in RFC 4514 form, for messages."""
    return cert.subject.rfc4514_string()


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def check_validity(cert: x509.Certificate, at: datetime, role: str = "certificate") -> None:
    """Raise ``ChainError`` when ``at`` is outside the certificate's validity."""
    if at > cert.not_valid_after_utc:
        raise ChainError(
            "expired",
            f"{role} {describe(cert)} expired on {_day(cert.not_valid_after_utc)} "
            f"(not valid after {cert.not_valid_after_utc.isoformat()}, "
            f"checked at {at.isoformat()})",
        )
    if at < cert.not_valid_before_utc:
        raise ChainError(
            "not_yet_valid",
            f"{role} {describe(cert)} is not valid before "
            f"{cert.not_valid_before_utc.isoformat()} (checked at {at.isoformat()})",
        )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_ca(issuer: x509.Certificate, below: int) -> None:
    """An issuer must be a CA allowed to sign certificates (RFC 5280 §4.2.1.9)."""
    try:
        bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise ChainError("not_ca", f"issuer {describe(issuer)} is not a CA certificate")
    if bc.path_length is not None and below > bc.path_length + 1:
        raise ChainError("too_long", f"path length constraint of {describe(issuer)} exceeded")
    try:
        ku = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not ku.key_cert_sign:
        raise ChainError("not_ca", f"issuer {describe(issuer)} may not sign certificates")


def build_path(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    at: datetime,
) -> list[x509.Certificate]:
    """Leaf … anchor, every link checked; raise ``ChainError`` otherwise.

    Anchors may include intermediates (IGC-Santé bundles do); a certificate
    equal to an anchor ends the path.
    """
    anchor_set = set(anchors)
    pool = list(anchors) + [c for c in intermediates if c not in anchor_set]
    check_validity(leaf, at)
    path = [leaf]
    current = leaf
    while current not in anchor_set:
        if len(path) > MAX_DEPTH:
            raise ChainError("too_long", f"chain of {describe(leaf)} longer than {MAX_DEPTH}")
        issuer = next(
            (
                c
                for c in pool
                if c.subject == current.issuer and c not in path and _issued_by(current, c)
            ),
            None,
        )
        if issuer is None:
            raise ChainError(
                "unknown_ca",
                f"certificate {describe(current)} was issued by {current.issuer.rfc4514_string()},"
                " which is not among the configured anchors",
            )
        _check_ca(issuer, below=len(path))
        check_validity(issuer, at, "issuer certificate")
        path.append(issuer)
        current = issuer
    return path


def check_revocation(
    path: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    at: datetime,
) -> None:
    """TRUST-5 on a built path: leaf required, intermediates when a CRL exists."""
    for index, (cert, issuer) in enumerate(itertools.pairwise(path)):
        status = revocation_status(cert, issuer, crls, at)
        if status is Revocation.REVOKED:
            raise ChainError(
                "revoked",
                f"certificate {describe(cert)} is revoked (serial {cert.serial_number:x})",
            )
        if index > 0 and status is not Revocation.GOOD:
            continue  # intermediates: checked only when their issuer's CRL is present
        if status is Revocation.UNAVAILABLE:
            raise ChainError(
                "crl_unavailable",
                f"no CRL from {describe(issuer)} is configured: "
                f"cannot check revocation of {describe(cert)}",
            )
        if status is Revocation.STALE:
            raise ChainError(
                "crl_stale",
                f"the CRL from {describe(issuer)} is past its next update: "
                f"cannot check revocation of {describe(cert)}",
            )


def validate(
    chain: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    at: datetime,
    crls: Sequence[x509.CertificateRevocationList] | None = None,
) -> list[x509.Certificate]:
    """Validate ``chain`` (leaf first, then any intermediates) at ``at``.

    ``crls=None`` means revocation is not checked (not configured); an empty
    list means it is checked and nothing can be found (every leaf fails as
    ``crl_unavailable``).  Returns the path from leaf to anchor.
    """
    if not chain:
        raise ChainError("no_certificate", "no certificate presented")
    path = build_path(chain[0], chain[1:], anchors, at)
    if crls is not None:
        check_revocation(path, crls, at)
    return path
