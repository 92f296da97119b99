"""The national extraction file (SPEC DIR-1), read as a stream.

Why streamed: the text inside the ZIP is ~89 MB and ~536,000 lines; the
sync reads it twice (index, then write) and holds neither pass in memory.
Each line is validated on its own; a bad line is counted and reported with
its line number, never fatal by itself (the sync's guard decides on the
share of bad lines).  A bad header is fatal: columns would be misread.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Final, cast

from mssgw.directory.base import DirectoryError, ScanStats
from mssgw.directory.entry import (
    BAL_TYPES,
    DirectoryEntry,
    Scope,
    hash_record,
    is_valid_address,
)

#: The 31 columns of DIR-1, in order.  The nine postal-address names are
#: spelled as SPEC DIR-1 lists them [A]: the header check compares names
#: without case, accents or spacing differences (see ``_fold``).
COLUMNS: Final[tuple[str, ...]] = (
    "Type de BAL",
    "Adresse BAL",
    "Type Identifiant PP",
    "Identifiant PP",
    "Identification nationale PP",
    "Type identifiant structure",
    "Identification Structure",
    "Service de rattachement",
    "Civilité d'exercice",
    "Nom d'exercice",
    "Prénom d'exercice",
    "Catégorie profession",
    "Libellé catégorie profession",
    "Code profession",
    "Libellé profession",
    "Code savoir-faire",
    "Libellé savoir-faire",
    "Dématérialisation",
    "Raison sociale structure",
    "Enseigne commerciale structure",
    "Complément localisation",
    "Complément distribution",
    "Numéro de voie",
    "Complément numéro",
    "Type de voie",
    "Libellé de voie",
    "Lieu-dit",
    "Ligne d'acheminement",
    "Code postal",
    "Département",
    "Pays",
)
NCOLS: Final = len(COLUMNS)
_DEMAT_INDEX: Final = 17
_NAME_RE: Final = re.compile(r"Extraction_Correspondance_MSSante_\d{12}\.txt$")
_ENTRY: Final[Callable[..., DirectoryEntry]] = DirectoryEntry  # positional, column order
_TRUE: Final = frozenset({"true", "vrai", "o", "oui", "1"})
_FALSE: Final = frozenset({"false", "faux", "n", "non", "0", ""})
#: ``record()`` values of the fields no column carries: liste_rouge (False), owner_ref.
_NOT_IN_FILE: Final = ("0", "")


def _fold(name: str) -> str:
    """Compare header names without accents, case, quotes style or spacing."""
    decomposed = unicodedata.normalize("NFKD", name.replace("’", "'"))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.casefold().split())


_FOLDED: Final = tuple(_fold(c) for c in COLUMNS)


def check_header(line: str) -> None:
    """Raise ``DirectoryError`` naming the first column that does not match."""
    names = line.lstrip("\ufeff").rstrip("\r\n").split("|")
    if len(names) != NCOLS:
        raise DirectoryError(
            f"extraction header has {len(names)} columns, expected {NCOLS} (SPEC DIR-1)"
        )
    for pos, (found, expected) in enumerate(zip(names, _FOLDED, strict=True), start=1):
        if _fold(found) != expected:
            raise DirectoryError(
                f"extraction header column {pos} is {found!r}, expected {COLUMNS[pos - 1]!r}"
            )


def _columns(line: str) -> list[str] | str:
    """The normalised columns of a data line, or why it is invalid.

    Normalised as ``DirectoryEntry.record()`` spells them: stripped, BAL type
    upper case, address lower case, ``Dématérialisation`` as ``"1"``/``"0"``.
    """
    if "\ufffd" in line:
        return "not valid UTF-8"
    cols = line.rstrip("\r\n").split("|")
    if len(cols) != NCOLS:
        return f"{len(cols)} columns, expected {NCOLS}"
    cols = list(map(str.strip, cols))
    bal_type = cols[0].upper()
    if bal_type not in BAL_TYPES:
        return f"unknown BAL type {cols[0][:10]!r}"
    address = cols[1].lower()
    if not is_valid_address(address):
        return f"invalid address {cols[1][:80]!r}"
    demat = cols[_DEMAT_INDEX].lower()
    if demat in _TRUE:
        cols[_DEMAT_INDEX] = "1"
    elif demat in _FALSE:
        cols[_DEMAT_INDEX] = "0"
    else:
        return f"invalid Dématérialisation value {cols[_DEMAT_INDEX][:10]!r}"
    cols[0], cols[1] = bal_type, address
    return cols


def parse_line(line: str) -> DirectoryEntry | str:
    """One data line to an entry, or the reason it is invalid (a pure function)."""
    cols = _columns(line)
    if isinstance(cols, str):
        return cols
    return _ENTRY(*cols[:_DEMAT_INDEX], cols[_DEMAT_INDEX] == "1", *cols[_DEMAT_INDEX + 1 :])


def index_line(line: str) -> tuple[str, str] | str:
    """``(address, content_hash)`` of a data line, or the reason it is invalid.

    The very hash ``parse_line(line).content_hash`` gives (what the replicas
    store), computed from the columns without building the entry: the index
    pass reads every line, and an incremental sync writes only ~1 % of them.
    """
    cols = _columns(line)
    if isinstance(cols, str):
        return cols
    cols += _NOT_IN_FILE
    return cols[1], hash_record(cols)


def _address_of(line: str) -> str:
    parts = line.split("|", 2)
    return parts[1].strip().lower() if len(parts) > 1 else ""


class ExtractionSource:
    """A ZIP holding one ``Extraction_Correspondance_MSSante_*.txt`` (or that text)."""

    scope: Scope = "national"
    complete = True

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"extraction:{self.path.name}"

    def owners(self) -> frozenset[str]:
        return frozenset()

    def scan(
        self, stats: ScanStats, wanted: frozenset[str] | None = None
    ) -> Iterator[DirectoryEntry]:
        """Yield valid entries; count and describe invalid lines in ``stats``.

        With ``wanted`` (the write pass), lines of other addresses are skipped
        before being parsed: an incremental sync parses ~1 % of the file.
        """
        for line_no, line in self._lines(wanted):
            stats.read += 1
            parsed = parse_line(line)
            if isinstance(parsed, str):
                stats.reject(line_no, parsed)
            else:
                stats.valid += 1
                yield parsed

    def index(self, stats: ScanStats) -> Iterator[tuple[str, str]]:
        """``(address, content_hash)`` of the valid lines, counted as ``scan`` counts them."""
        for line_no, line in self._lines(None):
            stats.read += 1
            parsed = index_line(line)
            if isinstance(parsed, str):
                stats.reject(line_no, parsed)
            else:
                stats.valid += 1
                yield parsed

    def _lines(self, wanted: frozenset[str] | None) -> Iterator[tuple[int, str]]:
        """The non-blank data lines and their numbers (header checked)."""
        with self._open_text() as text:
            check_header(text.readline())
            for line_no, line in enumerate(text, start=2):
                if not line.strip():
                    continue
                if wanted is not None and _address_of(line) not in wanted:
                    continue
                yield line_no, line

    def _open_text(self) -> io.TextIOWrapper:
        """A text stream over the member: decoded on the fly, bad bytes marked."""
        try:
            if not zipfile.is_zipfile(self.path):
                raw: io.BufferedIOBase = open(self.path, "rb")  # noqa: SIM115
            else:
                raw = _open_member(zipfile.ZipFile(self.path))
        except OSError as exc:
            raise DirectoryError(f"{self.path}: cannot read: {exc.strerror}") from None
        return io.TextIOWrapper(
            cast(BinaryIO, raw), encoding="utf-8", errors="replace", newline=None
        )


def _open_member(archive: zipfile.ZipFile) -> io.BufferedIOBase:
    names = [n for n in archive.namelist() if not n.endswith("/")]
    wanted = [n for n in names if _NAME_RE.search(n)] or [n for n in names if n.endswith(".txt")]
    if len(wanted) != 1:
        archive.close()
        raise DirectoryError(
            f"{archive.filename}: expected one Extraction_Correspondance_MSSante_*.txt, "
            f"found {len(wanted)} candidate(s)"
        )
    return _ClosingMember(archive, wanted[0])


class _ClosingMember(io.BufferedReader):
    """The member stream that also closes its archive (one ``with`` for both)."""

    def __init__(self, archive: zipfile.ZipFile, name: str) -> None:
        self._archive = archive
        super().__init__(archive.open(name), buffer_size=1 << 20)  # type: ignore[arg-type]

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._archive.close()
