"""Mail addresses as MSSanté uses them.

BAL addresses are plain ``local@domain`` with a dot-atom local part
(RFC 5321 §4.1.2, RFC 5322 §3.4.1) and are compared case-insensitively: the
national directory publishes them in lower case, so we store them so.
"""

from __future__ import annotations

import re

from mssgw.config import is_domain
from mssgw.errors import MssgwError

# RFC 5322 §3.2.3 atext, dot-atom form.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_RE = re.compile(rf"^{_ATEXT}(\.{_ATEXT})*$")


class AddressError(MssgwError):
    """An address that is not of the form MSSanté accepts."""


def normalise(address: str) -> str:
    """Return ``address`` lower-cased, or raise ``AddressError`` saying why."""
    candidate = address.strip()
    if candidate.count("@") != 1:
        raise AddressError(f"{address!r} is not an address: expected local@domain")
    local, domain = candidate.lower().split("@")
    if not local or len(local) > 64 or not _LOCAL_RE.match(local):
        raise AddressError(f"{address!r}: invalid local part (letters, digits, . - _ + allowed)")
    if not is_domain(domain):
        raise AddressError(f"{address!r}: invalid domain {domain!r}")
    return f"{local}@{domain}"


def domain_of(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()
