"""``mssgw directory``: sync, lookup, stats, publish from the command line (SQL replica)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mssgw import cli
from mssgw.directory import sample
from mssgw.store import Store
from mssgw.store.mailboxes import NewMailbox
from mssgw.store.models import MailboxType
from tests.conftest import settings_for


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run ``mssgw -c CONFIG ...`` in-process; return (exit code, stdout, stderr)."""
    settings = settings_for(tmp_path)
    if "directory" not in cli.GROUPS:
        monkeypatch.setattr(cli, "GROUPS", (*cli.GROUPS, "directory"))

    async def prepare() -> None:
        store = await Store.open(settings, check_schema=False)
        await store.upgrade()
        await store.mailboxes.add_domain("op1.mssante.test")
        await store.mailboxes.add(NewMailbox("dr.house@op1.mssante.test", MailboxType.PER,
                                             "810000000001", display_name="G. House"))
        await store.close()

    asyncio.run(prepare())

    def go(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli.main(["-c", settings.source, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return go


def test_sync_lookup_stats(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    day1 = sample.write_zip(tmp_path / "day1.zip", sample.lines(range(20)))
    code, out, _ = run("directory", "sync", "--source", f"extraction:{day1}")
    assert code == 0 and out.startswith("applied: +20 ~0 -0 =0")
    code, out, _ = run("directory", "sync", "--source", f"extraction:{day1}")
    assert code == 0 and out.startswith("applied: +0 ~0 -0 =20")

    address = sample.row(4).split("|")[1]
    code, out, _ = run("directory", "lookup", address.upper(), "--json")
    assert code == 0 and json.loads(out)["address"] == address
    code, _, err = run("directory", "lookup", "nobody@nowhere.mssante.fr")
    assert code == 1 and "not in the directory replica" in err

    code, out, _ = run("directory", "stats", "--json")
    stats = json.loads(out)
    assert stats["counts"]["total"] == 20 and len(stats["runs"]) == 2


def test_guards_refuse_and_are_reported(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    day1 = sample.write_zip(tmp_path / "day1.zip", sample.lines(range(20)))
    run("directory", "sync", "--source", f"extraction:{day1}")
    short = sample.write_zip(tmp_path / "short.zip", sample.lines(range(5)))
    code, _, err = run("directory", "sync", "--source", f"extraction:{short}")
    assert code == 1 and "would remove 15 of 20 entries" in err
    code, out, _ = run("directory", "sync", "--source", f"extraction:{short}",
                       "--max-removal-share", "0.8", "--dry-run")
    assert code == 0 and out.startswith("dry-run: +0 ~0 -15")
    broken = sample.write_zip(tmp_path / "broken.zip", [*sample.lines(range(20)), "oops"])
    code, _, err = run("directory", "sync", "--source", f"extraction:{broken}")
    assert code == 1 and "1 of 21 lines invalid" in err and "line 22: 1 columns" in err
    code, out, _ = run("directory", "stats", "--json")
    assert [r["status"] for r in json.loads(out)["runs"]] == ["refused", "refused", "applied"]
    code, _, err = run("directory", "sync", "--source", "nonsense")
    assert code == 1 and "expected extraction:FILE.zip" in err


def test_local_mailboxes_and_publish_dry_run(run) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run("directory", "sync", "--source", "local")
    assert code == 0 and out.startswith("applied: +1")
    code, out, err = run("directory", "publish", "--dry-run")
    assert code == 0 and "1 request(s), none sent" in err
    assert "PATCH https://publish.invalid/fhir/v2/Practitioner?identifier=" in out
    assert '"valueString": "Practitioner"' in out and "dr.house@op1.mssante.test" in out
    code, _, err = run("directory", "publish")
    assert code == 1 and "publish_url is not set" in err
