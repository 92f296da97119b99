"""Trace header fields prepended to a message (RFC 5321 §4.4, RFC 5322 §3.6.7).

``received`` builds the ``Received:`` line every SMTP server adds, here with
what MSSanté auditing needs in it: the peer certificate's DN (the operator's
identity, TRUST-6), the TLS version and cipher (TLS-2), the protocol
(``ESMTPS`` / ``ESMTPSA``, RFC 3848) and a transaction id that also appears
in the trace record.  ``return_path`` is the line the final delivery MTA
adds (RFC 5321 §4.4: "When the delivery SMTP server makes the final
delivery of a message, it inserts a return-path line").

Everything is ASCII: a DN may hold accented letters ("Bouches-du-Rhône"),
which are folded to their base letter (the exact DN is in the trace
record); parentheses and backslashes inside comments are quoted-pairs.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from functools import lru_cache

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*\Z")
_LITERAL = re.compile(r"\[[\x21-\x5a\x5e-\x7e]+\]\Z")
FOLD = "\r\n\t"


@dataclass(frozen=True, slots=True)
class TlsInfo:
    """The negotiated TLS parameters and the peer's identity."""

    version: str
    cipher: str
    bits: int
    peer_dn: str | None

    def describe(self) -> str:
        """``"TLSv1.2 ECDHE-RSA-AES256-GCM-SHA384"``: the trace record's ``tls`` value."""
        return f"{self.version} {self.cipher}"


@lru_cache(maxsize=1024)  # the same DNs, ciphers and addresses, message after message
def ascii_text(text: str) -> str:
    """Accents dropped, anything else non-ASCII or control escaped."""
    bare = "".join(
        ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)
    )
    out = bare.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(ch if " " <= ch <= "~" else f"\\x{ord(ch):02x}" for ch in out)


@lru_cache(maxsize=1024)
def escape_comment(text: str) -> str:
    """Text safe inside an RFC 5322 §3.2.2 comment: ``(`` ``)`` ``\\`` quoted."""
    return re.sub(r"([()\\])", r"\\\1", ascii_text(text))


def comment(text: str) -> str:
    return f"({escape_comment(text)})"


def address_literal(ip: str) -> str:
    """RFC 5321 §4.1.3: ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``."""
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


def received(
    *,
    helo: str,
    peer_ip: str,
    by: str,
    protocol: str,
    ident: str,
    when: datetime,
    tls: TlsInfo | None,
    recipient: str | None = None,
) -> bytes:
    """One ``Received:`` field, folded, CRLF terminated.

    ``recipient`` is given only for a single-recipient transaction: naming one
    of several recipients would disclose the others' presence (RFC 5321 §7.6).
    """
    literal = address_literal(peer_ip)
    if _DOMAIN.match(helo) or _LITERAL.match(helo):
        origin = f"from {helo} ({literal})"
    else:
        origin = f"from {literal} ({literal}) {comment('EHLO ' + helo[:100])}"
    lines = [f"Received: {origin}"]
    if tls is not None:
        version, cipher = escape_comment(tls.version), escape_comment(tls.cipher)
        # A nested comment is fine in a comment (RFC 5322 §3.2.2 ccontent).
        lines.append(f"(using {version} with cipher {cipher} ({tls.bits}/{tls.bits} bits))")
        if tls.peer_dn is not None:
            lines.append(comment(f"peer certificate {tls.peer_dn} verified"))
    lines.append(f"by {by} (mssgw) with {protocol} id {ident}")
    if recipient:
        lines.append(f"for <{ascii_text(recipient)}>")
    lines[-1] += ";"
    lines.append(format_datetime(when))
    text = FOLD.join(lines)
    return (text + "\r\n").encode("ascii")


def return_path(sender: str) -> bytes:
    """``Return-Path: <sender>`` (``<>`` for the null reverse-path), RFC 5322 §3.6.7."""
    return f"Return-Path: <{ascii_text(sender)}>\r\n".encode("ascii")
