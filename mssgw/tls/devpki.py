"""A development look-alike of the IGC-Santé hierarchy (SPEC TRUST-4).

``init_dev`` writes, under one directory, everything a developer or a test
needs to exercise the trust space without the real PKI: a root and an
intermediate CA (our own names, never the real IGC-Santé ones), server
certificates for N operators whose subject DNs have the liste blanche form,
a health professional's and a structure's client certificates, a set of bad
certificates (expired, revoked, unknown CA, unlisted), CRLs, a liste blanche
signer and a signed liste blanche in the ANS format.  The layout is a
contract (docs/trust.md, issue 2 item 4): other services and tests read the
returned manifest (also written as ``manifest.json``) rather than guessing.

RSA 2048 everywhere: the MSSanté suites are ECDHE-RSA (SPEC TLS-1).
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mssgw.errors import MssgwError
from mssgw.tls.identity import name_to_dn, subject_dn
from mssgw.trust.listeblanche import Entry, sign_liste_blanche

ROOT_NAME = "CN=AC RACINE MSSGW DEVELOPPEMENT,OU=MSSGW DEV,O=MSSGW,C=FR"
INTERMEDIATE_NAME = "CN=AC MSSGW DEVELOPPEMENT ORGANISATIONS,OU=MSSGW DEV,O=MSSGW,C=FR"
UNKNOWN_CA_NAME = "CN=AC INCONNUE MSSGW DEVELOPPEMENT,OU=MSSGW DEV HORS CONFIANCE,O=MSSGW,C=FR"
#: Départements used for the operators' ST attribute, in turn.
DEPARTEMENTS = ("Paris (75)", "Rhône (69)", "Gironde (33)", "Bouches-du-Rhône (13)", "Nord (59)")
#: Health professional: identifiant national = "8" + RPPS (11 digits).
PROFESSIONAL_RPPS = "10012345678"
#: Structure of the APP mailbox: "1" + a FINESS-like number (never a real one).
STRUCTURE_ID = "1990000017"
KEY_SIZE = 2048


class DevPkiError(MssgwError):
    """The development PKI cannot be written where asked."""


@dataclass
class _Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey


def _name(rdns: list[tuple[x509.ObjectIdentifier, str]]) -> x509.Name:
    """An ``x509.Name`` from (oid, value) pairs, most general first (ASN.1 order)."""
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in rdns])


def _ca_name(cn: str, ou: str = "MSSGW DEV") -> x509.Name:
    return _name(
        [
            (NameOID.COUNTRY_NAME, "FR"),
            (NameOID.ORGANIZATION_NAME, "MSSGW"),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
            (NameOID.COMMON_NAME, cn),
        ]
    )


def _server_name(host: str, siret: str, org: str, st: str) -> x509.Name:
    """Liste blanche form ``CN=host,OU=siret,O=org,ST=dept,C=FR`` (RFC 4514 order)."""
    return _name(
        [
            (NameOID.COUNTRY_NAME, "FR"),
            (NameOID.STATE_OR_PROVINCE_NAME, st),
            (NameOID.ORGANIZATION_NAME, org),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, siret),
            (NameOID.COMMON_NAME, host),
        ]
    )


class _Pki:
    """Issues certificates with consistent extensions and unique serials."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.serial = 0x1000

    def key(self) -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)

    def issue(
        self,
        subject: x509.Name,
        issuer: _Issued | None,
        *,
        ca: bool = False,
        path_length: int | None = None,
        days: tuple[int, int] = (-1, 730),
        eku: list[x509.ObjectIdentifier] | None = None,
        san: list[x509.GeneralName] | None = None,
        key_usage: str = "tls",
    ) -> _Issued:
        key = self.key()
        self.serial += 1
        issuer_name = issuer.cert.subject if issuer else subject
        signing_key = issuer.key if issuer else key
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(self.serial)
            .not_valid_before(self.now + timedelta(days=days[0]))
            .not_valid_after(self.now + timedelta(days=days[1]))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(_key_usage(ca, key_usage), critical=True)
        )
        if issuer:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                critical=False,
            )
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return _Issued(builder.sign(signing_key, hashes.SHA256()), key)

    def crl(
        self, issuer: _Issued, revoked: list[x509.Certificate]
    ) -> x509.CertificateRevocationList:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.cert.subject)
            .last_update(self.now - timedelta(hours=1))
            # Long-lived for development (a stale CRL tempfails every peer);
            # 'mssgw pki init-dev --force' renews everything.
            .next_update(self.now + timedelta(days=365))
            .add_extension(x509.CRLNumber(1), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                critical=False,
            )
        )
        for cert in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(cert.serial_number)
                .revocation_date(self.now - timedelta(hours=2))
                .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
                .build()
            )
        return builder.sign(issuer.key, hashes.SHA256())


def _key_usage(ca: bool, kind: str) -> x509.KeyUsage:
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
        ),
        False,
    )
    if ca:
        flags.update(key_cert_sign=True, crl_sign=True)
    elif kind == "signer":
        flags.update(digital_signature=True, content_commitment=True)
    else:
        flags.update(digital_signature=True, key_encipherment=True)
    return x509.KeyUsage(**flags, encipher_only=False, decipher_only=False)


# --------------------------------------------------------------------------- writing


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, *, secret: bool = False) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return str(path.resolve())


def _write_pair(base: Path, issued: _Issued, chain: list[x509.Certificate]) -> dict[str, str]:
    """``base.pem`` (certificate then its chain, root excluded) and ``base.key``."""
    key = issued.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {
        "certificate": _write(
            base.with_suffix(".pem"), b"".join(_pem(c) for c in [issued.cert, *chain])
        ),
        "key": _write(base.with_suffix(".key"), key, secret=True),
    }


def _check_target(directory: Path, force: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise DevPkiError(f"{directory}: exists and is not a directory")
    if directory.exists() and any(directory.iterdir()) and not force:
        raise DevPkiError(f"{directory}: not empty; pass --force to overwrite the development PKI")


def _siret(k: int) -> str:
    """A 14-digit SIRET-like id, reserved range 99…, never a real company."""
    return f"99{k:012d}"


def init_dev(
    directory: Path,
    operators: int = 2,
    *,
    now: datetime | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Write the development PKI under ``directory``; return the manifest.

    Refuses a non-empty directory unless ``force``.  ``now`` fixes the
    clock (tests); certificates are valid from one day before it.
    """
    if not 1 <= operators <= 50:
        raise DevPkiError(f"--operators {operators}: expected 1..50")
    directory = Path(directory)
    _check_target(directory, force)
    directory.mkdir(parents=True, exist_ok=True)
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    pki = _Pki(now)
    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    loopback: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]

    root = pki.issue(_ca_name("AC RACINE MSSGW DEVELOPPEMENT"), None, ca=True, days=(-1, 3650))
    inter = pki.issue(
        _ca_name("AC MSSGW DEVELOPPEMENT ORGANISATIONS"),
        root,
        ca=True,
        path_length=0,
        days=(-1, 3000),
    )
    chain = [inter.cert]
    ca_dir = directory / "ca"
    manifest: dict[str, Any] = {
        "root": _write(ca_dir / "root.pem", _pem(root.cert)),
        "intermediate": _write(ca_dir / "intermediate.pem", _pem(inter.cert)),
        "anchors": _write(ca_dir / "anchors.pem", _pem(root.cert) + _pem(inter.cert)),
    }
    _write(ca_dir / "root.key", _key_pem(root.key), secret=True)
    _write(ca_dir / "intermediate.key", _key_pem(inter.key), secret=True)

    entries: list[Entry] = []
    ops = []
    for k in range(1, operators + 1):
        domain, host = f"op{k}.mssante.test", f"mx.op{k}.mssante.test"
        subject = _server_name(
            host, _siret(k), f"OPERATEUR DEV {k}", DEPARTEMENTS[(k - 1) % len(DEPARTEMENTS)]
        )
        issued = pki.issue(subject, inter, eku=both, san=[x509.DNSName(host), *loopback])
        files = _write_pair(directory / "operators" / f"op{k}" / "server", issued, chain)
        dn = subject_dn(issued.cert)
        ops.append({"name": f"op{k}", "domain": domain, "host": host, "dn": dn, **files})
        entries.append(_entry(domain, dn, k, now))
    # Multi-DN: op1's domain also lists a second MTA node (no certificate
    # is issued for it; tests issue one when they need it).
    op1_node2 = _server_name("mx2.op1.mssante.test", _siret(1), "OPERATEUR DEV 1", DEPARTEMENTS[0])
    entries.insert(1, _entry("op1.mssante.test", name_to_dn(op1_node2), 1, now))
    manifest["operators"] = ops

    manifest["professional"] = _professional(pki, inter, chain, directory)
    manifest["structure"] = _structure(pki, inter, chain, directory)
    bad, revoked = _bad(pki, root, inter, chain, directory, both, loopback)
    manifest["bad"] = bad

    manifest["crl"] = _write(
        ca_dir / "crl.pem", pki.crl(inter, [revoked]).public_bytes(serialization.Encoding.PEM)
    )
    manifest["root_crl"] = _write(
        ca_dir / "root-crl.pem", pki.crl(root, []).public_bytes(serialization.Encoding.PEM)
    )

    signer = pki.issue(
        _name(
            [
                (NameOID.COUNTRY_NAME, "FR"),
                (NameOID.STATE_OR_PROVINCE_NAME, "Paris (75)"),
                (NameOID.ORGANIZATION_NAME, "MSSGW DEV LISTE BLANCHE"),
                (NameOID.ORGANIZATIONAL_UNIT_NAME, _siret(0)),
                (NameOID.COMMON_NAME, "listeblanche.mssante.test"),
            ]
        ),
        inter,
        eku=[ExtendedKeyUsageOID.EMAIL_PROTECTION],
        key_usage="signer",
        days=(-1, 1095),
    )
    manifest["signer"] = _write_pair(directory / "signer" / "signer", signer, chain)
    manifest["signer"]["dn"] = subject_dn(signer.cert)
    manifest["liste_blanche"] = _write(
        directory / "listeblanche.xml",
        sign_liste_blanche(entries, now, signer.cert, signer.key),
    )
    manifest["generated_at"] = now.isoformat()
    _write(directory / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False).encode())
    return manifest


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _entry(domain: str, dn: str, k: int, now: datetime) -> Entry:
    return Entry(
        domain=domain,
        dn=dn,
        description=f"Domaine de messagerie MSSanté de développement OPERATEUR DEV {k}",
        responsable_contact=f"01 00 00 00 0{k % 10}, responsable@op{k}.mssante.test",
        support_contact=f"01 00 00 00 0{k % 10}, support@op{k}.mssante.test",
        updated=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def _professional(
    pki: _Pki, inter: _Issued, chain: list[x509.Certificate], directory: Path
) -> dict[str, str]:
    """A CPS-like personal certificate: CN = identifiant national (8 + RPPS)."""
    national = "8" + PROFESSIONAL_RPPS
    subject = _name(
        [
            (NameOID.COUNTRY_NAME, "FR"),
            (NameOID.ORGANIZATION_NAME, "MSSGW DEV PROFESSIONNELS"),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, "MEDECIN"),
            (NameOID.SURNAME, "DUPONT"),
            (NameOID.GIVEN_NAME, "CLAIRE"),
            (NameOID.COMMON_NAME, national),
        ]
    )
    issued = pki.issue(subject, inter, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    files = _write_pair(directory / "users" / "professional", issued, chain)
    return {
        **files,
        "national_id": national,
        "rpps": PROFESSIONAL_RPPS,
        "dn": subject_dn(issued.cert),
    }


def _structure(
    pki: _Pki, inter: _Issued, chain: list[x509.Certificate], directory: Path
) -> dict[str, str]:
    """An organisation certificate for an APP mailbox: OU = structure id."""
    subject = _name(
        [
            (NameOID.COUNTRY_NAME, "FR"),
            (NameOID.STATE_OR_PROVINCE_NAME, "Paris (75)"),
            (NameOID.ORGANIZATION_NAME, "CENTRE DE SANTE DEV"),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, STRUCTURE_ID),
            (NameOID.COMMON_NAME, "LOGICIEL DPI DEV"),
        ]
    )
    issued = pki.issue(subject, inter, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    files = _write_pair(directory / "users" / "structure", issued, chain)
    return {**files, "structure_id": STRUCTURE_ID, "dn": subject_dn(issued.cert)}


def _bad(
    pki: _Pki,
    root: _Issued,
    inter: _Issued,
    chain: list[x509.Certificate],
    directory: Path,
    eku: list[x509.ObjectIdentifier],
    loopback: list[x509.GeneralName],
) -> tuple[dict[str, dict[str, str]], x509.Certificate]:
    """Bad certificates that impersonate op1 (its DN and host), so that each
    fails for its one stated reason only; ``unlisted`` is a valid chain with a
    DN nobody listed."""
    op1 = _server_name("mx.op1.mssante.test", _siret(1), "OPERATEUR DEV 1", DEPARTEMENTS[0])
    san = [x509.DNSName("mx.op1.mssante.test"), *loopback]
    out: dict[str, dict[str, str]] = {}
    expired = pki.issue(op1, inter, eku=eku, san=san, days=(-400, -1))
    out["expired"] = _write_pair(directory / "bad" / "expired", expired, chain)
    revoked = pki.issue(op1, inter, eku=eku, san=san)
    out["revoked"] = _write_pair(directory / "bad" / "revoked", revoked, chain)
    stranger_ca = pki.issue(
        _ca_name("AC INCONNUE MSSGW DEVELOPPEMENT", "MSSGW DEV HORS CONFIANCE"), None, ca=True
    )
    unknown = pki.issue(op1, stranger_ca, eku=eku, san=san)
    out["unknown_ca"] = _write_pair(directory / "bad" / "unknown-ca", unknown, [stranger_ca.cert])
    unlisted_name = _server_name(
        "mx.unlisted.mssante.test", _siret(98), "OPERATEUR NON LISTE", "Nord (59)"
    )
    unlisted = pki.issue(
        unlisted_name, inter, eku=eku, san=[x509.DNSName("mx.unlisted.mssante.test"), *loopback]
    )
    out["unlisted"] = {
        **_write_pair(directory / "bad" / "unlisted", unlisted, chain),
        "dn": subject_dn(unlisted.cert),
    }
    for name, issued in (("expired", expired), ("revoked", revoked), ("unknown_ca", unknown)):
        out[name]["dn"] = subject_dn(issued.cert)
    return out, revoked.cert
