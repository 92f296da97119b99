"""Test helpers around the development PKI (``mssgw.tls.devpki``).

``dev_pki`` is a session-scoped fixture (conftest) because generating keys
is the slow part; tests must not modify its files (copy them first).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mssgw.tls.context import server_context
from mssgw.tls.devpki import init_dev


@dataclass
class DevPki:
    """The manifest plus loaded objects tests use a lot."""

    manifest: dict[str, Any]
    directory: Path

    def certs(self, path: str) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(Path(path).read_bytes())

    @property
    def anchors(self) -> list[x509.Certificate]:
        return self.certs(self.manifest["anchors"])

    @property
    def root(self) -> x509.Certificate:
        return self.certs(self.manifest["root"])[0]

    @property
    def crls(self) -> list[x509.CertificateRevocationList]:
        return [
            x509.load_pem_x509_crl(Path(self.manifest[k]).read_bytes()) for k in ("crl", "root_crl")
        ]

    def op(self, k: int) -> dict[str, str]:
        op: dict[str, str] = self.manifest["operators"][k - 1]
        return op

    def server_ctx(self, *, profile: str = "mssante", client_cert: str = "none") -> ssl.SSLContext:
        """Operator 1's listener context, with the dev anchors and CRLs."""
        op = self.op(1)
        return server_context(
            op["certificate"],
            op["key"],
            self.manifest["anchors"],
            profile=profile,
            client_cert=client_cert,  # type: ignore[arg-type]
            crls=self.crls,
        )

    def chain(self, pem_path: str) -> list[x509.Certificate]:
        return self.certs(pem_path)

    def key(self, name: str) -> rsa.RSAPrivateKey:
        key = serialization.load_pem_private_key(
            (self.directory / "ca" / f"{name}.key").read_bytes(), None
        )
        assert isinstance(key, rsa.RSAPrivateKey)
        return key

    def signer(self) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        cert = self.certs(self.manifest["signer"]["certificate"])[0]
        key = serialization.load_pem_private_key(
            Path(self.manifest["signer"]["key"]).read_bytes(), None
        )
        assert isinstance(key, rsa.RSAPrivateKey)
        return cert, key

    def issue(
        self,
        subject: x509.Name,
        *,
        not_after: datetime | None = None,
    ) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        """A leaf from the dev intermediate (for cases the layout lacks)."""
        inter = self.certs(self.manifest["intermediate"])[0]
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(inter.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(not_after or now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key("intermediate"), hashes.SHA256())
        )
        return cert, key


def make_dev_pki(directory: Path) -> DevPki:
    return DevPki(init_dev(directory, operators=2), directory)
