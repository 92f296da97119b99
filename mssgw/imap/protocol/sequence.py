"""Sequence sets (RFC 3501 §9 ``sequence-set``, RFC 5182 ``$``).

A set is kept as the ranges the client wrote, with ``None`` for ``*``; it is
never expanded eagerly, because ``1:*`` or ``1:4294967295`` must cost nothing
to parse.  The session resolves ``*`` against the largest message number or
UID in use when it evaluates the set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .errors import BadCommand

MAX_NUMBER = 0xFFFFFFFF  # RFC 3501 §4.2: numbers are unsigned 32-bit

Bound = int | None  # None is "*"

_SET_RE = re.compile(rb"(?:\d+|\*)(?::(?:\d+|\*))?(?:,(?:\d+|\*)(?::(?:\d+|\*))?)*")


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """Ranges ``(first, last)`` as written; ``saved`` is RFC 5182 ``$``."""

    ranges: tuple[tuple[Bound, Bound], ...] = ()
    saved: bool = False

    @classmethod
    def parse(cls, raw: bytes | str) -> SequenceSet:
        """Parse ``2,4:7,9:*`` or ``$``; raise :class:`BadCommand` otherwise."""
        data = raw.encode("ascii", "replace") if isinstance(raw, str) else bytes(raw)
        if data == b"$":
            return cls(saved=True)
        if not _SET_RE.fullmatch(data):
            raise BadCommand(f"invalid sequence set {data[:40]!r}")
        ranges: list[tuple[Bound, Bound]] = []
        for item in data.split(b","):
            first, _, last = item.partition(b":")
            a = _bound(first)
            ranges.append((a, _bound(last) if last else a))
        return cls(tuple(ranges))

    @classmethod
    def from_ints(cls, values: Iterable[int]) -> SequenceSet:
        """Smallest set naming exactly ``values`` (for COPYUID, SEARCH...).

        ``[1, 2, 3, 5]`` becomes ``1:3,5``.
        """
        ranges: list[tuple[Bound, Bound]] = []
        for v in sorted(set(values)):
            if v < 1 or v > MAX_NUMBER:
                raise ValueError(f"not a message number: {v}")
            if ranges and ranges[-1][1] == v - 1:
                ranges[-1] = (ranges[-1][0], v)
            else:
                ranges.append((v, v))
        return cls(tuple(ranges))

    @property
    def uses_star(self) -> bool:
        return any(a is None or b is None for a, b in self.ranges)

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive ranges with ``*`` read as ``largest``.

        RFC 3501 §6.4.8: ``559:*`` always includes the largest value even if
        559 is higher, so each range is just reordered, never clipped; the
        caller intersects the result with the numbers that exist.
        A ``$`` set must be replaced by the saved result before this call.
        """
        if self.saved:
            raise ValueError("a '$' set must be substituted before resolving")
        spans = []
        for a, b in self.ranges:
            lo = largest if a is None else a
            hi = largest if b is None else b
            spans.append((min(lo, hi), max(lo, hi)))
        spans.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        return merged

    def contains(self, value: int, largest: int) -> bool:
        """Whether ``value`` is in the set when ``*`` is ``largest``."""
        for a, b in self.ranges:
            lo = largest if a is None else a
            hi = largest if b is None else b
            if min(lo, hi) <= value <= max(lo, hi):
                return True
        return False

    def iter(self, largest: int) -> Iterator[int]:
        """Every number in ascending order (callers bound ``largest``)."""
        for lo, hi in self.resolve(largest):
            yield from range(lo, hi + 1)

    def __str__(self) -> str:
        if self.saved:
            return "$"
        parts = []
        for a, b in self.ranges:
            first = "*" if a is None else str(a)
            parts.append(first if a == b else f"{first}:{'*' if b is None else b}")
        return ",".join(parts)

    def __bytes__(self) -> bytes:
        return str(self).encode("ascii")


def _bound(token: bytes) -> Bound:
    if token == b"*":
        return None
    if len(token) > 10 or token.startswith(b"0"):
        raise BadCommand(f"invalid message number {token[:12]!r}")
    value = int(token)
    if value > MAX_NUMBER:
        raise BadCommand(f"message number out of range {token!r}")
    return value
