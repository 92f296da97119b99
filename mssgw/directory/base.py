"""The two roles the sync connects: a *source* of entries and a *replica*.

Kept apart from both sides so that sources (extraction, FHIR, upstream LDAP,
our own mailboxes) and replicas (SQL, LDAP) never import one another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import NamedTuple, Protocol, TypeVar

from mssgw.directory.entry import DirectoryEntry, Scope
from mssgw.errors import MssgwError

T = TypeVar("T")

#: How many invalid lines a report keeps in detail (all are counted).
MAX_INVALID_DETAILS = 200


class DirectoryError(MssgwError):
    """A source or replica cannot be used (bad header, server refused, ...)."""


class SyncRefused(DirectoryError):
    """A guard refused the run; the replica was not touched.  ``report`` says why."""

    def __init__(self, reason: str, report: object = None) -> None:
        super().__init__(reason)
        self.report = report


@dataclass
class ScanStats:
    """What reading a source found, line numbers included, no personal data."""

    read: int = 0
    valid: int = 0
    invalid: int = 0
    invalid_details: list[tuple[int, str]] = field(default_factory=list)

    def reject(self, line_no: int, reason: str) -> None:
        self.invalid += 1
        if len(self.invalid_details) < MAX_INVALID_DETAILS:
            self.invalid_details.append((line_no, reason))


class Source(Protocol):
    """Entries to bring into the replica.

    ``scan`` may be called twice (once to index, once to write), so a source
    must be re-readable; it never needs to hold all entries in memory.
    ``complete`` says whether absence means removal (a full snapshot); an
    incremental source lists instead the ``owners`` it returned in full.
    """

    name: str
    scope: Scope
    complete: bool

    def scan(
        self, stats: ScanStats, wanted: frozenset[str] | None = None
    ) -> Iterator[DirectoryEntry]:
        """Valid entries; with ``wanted``, a source may skip other addresses early."""
        ...

    def owners(self) -> frozenset[str]: ...


class IndexItem(NamedTuple):
    """What the sync needs to know of a replica row to diff it."""

    content_hash: str
    scope: str
    owner_ref: str


Progress = Callable[[int], None]


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most ``size`` items (batches for writes)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class Replica(Protocol):
    """A local copy of the directory that the mail path reads."""

    kind: str

    async def load_index(self) -> dict[str, IndexItem]: ...

    async def apply(
        self,
        removed: Iterable[str],
        written: Iterable[tuple[DirectoryEntry, str]],
        progress: Progress,
    ) -> None:
        """Delete ``removed`` and (re)write ``written`` (entry, scope).

        A replica must leave readers on the previous state if this fails.
        """
        ...

    async def get(self, address: str) -> DirectoryEntry | None: ...

    async def local_entries(self) -> list[DirectoryEntry]: ...

    async def counts(self) -> dict[str, int]: ...
