"""Our own mailboxes as a source: they go into the replica too (SPEC DIR-3).

Why a source like the others: the same diff/apply machinery keeps them in
step, with scope ``local`` so that a national sync never removes them and
they replace a national row of the same address (we are their authority).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from mssgw.directory.base import ScanStats
from mssgw.directory.entry import (
    BAL_TYPES,
    DirectoryEntry,
    Scope,
    is_valid_address,
    normalise_address,
)


def entries_from_local(mailboxes: Iterable[Any]) -> list[DirectoryEntry]:
    """Entries for our mailboxes: ``DirectoryEntry`` items pass through; objects
    shaped like ``mssgw.store.models.Mailbox`` (address, type, owner_id,
    structure_id, display_name, state, liste_rouge) are converted; deleted
    mailboxes are left out."""
    entries: list[DirectoryEntry] = []
    for item in mailboxes:
        if isinstance(item, DirectoryEntry):
            entries.append(item)
        elif getattr(item, "state", "active") != "deleted":
            entries.append(_from_mailbox(item))
    return entries


def _from_mailbox(box: Any) -> DirectoryEntry:
    bal_type = str(box.type)
    name = str(getattr(box, "display_name", "") or "")
    owner = str(getattr(box, "owner_id", "") or "")
    structure = str(getattr(box, "structure_id", "") or "")
    if bal_type == "PER":
        return DirectoryEntry(
            "PER", normalise_address(box.address), pp_national_id=owner,
            structure_id=structure, last_name=name,
            liste_rouge=bool(getattr(box, "liste_rouge", False)),
        )
    return DirectoryEntry(
        bal_type, normalise_address(box.address), structure_id=owner or structure,
        org_name=name, liste_rouge=bool(getattr(box, "liste_rouge", False)),
    )


class LocalSource:
    """A complete list of our mailboxes (absence means removal from the replica)."""

    name = "local"
    scope: Scope = "local"
    complete = True

    def __init__(self, entries: Iterable[DirectoryEntry]) -> None:
        self.entries = list(entries)

    def owners(self) -> frozenset[str]:
        return frozenset()

    def scan(
        self, stats: ScanStats, wanted: frozenset[str] | None = None
    ) -> Iterator[DirectoryEntry]:
        for number, entry in enumerate(self.entries, start=1):
            stats.read += 1
            if entry.bal_type not in BAL_TYPES or not is_valid_address(entry.address):
                stats.reject(number, f"invalid local mailbox {entry.address!r}")
                continue
            stats.valid += 1
            yield entry
