"""Fictitious national extraction files, for tests, demos and the benchmark.

Why in the package: the benchmark, the tests and a demo need the same
realistic shape (accented names, apostrophes, PER/ORG mix, empty columns,
a few duplicate addresses) and no real personal data may be used.
Generation is deterministic for a given seed and row index, so "the next
day's file" can be derived from a first one by changing chosen rows.
"""

from __future__ import annotations

import random
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from mssgw.directory.extraction import COLUMNS

FIRST = ("Jean", "Marie", "Hélène", "François", "Zoé", "Anaïs", "Jérôme", "Loïc", "Chloé",
         "Benoît", "Cécile", "Noël", "Agnès", "Gaël", "Inès", "Rémi", "Élodie", "Maël")
LAST = ("Martin", "Dupont", "D'Arcy", "Le Gall", "Lefèvre", "Béranger", "N'Diaye", "Çelik",
        "Müller", "Garçon", "O'Neill", "Étienne", "Faure", "Mercier", "Bézier", "Côté")
PROFS = (("10", "Médecin", "SM54", "Médecine générale (SM)"),
         ("21", "Pharmacien", "", ""),
         ("60", "Infirmier", "", ""),
         ("40", "Chirurgien-Dentiste", "SCD01", "Orthopédie dento-faciale"),
         ("50", "Sage-Femme", "", ""),
         ("10", "Médecin", "SM26", "Qualifié en médecine générale"))
ORGS = ("Centre hospitalier de l'Étang", "Clinique Sainte-Anne", "EHPAD Les Mûriers",
        "Laboratoire d'analyses Bel-Air", "Maison de santé pluriprofessionnelle",
        "CHU de Saint-Étienne", "Pharmacie de l'Hôtel de Ville")
SERVICES = ("", "", "Cardiologie", "Urgences", "Secrétariat médical", "Pédiatrie", "Imagerie")
DOMAINS = ("medecin.mssante.fr", "pharmacien.mssante.fr", "infirmier.mssante.fr",
           "ch-etang.mssante.fr", "clinique-sainte-anne.mssante.fr", "ght-exemple.fr")
STREETS = ("de la République", "Jean Jaurès", "de l'Église", "du Général de Gaulle",
           "des Lilas", "Saint-Éloi")


def header() -> str:
    return "|".join(COLUMNS)


def row(i: int, seed: int = 0, version: int = 0) -> str:
    """Row ``i`` of a fictitious file; ``version`` > 0 gives a changed row."""
    rnd = random.Random(seed * 1_000_003 + i)
    first, last = rnd.choice(FIRST), rnd.choice(LAST)
    if rnd.random() < 0.8:
        code, prof, sf_code, sf = rnd.choice(PROFS)
        local = f"{_ascii(first)}.{_ascii(last)}{i}"
        cols = ["PER", f"{local}@{rnd.choice(DOMAINS[:3])}", "8", f"1{i:010d}",
                f"81{i:010d}", "", "", "", rnd.choice(("M", "MME", "DR", "")),
                last.upper(), first, "C", "Civil", code, prof, sf_code, sf]
    else:
        cols = ["ORG", f"secretariat.{i}@{rnd.choice(DOMAINS[3:])}", "", "", "", "1",
                f"{rnd.randrange(10**8):09d}", rnd.choice(SERVICES), "", "", "", "", "", "",
                "", "", ""]
    cols.append(rnd.choice(("True", "False")))
    org = rnd.choice(ORGS) if cols[0] == "ORG" or rnd.random() < 0.3 else ""
    cols += [org, rnd.choice(("", "", "", org.split(" ")[0]))]
    cols += ["", rnd.choice(("", "BP 12")), str(rnd.randrange(1, 200)), "",
             rnd.choice(("rue", "avenue", "bd")), rnd.choice(STREETS), "",
             f"{rnd.randrange(1000, 95999):05d} VILLE", f"{rnd.randrange(1000, 95999):05d}",
             f"{rnd.randrange(1, 95):02d}", "FRANCE"]
    if version:
        cols[7] = f"Service v{version}"
    return "|".join(cols)


def lines(indices: Iterable[int], seed: int = 0, changed: frozenset[int] = frozenset(),
          duplicates: int = 0) -> Iterator[str]:
    """Header then rows; ``duplicates`` rows are repeated with another service."""
    yield header()
    repeat: list[int] = []
    for i in indices:
        yield row(i, seed, 1 if i in changed else 0)
        if len(repeat) < duplicates and i % 13 == 5:
            repeat.append(i)
    for i in repeat:
        yield row(i, seed, 2)


def write_zip(path: Path, text_lines: Iterable[str], stamp: str = "202501010600") -> Path:
    """A ZIP shaped like the ANS's, written line by line."""
    name = f"Extraction_Correspondance_MSSante_{stamp}.txt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf, zf.open(
        name, "w", force_zip64=True
    ) as member:
        for line in text_lines:
            member.write(line.encode("utf-8") + b"\n")
    return path


def _ascii(name: str) -> str:
    import unicodedata

    bare = unicodedata.normalize("NFKD", name)
    return "".join(c for c in bare if c.isalnum() and c.isascii()).lower()
