"""Sync: diff a source against a replica, check the guards, apply only the difference.

Why two passes over the source: the first builds an index (address → content
hash, a few dozen bytes per row) so the diff and the guards are decided
before anything is written; the second yields only the entries to write.
Neither pass holds the 536,000 entries in memory.

Duplicate addresses in a source (the national file has a few) are resolved
by keeping the row with the *smallest content hash*: the choice depends on
the rows only, not on their order, so two runs over the same data agree.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from mssgw.directory.base import IndexItem, Replica, ScanStats, Source, SyncRefused
from mssgw.directory.entry import DirectoryEntry


@dataclass(frozen=True)
class Plan:
    """What a sync will change; computed before any write."""

    added: frozenset[str]
    changed: frozenset[str]
    removed: frozenset[str]
    unchanged: int
    skipped_local: int
    scope_size: int  # rows of the source's scope in the replica before the sync

    @property
    def to_write(self) -> frozenset[str]:
        return self.added | self.changed


@dataclass(frozen=True)
class Guards:
    """Shares above which a run is refused (SPEC DIR-3, issue 7)."""

    max_removal_share: float = 0.10
    max_invalid_share: float = 0.01


@dataclass
class SyncReport:
    """The outcome of one run, as stored in ``directory_sync_runs`` and printed."""

    source: str
    replica: str
    started_at: datetime
    status: str = "running"  # applied | refused | failed | dry-run
    reason: str = ""
    read: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped_local: int = 0
    duration: float = 0.0
    invalid_details: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        return data

    def summary(self) -> str:
        return (
            f"{self.status}: +{self.added} ~{self.changed} -{self.removed} "
            f"={self.unchanged} invalid {self.invalid}/{self.read} "
            f"duplicates {self.duplicates} in {self.duration:.1f}s"
            + (f" ({self.reason})" if self.reason else "")
        )


# --------------------------------------------------------------------------- pure parts


def merge_duplicate(index: dict[str, str], address: str, content_hash: str) -> bool:
    """Record one row in ``index``; True when the address was already there."""
    previous = index.get(address)
    if previous is None:
        index[address] = content_hash
        return False
    if content_hash < previous:
        index[address] = content_hash
    return True


def compute_plan(
    old: Mapping[str, IndexItem],
    new: Mapping[str, str],
    scope: str,
    complete: bool,
    owners: frozenset[str] = frozenset(),
) -> Plan:
    """The difference between a replica index and a source index (pure).

    Local rows are never touched by a national source; a local row replaces a
    national row of the same address.  A complete source removes every row
    of its scope it does not list; an incremental one only rows of the
    ``owners`` it returned.
    """
    added: set[str] = set()
    changed: set[str] = set()
    skipped = unchanged = 0
    for address, content_hash in new.items():
        item = old.get(address)
        if item is None:
            added.add(address)
        elif item.scope != scope:
            if scope == "local":
                changed.add(address)
            else:
                skipped += 1
        elif item.content_hash != content_hash:
            changed.add(address)
        else:
            unchanged += 1
    removed: set[str] = set()
    scope_size = 0
    for address, item in old.items():
        if item.scope != scope:
            continue
        scope_size += 1
        if address not in new and (complete or (item.owner_ref and item.owner_ref in owners)):
            removed.add(address)
    return Plan(
        frozenset(added), frozenset(changed), frozenset(removed), unchanged, skipped, scope_size
    )


def check_guards(plan: Plan, stats: ScanStats, guards: Guards) -> str | None:
    """The reason to refuse the run, or None (pure)."""
    if stats.read and stats.invalid / stats.read > guards.max_invalid_share:
        return (
            f"{stats.invalid} of {stats.read} lines invalid "
            f"({stats.invalid / stats.read:.1%} > {guards.max_invalid_share:.1%})"
        )
    if plan.scope_size and len(plan.removed) / plan.scope_size > guards.max_removal_share:
        return (
            f"would remove {len(plan.removed)} of {plan.scope_size} entries "
            f"({len(plan.removed) / plan.scope_size:.1%} > {guards.max_removal_share:.1%}); "
            "truncated source? rerun with a higher --max-removal-share if intended"
        )
    return None


# --------------------------------------------------------------------------- running


def index_source(source: Source, stats: ScanStats) -> tuple[dict[str, str], int]:
    """First pass: address → winning content hash, and the duplicate count."""
    index: dict[str, str] = {}
    duplicates = 0
    for address, content_hash in _hashes(source, stats):
        if merge_duplicate(index, address, content_hash):
            duplicates += 1
    return index, duplicates


def _hashes(source: Source, stats: ScanStats) -> Iterator[tuple[str, str]]:
    """``(address, content_hash)`` per valid row: the source's ``index`` when it has one.

    A source may offer ``index(stats)``, the same pairs and counts as ``scan``
    without building the entries (the extraction file does: it is the cost of
    an incremental sync).
    """
    index = getattr(source, "index", None)
    if callable(index):
        pairs: Iterator[tuple[str, str]] = index(stats)
        return pairs
    return ((entry.address, entry.content_hash) for entry in source.scan(stats))


def entries_to_write(
    source: Source, new: Mapping[str, str], wanted: frozenset[str]
) -> Iterator[tuple[DirectoryEntry, str]]:
    """Second pass: the winning row of each address to write, once each."""
    pending = set(wanted)
    for entry in source.scan(ScanStats(), wanted):
        address = entry.address
        if address in pending and entry.content_hash == new[address]:
            pending.discard(address)
            yield entry, source.scope


async def run_sync(
    source: Source,
    replica: Replica,
    guards: Guards = Guards(),
    *,
    dry_run: bool = False,
    progress: TextIO | None = None,
) -> SyncReport:
    """Index, diff, guard, apply.  A refusal raises ``SyncRefused`` with the report."""
    started = time.monotonic()
    report = SyncReport(source.name, replica.kind, datetime.now(UTC))
    bar = ProgressBar(progress, "indexing")
    stats = ScanStats()
    with _gc_paused():
        old = await replica.load_index()
        new, report.duplicates = index_source(source, stats)
        plan = compute_plan(old, new, source.scope, source.complete, source.owners())
        del old
    _fill(report, stats, plan)
    if source.scope == "local":  # our own list is authoritative: no removal guard
        guards = Guards(1.0, guards.max_invalid_share)
    refusal = check_guards(plan, stats, guards)
    if refusal is not None or dry_run:
        report.status, report.reason = ("refused", refusal) if refusal else ("dry-run", "")
        report.duration = time.monotonic() - started
        if refusal:
            raise SyncRefused(refusal, report)
        return report
    bar.start("applying", len(plan.to_write) + len(plan.removed))
    await replica.apply(plan.removed, entries_to_write(source, new, plan.to_write), bar.advance)
    bar.finish()
    report.status = "applied"
    report.duration = time.monotonic() - started
    return report


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while the indexes are built (restored after, even on error).

    The indexes are ~10^6 small acyclic objects (strings, tuples, dicts): the
    collector finds nothing in them, yet each full pass walks them all, ~15 %
    of an incremental sync.  Reference counting still frees them.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _fill(report: SyncReport, stats: ScanStats, plan: Plan) -> None:
    report.read, report.valid, report.invalid = stats.read, stats.valid, stats.invalid
    report.invalid_details = list(stats.invalid_details)
    report.added, report.changed, report.removed = (
        len(plan.added), len(plan.changed), len(plan.removed),
    )
    report.unchanged, report.skipped_local = plan.unchanged, plan.skipped_local


class ProgressBar:
    """A one-line counter on stderr, only when it is a terminal (no dependency)."""

    def __init__(self, stream: TextIO | None, label: str) -> None:
        self.stream = stream if stream is not None and stream.isatty() else None
        self.label, self.total, self.done, self._last = label, 0, 0, 0.0

    def start(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self._draw()

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._last >= 0.2:
            self._last = now
            self._draw()

    def finish(self) -> None:
        if self.stream is not None:
            self._draw()
            self.stream.write("\n")

    def _draw(self) -> None:
        if self.stream is None:
            return
        share = self.done / self.total if self.total else 1.0
        filled = int(share * 30)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total}"
        )
        self.stream.flush()

