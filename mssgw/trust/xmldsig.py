"""The one XML-DSig profile the liste blanche uses, verified strictly.

SPEC TRUST-2: enveloped signature, exclusive C14N (without comments),
SHA-256 digest, RSA-SHA256, signer certificate in ``KeyInfo/X509Data``.

Why a dedicated verifier rather than signxml's general one (signxml signs
our development lists and cross-checks this verifier in the tests):

* signature wrapping is closed by construction: exactly one ``Signature``
  element in the whole document, the last child of the root, one
  ``Reference`` with ``URI=""`` (the whole document), exactly the transforms
  [enveloped-signature, exc-c14n], no ``Object`` -- anything else is
  refused, so the bytes we index are the bytes that were signed;
* it works on the tree the caller then indexes (one parse instead of the
  three or four a general verifier makes), which keeps parse + verify of
  the 3.7 MB list near the cost of a plain parse (bench/trust_verify.py).

Pure: takes a parsed root, returns the signer certificate chain or raises.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree  # type: ignore[import-untyped]

from mssgw.errors import MssgwError
from mssgw.tls.context import load_der

DS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"


class SignatureError(MssgwError):
    """The XML signature is absent, malformed, outside the profile, or wrong."""


def _ds(tag: str) -> str:
    return f"{{{DS}}}{tag}"


def _children(element: etree._Element) -> list[etree._Element]:
    """Element children only (comments and PIs are not signature structure)."""
    return [c for c in element if isinstance(c.tag, str)]


def _expect(element: etree._Element, tags: list[str], where: str) -> list[etree._Element]:
    kids = _children(element)
    got = [etree.QName(k).localname if etree.QName(k).namespace == DS else k.tag for k in kids]
    if [k.tag for k in kids] != [_ds(t) for t in tags]:
        raise SignatureError(f"{where}: expected elements {tags}, found {got}")
    return kids


def _algorithm(element: etree._Element, expected: str, what: str) -> None:
    found = element.get("Algorithm")
    if found != expected:
        raise SignatureError(f"{what} {found!r} not allowed (only {expected})")


def find_signature(root: etree._Element) -> etree._Element:
    """The single enveloped signature, last child of the root."""
    signatures = list(root.iter(_ds("Signature")))
    if not signatures:
        raise SignatureError("document is not signed (no ds:Signature element)")
    if len(signatures) > 1:
        raise SignatureError(f"{len(signatures)} ds:Signature elements; exactly one is allowed")
    signature = signatures[0]
    if signature.getparent() is not root or _children(root)[-1] is not signature:
        raise SignatureError("ds:Signature must be the last child of the document element")
    return signature


def _b64(text: str | None, what: str) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{what} is not valid base64") from None


def signer_chain(signature: etree._Element) -> list[x509.Certificate]:
    """Certificates of ``KeyInfo/X509Data``, the signer first."""
    key_info = signature.find(_ds("KeyInfo"))
    if key_info is None:
        raise SignatureError("ds:KeyInfo missing: the signer certificate must be included")
    (x509_data,) = _expect(key_info, ["X509Data"], "ds:KeyInfo")
    certs_el = _children(x509_data)
    if not certs_el or any(c.tag != _ds("X509Certificate") for c in certs_el):
        raise SignatureError("ds:X509Data must hold X509Certificate elements only")
    chain = []
    for el in certs_el:
        try:
            # Parsed completely: KeyInfo is not covered by the signature, so a
            # damaged certificate must be refused here, not fail a later check.
            chain.append(load_der(_b64(el.text, "X509Certificate")))
        except ValueError as exc:
            raise SignatureError(f"X509Certificate is not a certificate ({exc})") from None
    return chain


def _signed_info(signature: etree._Element) -> tuple[etree._Element, bytes, bytes]:
    """Check the SignedInfo profile; return it, the digest and signature value."""
    signed_info, sig_value, _key_info = _expect(
        signature, ["SignedInfo", "SignatureValue", "KeyInfo"], "ds:Signature"
    )
    c14n, method, reference = _expect(
        signed_info, ["CanonicalizationMethod", "SignatureMethod", "Reference"], "ds:SignedInfo"
    )
    _algorithm(c14n, EXC_C14N, "canonicalization")
    _algorithm(method, RSA_SHA256, "signature method")
    if _children(c14n) or _children(method):
        raise SignatureError("canonicalization/signature method parameters are not allowed")
    if reference.get("URI") != "":
        raise SignatureError(
            f"reference URI {reference.get('URI')!r} not allowed: the signature must cover "
            'the whole document (URI="")'
        )
    transforms, digest_method, digest_value = _expect(
        reference, ["Transforms", "DigestMethod", "DigestValue"], "ds:Reference"
    )
    t_env, t_c14n = _expect(transforms, ["Transform", "Transform"], "ds:Transforms")
    _algorithm(t_env, ENVELOPED, "first transform")
    _algorithm(t_c14n, EXC_C14N, "second transform")
    if _children(t_env) or _children(t_c14n):
        raise SignatureError("transform parameters (InclusiveNamespaces, XPath) are not allowed")
    _algorithm(digest_method, SHA256, "digest method")
    return (
        signed_info,
        _b64(digest_value.text, "DigestValue"),
        _b64(sig_value.text, "SignatureValue"),
    )


def _remove_enveloped(signature: etree._Element) -> None:
    """The enveloped-signature transform: drop the element, keep its tail text."""
    parent = signature.getparent()
    assert parent is not None  # find_signature guarantees it
    if signature.tail:
        previous = signature.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + signature.tail
        else:
            parent.text = (parent.text or "") + signature.tail
    parent.remove(signature)


def verify_signed_info(signature: etree._Element) -> tuple[list[x509.Certificate], bytes]:
    """Check the profile and the RSA signature over SignedInfo.

    Returns the signer chain and the digest SignedInfo commits to; the
    caller compares it with the digest of the content (``check_digest``).
    """
    if signature.tag != _ds("Signature") or sum(1 for _ in signature.iter(_ds("Signature"))) != 1:
        raise SignatureError("exactly one ds:Signature element is allowed")
    signed_info, digest, sig_value = _signed_info(signature)
    chain = signer_chain(signature)
    key = chain[0].public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError("signer certificate key is not RSA (profile: RSA-SHA256)")
    signed_info_c14n = etree.tostring(
        signed_info, method="c14n", exclusive=True, with_comments=False
    )
    try:
        key.verify(sig_value, signed_info_c14n, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise SignatureError(
            "signature value does not verify with the signer certificate's key"
        ) from None
    return chain, digest


def check_digest(actual: bytes, signed: bytes) -> None:
    """The SHA-256 of the canonical content equals the digest that was signed."""
    if not hmac.compare_digest(actual, signed):
        raise SignatureError("digest mismatch: the document was modified after it was signed")


def verify_enveloped(root: etree._Element) -> tuple[list[x509.Certificate], bytes]:
    """Verify the enveloped signature of ``root``; return the signer chain
    and the canonical bytes that were signed (the caller may read them: they
    are exactly what the digest covers).

    Cryptography only: certificate validity, chain and expected subject are
    the caller's business (they depend on the instant and configuration).
    The signature element is removed from the tree (the enveloped transform),
    leaving exactly the signed content for the caller to read.
    """
    signature = find_signature(root)
    chain, digest = verify_signed_info(signature)
    _remove_enveloped(signature)
    content = etree.tostring(root, method="c14n", exclusive=True, with_comments=False)
    check_digest(hashlib.sha256(content).digest(), digest)
    return chain, content
