"""The development PKI: layout, chains (openssl), CRL, signed list (signxml)."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from signxml import XMLVerifier

from mssgw.tls.devpki import DevPkiError, init_dev
from mssgw.trust.listeblanche import load_verified
from tests.tls.pki import DevPki

LAYOUT = [
    "ca/root.pem",
    "ca/root.key",
    "ca/intermediate.pem",
    "ca/intermediate.key",
    "ca/anchors.pem",
    "ca/crl.pem",
    "ca/root-crl.pem",
    "operators/op1/server.pem",
    "operators/op1/server.key",
    "operators/op2/server.pem",
    "operators/op2/server.key",
    "users/professional.pem",
    "users/professional.key",
    "users/structure.pem",
    "users/structure.key",
    "bad/expired.pem",
    "bad/expired.key",
    "bad/revoked.pem",
    "bad/revoked.key",
    "bad/unknown-ca.pem",
    "bad/unknown-ca.key",
    "bad/unlisted.pem",
    "bad/unlisted.key",
    "signer/signer.pem",
    "signer/signer.key",
    "listeblanche.xml",
    "manifest.json",
]
OPENSSL = shutil.which("openssl")


def test_layout_and_manifest(dev_pki: DevPki) -> None:
    d = dev_pki.directory
    found = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())
    assert found == sorted(LAYOUT)
    on_disk = json.loads((d / "manifest.json").read_text())
    assert on_disk == dev_pki.manifest
    m = dev_pki.manifest
    for key in ("root", "anchors", "crl", "intermediate", "liste_blanche"):
        assert Path(m[key]).is_absolute() and Path(m[key]).exists()
    assert [o["domain"] for o in m["operators"]] == ["op1.mssante.test", "op2.mssante.test"]
    assert set(m["bad"]) == {"expired", "revoked", "unknown_ca", "unlisted"}
    assert m["professional"]["national_id"] == "8" + m["professional"]["rpps"]
    assert len(m["professional"]["national_id"]) == 12
    assert stat.S_IMODE((d / "ca/root.key").stat().st_mode) == 0o600


def test_names_are_our_own(dev_pki: DevPki) -> None:
    root = dev_pki.root
    assert (
        root.subject.rfc4514_string()
        == "CN=AC RACINE MSSGW DEVELOPPEMENT,OU=MSSGW DEV,O=MSSGW,C=FR"
    )
    for cert in dev_pki.anchors:
        assert "IGC-SANTE" not in cert.subject.rfc4514_string()


def test_operator_certificate_profile(dev_pki: DevPki) -> None:
    leaf, inter = dev_pki.certs(dev_pki.op(1)["certificate"])
    assert inter.subject == dev_pki.certs(dev_pki.manifest["intermediate"])[0].subject
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {o.dotted_string for o in eku} == {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"mx.op1.mssante.test", "localhost"}
    assert leaf.public_key().key_size == 2048  # type: ignore[union-attr]
    assert leaf.subject.rfc4514_string() == dev_pki.op(1)["dn"]


def _openssl_verify(dev_pki: DevPki, path: str, *extra: str) -> subprocess.CompletedProcess[str]:
    assert OPENSSL, "openssl is required by the tests"
    ca = dev_pki.directory / "ca"
    return subprocess.run(
        [
            OPENSSL,
            "verify",
            *extra,
            "-CAfile",
            str(ca / "root.pem"),
            "-untrusted",
            str(ca / "intermediate.pem"),
            path,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


@pytest.mark.parametrize(
    "which",
    ["op1", "op2", "professional", "structure", "signer", "unlisted", "revoked"],
)
def test_openssl_verifies_good_chains(dev_pki: DevPki, which: str) -> None:
    m = dev_pki.manifest
    path = {
        "op1": m["operators"][0]["certificate"],
        "op2": m["operators"][1]["certificate"],
        "professional": m["professional"]["certificate"],
        "structure": m["structure"]["certificate"],
        "signer": m["signer"]["certificate"],
        "unlisted": m["bad"]["unlisted"]["certificate"],
        "revoked": m["bad"]["revoked"]["certificate"],  # fine without a CRL check
    }[which]
    result = _openssl_verify(dev_pki, path)
    assert result.returncode == 0, result.stderr + result.stdout


@pytest.mark.parametrize(("which", "error"), [("expired", "expired"), ("unknown_ca", "issuer")])
def test_openssl_refuses_bad(dev_pki: DevPki, which: str, error: str) -> None:
    result = _openssl_verify(dev_pki, dev_pki.manifest["bad"][which]["certificate"])
    assert result.returncode != 0
    assert error in (result.stdout + result.stderr)


def test_openssl_sees_the_revocation(dev_pki: DevPki, tmp_path: Path) -> None:
    ca = dev_pki.directory / "ca"
    crls = tmp_path / "crls.pem"
    crls.write_bytes((ca / "crl.pem").read_bytes() + (ca / "root-crl.pem").read_bytes())
    revoked = _openssl_verify(
        dev_pki,
        dev_pki.manifest["bad"]["revoked"]["certificate"],
        "-crl_check",
        "-CRLfile",
        str(crls),
    )
    assert revoked.returncode != 0 and "revoked" in revoked.stdout + revoked.stderr
    good = _openssl_verify(
        dev_pki, dev_pki.op(1)["certificate"], "-crl_check_all", "-CRLfile", str(crls)
    )
    assert good.returncode == 0, good.stdout + good.stderr


def test_list_verifies_with_signxml_and_ours(dev_pki: DevPki) -> None:
    data = Path(dev_pki.manifest["liste_blanche"]).read_bytes()
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?><ListeBlancheMSSante xmlns=')
    result = XMLVerifier().verify(data, ca_pem_file=dev_pki.manifest["anchors"])
    assert result.signed_xml is not None
    liste = load_verified(
        data,
        at=datetime.now(UTC),
        anchors=dev_pki.anchors,
        expected_signer=dev_pki.manifest["signer"]["dn"],
    )
    assert (liste.entries, liste.domains) == (3, 2)
    assert len(liste.dns_for("op1.mssante.test")) == 2  # multi-DN domain
    assert liste.dns_for("op2.mssante.test") == {dev_pki.op(2)["dn"]}
    assert not liste.is_listed("unlisted.mssante.test")


def test_refuses_non_empty_directory_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(DevPkiError, match="not empty"):
        init_dev(tmp_path, operators=1)
    manifest = init_dev(tmp_path, operators=1, force=True)
    assert len(manifest["operators"]) == 1


def test_fixed_clock(tmp_path: Path) -> None:
    now = datetime(2025, 3, 1, 12, tzinfo=UTC)
    manifest = init_dev(tmp_path, operators=1, now=now)
    root = x509.load_pem_x509_certificate(Path(manifest["root"]).read_bytes())
    assert root.not_valid_before_utc < now < root.not_valid_after_utc
    assert (
        b"<DateDeGeneration>2025-03-01T12:00:00Z<" in Path(manifest["liste_blanche"]).read_bytes()
    )


def test_operator_count_bounds(tmp_path: Path) -> None:
    with pytest.raises(DevPkiError, match="operators"):
        init_dev(tmp_path, operators=0)
