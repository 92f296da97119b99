"""Builders shared by the directory tests."""

from __future__ import annotations

from mssgw.directory import sample
from mssgw.directory.extraction import NCOLS


def line(bal_type: str = "PER", address: str = "a.b@medecin.mssante.fr", **cols: str) -> str:
    """One extraction line with every other column empty (``c<index>=value`` to fill)."""
    values = [""] * NCOLS
    values[0], values[1], values[17] = bal_type, address, "False"
    for key, value in cols.items():
        values[int(key[1:])] = value
    return "|".join(values)


def rows(n: int, start: int = 0, changed: frozenset[int] = frozenset()) -> list[str]:
    """Header + ``n`` fictitious rows."""
    return list(sample.lines(range(start, start + n), changed=changed))


def address_of(i: int) -> str:
    return sample.row(i).split("|")[1].lower()
