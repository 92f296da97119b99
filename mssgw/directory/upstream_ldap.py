"""An upstream LDAP directory as a source (operators that already run one).

Read with a paged search (RFC 2696) so a large directory never arrives in
one response.  An entry written by another mssgw (``mssgwRecord``) is read
losslessly; any other ``inetOrgPerson`` with a ``mail`` is mapped from the
standard attributes (``mssgwBalType`` when present, else PER for a person
with a ``givenName`` and ORG otherwise [A]).  The source is complete: an
address absent upstream is removed from the replica (the removal guard
still applies).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import ldap3
from ldap3.core.exceptions import LDAPException

from mssgw.directory.base import DirectoryError, ScanStats
from mssgw.directory.entry import (
    BAL_TYPES,
    DirectoryEntry,
    Scope,
    entry_from_record,
    is_valid_address,
    normalise_address,
)

ATTRIBUTES = ["mail", "cn", "sn", "givenName", "o", "ou", "title", "postalCode", "l", "street",
              "mssgwBalType", "mssgwNationalId", "mssgwStructureId", "mssgwListeRouge",
              "mssgwRecord"]


def _one(attrs: dict[str, Any], name: str) -> str:
    value = attrs.get(name)
    if isinstance(value, list):
        value = value[0] if value else ""
    return "" if value is None else str(value)


def entry_from_attributes(attrs: dict[str, Any]) -> DirectoryEntry | str:
    """An entry, or why this LDAP entry cannot be one (pure)."""
    record = _one(attrs, "mssgwRecord")
    if record:
        try:
            return entry_from_record(json.loads(record))
        except (ValueError, TypeError) as exc:
            return f"unreadable mssgwRecord: {exc}"
    address = normalise_address(_one(attrs, "mail"))
    if not is_valid_address(address):
        return f"invalid address {address[:80]!r}"
    given = _one(attrs, "givenName")
    bal_type = (_one(attrs, "mssgwBalType") or ("PER" if given else "ORG")).upper()
    if bal_type not in BAL_TYPES:
        return f"unknown BAL type {bal_type[:10]!r} for {address}"
    return DirectoryEntry(
        bal_type, address, pp_national_id=_one(attrs, "mssgwNationalId"),
        structure_id=_one(attrs, "mssgwStructureId"), service=_one(attrs, "ou"),
        last_name=_one(attrs, "sn") if given else "", first_name=given,
        profession=_one(attrs, "title"),
        org_name=_one(attrs, "o") or ("" if given else _one(attrs, "cn")),
        addr_street_name=_one(attrs, "street"), addr_postcode=_one(attrs, "postalCode"),
        addr_routing_line=_one(attrs, "l"),
        liste_rouge=_one(attrs, "mssgwListeRouge").upper() == "TRUE",
    )


class UpstreamLdapSource:
    """Every entry with a ``mail`` below ``base`` on ``url``."""

    scope: Scope = "national"
    complete = True

    def __init__(self, url: str, base: str, bind_dn: str = "", password: str = "",
                 query: str = "(mail=*)", page_size: int = 500, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.url = f"{parts.scheme}://{parts.netloc}"
        # ldap://host/BASE is accepted as a shorthand for the base.
        self.base = base or parts.path.lstrip("/")
        self.name = f"ldap:{self.url}/{self.base}"
        self.bind_dn, self.password, self.query = bind_dn, password, query
        self.page_size, self.timeout = page_size, timeout

    def owners(self) -> frozenset[str]:
        return frozenset()

    def scan(
        self, stats: ScanStats, wanted: frozenset[str] | None = None
    ) -> Iterator[DirectoryEntry]:
        for number, attrs in enumerate(self._search(), start=1):
            stats.read += 1
            parsed = entry_from_attributes(attrs)
            if isinstance(parsed, str):
                stats.reject(number, parsed)
            else:
                stats.valid += 1
                yield parsed

    def _search(self) -> Iterator[dict[str, Any]]:
        server = ldap3.Server(self.url, connect_timeout=self.timeout, get_info=ldap3.NONE)
        try:
            conn = ldap3.Connection(server, self.bind_dn or None, self.password or None,
                                    auto_bind=True, receive_timeout=max(1, round(self.timeout)))
            found = conn.extend.standard.paged_search(
                self.base, self.query, ldap3.SUBTREE, attributes=ATTRIBUTES,
                paged_size=self.page_size, generator=True,
            )
            for item in found:
                if item.get("type") == "searchResEntry":
                    yield item["attributes"]
            conn.unbind()
        except LDAPException as exc:
            raise DirectoryError(f"upstream LDAP {self.url}: {exc}") from None
