"""Certificate revocation lists (SPEC TRUST-5).

Two jobs: load CRL files while keeping the last valid copy of each when a
refresh brings something broken (``CrlSet``), and answer "is this
certificate revoked at instant T?" as a pure function (``revocation_status``)
that the Python-side chain check and peer binding use.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mssgw.errors import MssgwError

log = logging.getLogger(__name__)

#: Bound on one CRL file; the IGC-Santé CRLs are a few hundred kB.
MAX_CRL_BYTES = 64 * 1024 * 1024


class CrlError(MssgwError):
    """A CRL file cannot be read or parsed."""


def parse_crls(data: bytes, source: str = "CRL") -> list[x509.CertificateRevocationList]:
    """Parse one or more PEM CRLs, or one DER CRL."""
    if len(data) > MAX_CRL_BYTES:
        raise CrlError(f"{source}: larger than {MAX_CRL_BYTES} bytes")
    try:
        if b"-----BEGIN X509 CRL-----" in data:
            crls = []
            for block in data.split(b"-----END X509 CRL-----")[:-1]:
                start = block.find(b"-----BEGIN X509 CRL-----")
                pem = block[start:] + b"-----END X509 CRL-----\n"
                crls.append(x509.load_pem_x509_crl(pem))
            return crls
        return [x509.load_der_x509_crl(data)]
    except ValueError as exc:
        raise CrlError(f"{source}: not a CRL ({exc})") from None


def load_crl_file(path: Path) -> list[x509.CertificateRevocationList]:
    """Read and parse a CRL file; raise ``CrlError`` naming the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CrlError(f"{path}: cannot read CRL: {exc.strerror}") from None
    crls = parse_crls(data, str(path))
    if not crls:
        raise CrlError(f"{path}: no CRL found")
    return crls


def crls_to_pem(crls: Iterable[x509.CertificateRevocationList]) -> bytes:
    """PEM bundle, the form OpenSSL's ``load_verify_locations`` reads."""
    return b"".join(crl.public_bytes(Encoding.PEM) for crl in crls)


@dataclass
class CrlSet:
    """The CRLs in use, one slot per configured file.

    ``refresh`` re-reads every file; a file that fails to read or parse, or
    whose CRL is older than the one held (``last_update`` went back), keeps
    its previous content: TRUST-5 "keep the last valid CRL when a refresh
    fails".  Errors are returned so the caller can log and count them.
    """

    paths: Sequence[Path]
    _held: dict[Path, list[x509.CertificateRevocationList]] = field(default_factory=dict)

    def refresh(self) -> list[str]:
        errors: list[str] = []
        for path in self.paths:
            try:
                fresh = load_crl_file(path)
            except CrlError as exc:
                errors.append(
                    f"{exc}; keeping the previous CRL" if path in self._held else str(exc)
                )
                continue
            old = self._held.get(path)
            if old and _newest(fresh) < _newest(old):
                errors.append(f"{path}: CRL older than the one in use; keeping the previous CRL")
                continue
            self._held[path] = fresh
        for error in errors:
            log.warning("CRL refresh: %s", error)
        return errors

    def missing(self) -> list[Path]:
        """Configured files that never loaded (nothing to fall back on)."""
        return [path for path in self.paths if path not in self._held]

    @property
    def crls(self) -> list[x509.CertificateRevocationList]:
        return [crl for path in self.paths for crl in self._held.get(path, [])]


def _newest(crls: Sequence[x509.CertificateRevocationList]) -> datetime:
    return max(crl.last_update_utc for crl in crls)


# --------------------------------------------------------------------------- status


class Revocation(Enum):
    """Outcome of a revocation check for one certificate."""

    GOOD = "good"
    REVOKED = "revoked"
    #: No CRL from this issuer is configured: cannot tell (transient).
    UNAVAILABLE = "unavailable"
    #: The newest CRL from this issuer is past its nextUpdate (transient).
    STALE = "stale"


def revocation_status(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    crls: Iterable[x509.CertificateRevocationList],
    at: datetime,
) -> Revocation:
    """Check ``cert`` against the newest valid CRL signed by ``issuer``.

    Only CRLs whose issuer name matches and whose signature verifies with the
    issuer's key count (a CRL cannot be forged to un-revoke or revoke).
    """
    candidates = [
        crl
        for crl in crls
        if crl.issuer == issuer.subject and crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    ]
    if not candidates:
        return Revocation.UNAVAILABLE
    crl = max(candidates, key=lambda c: c.last_update_utc)
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is not None and entry.revocation_date_utc <= at:
        return Revocation.REVOKED
    next_update = crl.next_update_utc
    if next_update is not None and next_update < at:
        return Revocation.STALE
    return Revocation.GOOD
