"""Golden tests: ENVELOPE, BODYSTRUCTURE and sections of tests/imap/corpus.

Each ``name.eml`` has ``name.txt`` (IMAP syntax and every section, readable)
and ``name.json`` (the cached JSON form).  The expected files were generated
once with ``MSSGW_REGEN_CORPUS=1`` and then checked by hand against RFC 3501
§6.4.5/§7.4.2 (notes in ``corpus/README.md``); regenerate only on purpose.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mssgw.imap import mime
from mssgw.imap.protocol.commands import Section

CORPUS = Path(__file__).parent / "corpus"
MESSAGES = sorted(p.stem for p in CORPUS.glob("*.eml"))
REGEN = os.environ.get("MSSGW_REGEN_CORPUS") == "1"


def show(data: bytes | None, limit: int | None = None) -> str:
    if data is None:
        return "NIL"
    text = data[:limit] if limit is not None else data
    shown = text.decode("utf-8", "backslashreplace").replace("\r", "\\r").replace("\n", "\\n")
    return shown + ("..." if limit is not None and len(data) > limit else "")


def report(raw: bytes) -> str:
    root = mime.parse_message(raw)
    structure = mime.bodystructure(raw, root)
    lines = [
        f"RFC822.SIZE {len(raw)}",
        "ENVELOPE " + show(mime.render_envelope(mime.envelope(raw, root))),
        "BODYSTRUCTURE " + show(mime.render_bodystructure(structure)),
        "BODY " + show(mime.render_bodystructure(structure, extensible=False)),
        f"BODY[HEADER] {len(mime.section(raw, Section(text='HEADER'), root) or b'')} octets",
        f"BODY[TEXT] {len(mime.section(raw, Section(text='TEXT'), root) or b'')} octets",
    ]
    for path, part in mime.walk(root):
        name = ".".join(map(str, path))
        body = mime.section(raw, Section(path), root)
        lines.append(f"BODY[{name}] {len(body or b'')} octets: {show(body, 50)}")
        lines.append(f"BODY[{name}.MIME] {show(mime.section(raw, Section(path, 'MIME'), root))}")
        if part.message is not None:
            header = mime.section(raw, Section(path, "HEADER"), root)
            lines.append(f"BODY[{name}.HEADER] {show(header)}")
            text = mime.section(raw, Section(path, "TEXT"), root)
            lines.append(f"BODY[{name}.TEXT] {len(text or b'')} octets")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", MESSAGES)
def test_golden(name: str) -> None:
    raw = (CORPUS / f"{name}.eml").read_bytes()
    got_txt = report(raw)
    got_json = json.dumps(
        {"envelope": mime.envelope(raw), "bodystructure": mime.bodystructure(raw)},
        indent=1,
        sort_keys=True,
    )
    if REGEN:
        (CORPUS / f"{name}.txt").write_text(got_txt, encoding="utf-8")
        (CORPUS / f"{name}.json").write_text(got_json + "\n", encoding="utf-8")
    assert got_txt == (CORPUS / f"{name}.txt").read_text(encoding="utf-8")
    assert json.loads(got_json) == json.loads((CORPUS / f"{name}.json").read_text("utf-8"))


@pytest.mark.parametrize("name", MESSAGES)
def test_cached_json_renders_like_fresh(name: str) -> None:
    """The store caches the JSON; rendering it after a round trip through
    json must give the same octets (8-bit header bytes included)."""
    raw = (CORPUS / f"{name}.eml").read_bytes()
    structure = mime.bodystructure(raw)
    cached = json.loads(json.dumps(structure))
    assert mime.render_bodystructure(cached) == mime.render_bodystructure(structure)
    env = mime.envelope(raw)
    assert mime.render_envelope(json.loads(json.dumps(env))) == mime.render_envelope(env)


@pytest.mark.parametrize("name", MESSAGES)
def test_sizes_match_sections(name: str) -> None:
    """body-fld-octets of every part equals the octets BODY[part] returns."""
    raw = (CORPUS / f"{name}.eml").read_bytes()
    root = mime.parse_message(raw)
    assert mime.section(raw, Section(), root) == raw
    for path, part in mime.walk(root):
        body = mime.section(raw, Section(path), root)
        assert body is not None
        assert len(body) == part.end - part.body_start
