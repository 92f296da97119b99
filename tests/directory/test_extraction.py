"""The national extraction file: header, line validation, streaming (SPEC DIR-1)."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from mssgw.directory import sample
from mssgw.directory.base import DirectoryError, ScanStats
from mssgw.directory.entry import DirectoryEntry
from mssgw.directory.extraction import (
    COLUMNS,
    ExtractionSource,
    check_header,
    index_line,
    parse_line,
)
from tests.directory.helpers import line


@pytest.mark.parametrize(
    ("header", "error"),
    [
        ("|".join(COLUMNS), None),
        ("\ufeff" + "|".join(COLUMNS), None),  # a BOM is tolerated
        ("|".join(c.upper() for c in COLUMNS), None),  # case is not significant
        ("|".join(COLUMNS).replace("Prénom", "Prenom"), None),  # nor accents
        ("|".join(COLUMNS[:-1]), "has 30 columns, expected 31"),
        ("|".join(COLUMNS).replace("Adresse BAL", "Mail"), "column 2 is 'Mail'"),
        ("", "has 1 columns"),
    ],
)
def test_header_check(header: str, error: str | None) -> None:
    if error is None:
        check_header(header + "\r\n")
    else:
        with pytest.raises(DirectoryError, match=error):
            check_header(header)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (line(), "ok"),
        (line("org", "Secretariat@CH-Exemple.MSSante.fr"), "ok"),
        (line("PER", " a.b@medecin.mssante.fr "), "ok"),
        (line("XXX"), "unknown BAL type 'XXX'"),
        (line("PER", "not-an-address"), "invalid address 'not-an-address'"),
        (line("PER", "a b@medecin.mssante.fr"), "invalid address"),
        (line("PER", "a@b"), "invalid address"),
        (line() + "|extra", "32 columns, expected 31"),
        ("PER|a@b.fr", "2 columns, expected 31"),
        (line(c17="peut-être"), "invalid Dématérialisation value"),
        (line(c9="Dupont\ufffd"), "not valid UTF-8"),
    ],
)
def test_parse_line(text: str, expected: str) -> None:
    parsed = parse_line(text)
    if expected == "ok":
        assert isinstance(parsed, DirectoryEntry)
        assert parsed.address == parsed.address.strip().lower()
        assert parsed.bal_type in ("PER", "ORG")
    else:
        assert isinstance(parsed, str) and expected in parsed


def test_parse_line_maps_every_column() -> None:
    values = [f"v{i}" for i in range(31)]
    values[0], values[1], values[17] = "PER", "jean.d'arcy@medecin.mssante.fr", "True"
    entry = parse_line("|".join(values))
    assert isinstance(entry, DirectoryEntry)
    assert entry.address == "jean.d'arcy@medecin.mssante.fr"
    assert (entry.pp_national_id, entry.last_name, entry.first_name) == ("v4", "v9", "v10")
    assert (entry.speciality, entry.dematerialisation, entry.org_name) == ("v16", True, "v18")
    assert (entry.addr_postcode, entry.addr_department, entry.addr_country) == ("v28", "v29", "v30")


def test_stream_reports_bad_lines_with_numbers(make_zip: Callable[..., Path]) -> None:
    path = make_zip([sample.header(), line(address="a@medecin.mssante.fr"), line("BAD"),
                     "", line(address="b@medecin.mssante.fr"), "PER|short"])
    stats = ScanStats()
    entries = list(ExtractionSource(path).scan(stats))
    assert [e.address for e in entries] == ["a@medecin.mssante.fr", "b@medecin.mssante.fr"]
    assert (stats.read, stats.valid, stats.invalid) == (4, 2, 2)
    assert [n for n, _ in stats.invalid_details] == [3, 6]


def test_invalid_utf8_is_one_bad_line_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    body = (sample.header() + "\n" + line(address="a@medecin.mssante.fr") + "\n").encode()
    body += line(address="b@medecin.mssante.fr").encode().replace(b"False", b"Fal\xff") + b"\n"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("Extraction_Correspondance_MSSante_202501010600.txt", body)
    stats = ScanStats()
    assert len(list(ExtractionSource(path).scan(stats))) == 1
    assert stats.invalid_details == [(3, "not valid UTF-8")]


def test_plain_text_file_and_crlf_are_read(tmp_path: Path) -> None:
    path = tmp_path / "Extraction_Correspondance_MSSante_202501010600.txt"
    path.write_bytes((sample.header() + "\r\n" + line() + "\r\n").encode())
    assert [e.address for e in ExtractionSource(path).scan(ScanStats())] == [
        "a.b@medecin.mssante.fr"
    ]


def test_bad_header_refuses_the_file(make_zip: Callable[..., Path]) -> None:
    path = make_zip(["Type|Mail", line()])
    with pytest.raises(DirectoryError, match="header has 2 columns"):
        list(ExtractionSource(path).scan(ScanStats()))


def test_zip_without_the_expected_member(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.md", "hello")
    with pytest.raises(DirectoryError, match="found 0 candidate"):
        list(ExtractionSource(path).scan(ScanStats()))


def test_missing_file_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match="cannot read"):
        list(ExtractionSource(tmp_path / "absent.zip").scan(ScanStats()))


def test_large_file_is_streamed(make_zip: Callable[..., Path]) -> None:
    """Reading does not build the whole text: memory stays flat as lines go by."""
    import tracemalloc

    path = make_zip(sample.lines(range(20_000)))
    tracemalloc.start()
    count = sum(1 for _ in ExtractionSource(path).scan(ScanStats()))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 20_000
    assert peak < 4 * 1024 * 1024  # the text alone is ~5 MB


@pytest.mark.parametrize(
    "text",
    [
        line(),
        line("org", " Secretariat@CH-Exemple.MSSante.fr ", c9=" Dupont ", c17="Vrai"),
        line(c17="O"),
        line(c17=""),
        line(c17="1", c10="Hélène", c18="Clinique de l'Étang"),
        *list(sample.lines(range(20)))[1:],  # without the header
        line("XXX"),
        line("PER", "not-an-address"),
        line(c17="peut-être"),
        line(c9="Dupont\ufffd"),
        "PER|short",
    ],
)
def test_index_line_hashes_as_the_entry_does(text: str) -> None:
    """The index pass skips building entries; it must hash exactly as they do."""
    parsed, indexed = parse_line(text), index_line(text)
    if isinstance(parsed, str):
        assert indexed == parsed
    else:
        assert indexed == (parsed.address, parsed.content_hash)


def test_index_counts_as_scan_does(make_zip: Callable[..., Path]) -> None:
    path = make_zip([*sample.lines(range(30), duplicates=3), line("BAD"), "", "PER|short"])
    scanned, indexed = ScanStats(), ScanStats()
    entries = [(e.address, e.content_hash) for e in ExtractionSource(path).scan(scanned)]
    assert list(ExtractionSource(path).index(indexed)) == entries
    assert indexed == scanned and scanned.invalid == 2
