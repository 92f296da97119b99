"""One directory entry: an MSSanté mailbox (BAL) as the national directory describes it.

Why one flat, immutable record: every source (extraction file, FHIR, upstream
LDAP, our own mailboxes) is normalised into it, and every replica (SQL, LDAP)
stores it; the sync compares replicas with sources through ``content_hash``,
so the hash must depend on the content only, never on where it came from.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Final, Literal

BalType = Literal["PER", "ORG", "APP", "CAB"]
BAL_TYPES: Final = frozenset({"PER", "ORG", "APP", "CAB"})

#: Where a row came from.  ``national`` rows are replaced by national syncs;
#: ``local`` rows are our own mailboxes and win over a national row of the
#: same address (we are the authority for them, and fresher).
Scope = Literal["national", "local"]

# A pragmatic RFC 5321 check: dot-atom local part, LDH labels, a TLD.
_ADDRESS_RE: Final = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$"
)


def normalise_address(address: str) -> str:
    """The key every replica uses: trimmed, lower case (MSSanté addresses are)."""
    return address.strip().lower()


def is_valid_address(address: str) -> bool:
    """True for a syntactically plausible, already normalised address."""
    return len(address) <= 254 and _ADDRESS_RE.match(address) is not None


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """A BAL and what the directory publishes about it (SPEC DIR-1, BAL-1/2).

    Field order follows the 31 columns of the national extraction file, then
    the fields that no extraction column carries.  Empty values are ``""``.
    """

    bal_type: str
    address: str
    pp_id_type: str = ""
    pp_id: str = ""
    pp_national_id: str = ""
    structure_id_type: str = ""
    structure_id: str = ""
    service: str = ""
    civility: str = ""
    last_name: str = ""
    first_name: str = ""
    profession_category_code: str = ""
    profession_category: str = ""
    profession_code: str = ""
    profession: str = ""
    speciality_code: str = ""
    speciality: str = ""
    dematerialisation: bool = False
    org_name: str = ""
    org_trade_name: str = ""
    addr_complement_location: str = ""
    addr_complement_distribution: str = ""
    addr_street_number: str = ""
    addr_street_number_complement: str = ""
    addr_street_type: str = ""
    addr_street_name: str = ""
    addr_lieu_dit: str = ""
    addr_routing_line: str = ""
    addr_postcode: str = ""
    addr_department: str = ""
    addr_country: str = ""
    liste_rouge: bool = False
    #: The national resource owning the BAL when the source knows it
    #: (``Practitioner/123``); incremental FHIR syncs remove by owner.
    owner_ref: str = ""

    @property
    def display_name(self) -> str:
        """What an address book shows: the person, else the structure/service."""
        person = f"{self.first_name} {self.last_name}".strip()
        if self.bal_type == "PER" and person:
            return person
        parts = [p for p in (self.org_name or self.org_trade_name, self.service) if p]
        return " - ".join(parts) or person or self.address

    def record(self) -> tuple[str, ...]:
        """The content as strings, in field order (hash input, LDAP record)."""
        values = list(_GET_ALL(self))
        for index in _BOOL_INDICES:
            values[index] = "1" if values[index] else "0"
        return tuple(values)

    @property
    def content_hash(self) -> str:
        return hash_record(self.record())


#: Every field, in order; all of them are content (the hash covers them all).
CONTENT_FIELDS: Final[tuple[str, ...]] = tuple(f.name for f in fields(DirectoryEntry))
_BOOL_FIELDS: Final = frozenset({"dematerialisation", "liste_rouge"})
_BOOL_INDICES: Final = tuple(i for i, n in enumerate(CONTENT_FIELDS) if n in _BOOL_FIELDS)
_GET_ALL: Final = attrgetter(*CONTENT_FIELDS)


def hash_record(record: Sequence[str]) -> str:
    """16 hex digits of BLAKE2b: collisions among 10^6 rows are ~10^-8 likely."""
    data = "\x1f".join(record).encode("utf-8")
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def entry_from_record(record: tuple[str, ...] | list[str]) -> DirectoryEntry:
    """Rebuild an entry from ``record()`` output (LDAP replica storage)."""
    if len(record) != len(CONTENT_FIELDS):
        raise ValueError(f"expected {len(CONTENT_FIELDS)} fields, got {len(record)}")
    values: dict[str, str | bool] = {}
    for name, value in zip(CONTENT_FIELDS, record, strict=True):
        values[name] = value == "1" if name in _BOOL_FIELDS else value
    return DirectoryEntry(**values)  # type: ignore[arg-type]


def entry_from_mapping(values: dict[str, object]) -> DirectoryEntry:
    """Build an entry from a mapping of field names, ``None`` meaning empty."""
    clean: dict[str, str | bool] = {}
    for name in CONTENT_FIELDS:
        value = values.get(name)
        if name in _BOOL_FIELDS:
            clean[name] = bool(value)
        else:
            clean[name] = "" if value is None else str(value)
    clean["address"] = normalise_address(str(clean["address"]))
    return DirectoryEntry(**clean)  # type: ignore[arg-type]
