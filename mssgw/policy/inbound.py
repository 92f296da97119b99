"""Inbound rules for mail from other operators (SPEC FLOW-1, TRUST-6).

Pure functions from facts to a ``Decision``; the port-25 session gathers the
facts (peer chain, liste blanche, mailbox state) and sends the reply.

Codes (RFC 5321 §4.2, RFC 3463 enhanced codes; docs/smtp.md has the table):

====================================  ====  =======  ========================================
situation                             code  enh.     why
====================================  ====  =======  ========================================
sender accepted                       250   2.1.0    X.1.0 other address status (sender ok)
no liste blanche in use               451   4.7.0    fail closed but transient (a copy may come)
peer not trusted for sender domain    550   5.7.1    from ``trust.binding.check_peer`` (TRUST-6)
sender domain not listed              550   5.7.1    FLOW-1
null sender, peer listed nowhere      550   5.7.1    idem, against every listed DN
recipient accepted                    250   2.1.5    X.1.5 destination address valid
domain not hosted here                550   5.1.2    X.1.2 bad destination system address: we are
                                                     not that system.  Not 5.7.1, which is kept for
                                                     trust refusals so a peer does not chase a
                                                     certificate problem
unknown or deleted mailbox            550   5.1.1    X.1.1 bad destination mailbox (a deleted BAL is
                                                     not distinguished from one that never existed)
suspended mailbox                     550   5.2.1    X.2.1 mailbox disabled, not accepting messages
too many recipients                   452   4.5.3    RFC 5321 §4.5.3.1.10: the client sends the rest
                                                     in another transaction
store or database failure             451   4.3.0    X.3.0 mail system status: retry later
====================================  ====  =======  ========================================
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from cryptography import x509

from mssgw.policy.decision import Decision
from mssgw.tls import chain as chainmod
from mssgw.tls.identity import subject_dn
from mssgw.trust.binding import check_peer
from mssgw.trust.listeblanche import ListeBlanche

SENDER_OK = "sender ok"


def check_sender(
    sender: str,
    chain: Sequence[x509.Certificate],
    liste: ListeBlanche | None,
    at: datetime,
    anchors: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList] | None,
) -> Decision:
    """May the peer presenting ``chain`` send mail from ``sender``?

    The sender's domain must be on the liste blanche and the peer's DN listed
    for it (TRUST-6).  A null reverse-path (``""``: bounces, DSNs) names no
    domain: the peer must then be listed for at least one domain.
    """
    if liste is None:
        return Decision.tempfail(451, "4.7.0", "no valid liste blanche in use, try again later")
    domain: str | None
    if sender:
        domain = sender.rpartition("@")[2].lower().rstrip(".")
    else:
        domain = _some_domain_of(chain, liste)
        if domain is None:
            # Authenticity first, as check_peer does: a bad chain gets the chain's reason.
            try:
                chainmod.validate(chain, anchors, at, crls)
            except chainmod.ChainError:
                return check_peer(chain, "", liste, at, anchors, crls)
            dn = subject_dn(chain[0])
            return Decision.reject(
                550, "5.7.1", _ascii(f"peer certificate {dn} is listed for no MSSante domain")
            )
    decision = check_peer(chain, domain, liste, at, anchors, crls)
    if not decision.ok:
        return decision
    return Decision("accept", 250, "2.1.0", SENDER_OK)


def check_recipient(address: str, hosted: Collection[str], state: str | None) -> Decision:
    """An active local mailbox of a hosted domain (FLOW-1).

    ``state`` is the mailbox's lifecycle state, ``None`` when it does not exist.
    """
    domain = address.rpartition("@")[2].lower()
    if domain not in hosted:
        return Decision.reject(550, "5.1.2", f"domain {_ascii(domain)} is not hosted here")
    if state is None or state == "deleted":
        return Decision.reject(550, "5.1.1", "no such mailbox")
    if state == "suspended":
        return Decision.reject(550, "5.2.1", "mailbox suspended, not accepting messages")
    if state != "active":
        return Decision.reject(550, "5.2.1", "mailbox not accepting messages")
    return Decision("accept", 250, "2.1.5", "recipient ok")


def check_recipient_count(accepted: int, limit: int) -> Decision:
    """Room for one more recipient?  ``accepted`` is the count so far."""
    if accepted >= limit:
        return Decision.tempfail(452, "4.5.3", f"too many recipients (at most {limit} per message)")
    return Decision.accept("room for a recipient")


def store_unavailable() -> Decision:
    """The store (database or disk) failed: transient, the peer retries."""
    return Decision.tempfail(451, "4.3.0", "temporary local problem, try again later")


def delivered(reference: str) -> Decision:
    """End of data: the message is durable in every recipient's INBOX (STORE-2)."""
    return Decision.accept(f"delivered as {reference}")


#: (list, DN -> one domain listing it): rebuilt when another list comes into use.
_DNS_CACHE: tuple[ListeBlanche | None, dict[str, str]] = (None, {})


def _some_domain_of(chain: Sequence[x509.Certificate], liste: ListeBlanche) -> str | None:
    """A domain the leaf's DN is listed for, or None (reverse index, cached per list)."""
    global _DNS_CACHE
    if not chain:
        return None
    if _DNS_CACHE[0] is not liste:
        index: dict[str, str] = {}
        for domain in sorted(liste.domain_names()):
            for dn in liste.dns_for(domain):
                index.setdefault(dn, domain)
        _DNS_CACHE = (liste, index)
    return _DNS_CACHE[1].get(subject_dn(chain[0]))


def _ascii(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode("ascii")
