"""Peer binding (SPEC TRUST-6): may this certificate speak for this domain?

A pure function of (certificate chain, claimed domain, liste blanche,
instant, anchors, CRLs) to a ``Decision``; the SMTP edges and the relay call
it after the TLS handshake.  Codes (docs/trust.md has the table):

=============================  ====  =======  ====================================
situation                      code  enh.     why this code
=============================  ====  =======  ====================================
no certificate                 530   5.7.0    RFC 3207 §4 / RFC 4954 §6: authentication required
expired / not yet valid        550   5.7.1    RFC 3463 X.7.1: delivery not authorized
unknown CA / bad chain         550   5.7.1    idem
revoked                        550   5.7.1    idem
no CRL / CRL past nextUpdate   454   4.7.0    transient: retry once CRLs are refreshed
domain not on the list         550   5.7.1    idem
DN not listed for the domain   550   5.7.1    idem
=============================  ====  =======  ====================================
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509

from mssgw.policy.decision import Decision
from mssgw.tls import chain as chainmod
from mssgw.tls.identity import subject_dn
from mssgw.trust.listeblanche import ListeBlanche


def _ascii(text: str) -> str:
    """SMTP replies are ASCII (RFC 5321 §2.4): drop accents, escape the rest."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return bare.encode("ascii", "backslashreplace").decode("ascii")


def check_peer(
    chain: Sequence[x509.Certificate],
    domain: str,
    liste: ListeBlanche,
    at: datetime,
    anchors: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList] | None,
) -> Decision:
    """Decide whether the peer presenting ``chain`` is trusted for ``domain``.

    Order matters for the reason shown: authenticity of the certificate
    first (a forged certificate learns nothing about the list), then the
    list.  ``crls=None`` skips revocation (not configured); the daemon
    always passes the configured CRLs.
    """
    if not chain:
        return Decision.reject(530, "5.7.0", "TLS client certificate required (MSSante peer)")
    try:
        chainmod.validate(chain, anchors, at, crls)
    except chainmod.ChainError as exc:
        if exc.transient:
            return Decision.tempfail(
                454, "4.7.0", _ascii(f"cannot check peer certificate now: {exc}")
            )
        return Decision.reject(550, "5.7.1", _ascii(f"peer certificate refused: {exc}"))
    domain = domain.lower().rstrip(".")
    allowed = liste.dns_for(domain)
    if not allowed:
        return Decision.reject(
            550, "5.7.1", _ascii(f"domain {domain} is not on the MSSante liste blanche")
        )
    dn = subject_dn(chain[0])
    if dn not in allowed:
        return Decision.reject(
            550, "5.7.1", _ascii(f"peer certificate {dn} is not listed for domain {domain}")
        )
    return Decision.accept(_ascii(f"peer {dn} trusted for {domain}"))
