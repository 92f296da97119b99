"""``mssgw trace``: operators read the audit traces and apply their retention."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest

from mssgw import config
from mssgw.cli import main
from mssgw.store import Store
from mssgw.store.timeutil import now
from mssgw.store.traces import TraceRecord


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "mssgw.toml"
    path.write_text(f'[gateway]\nstate_dir = "{tmp_path}"\n[traces]\nclient_retention_days = 7\n')
    monkeypatch.setenv("MSSGW_CONFIG", str(path))
    assert main(["db", "upgrade"]) == 0

    async def seed() -> None:
        store = await Store.open(config.load(path, env={}))
        try:
            add = store.traces.add
            await add(
                TraceRecord(
                    "transport",
                    "mta.data",
                    "accepted",
                    actor="CN=mx.op2",
                    sender="b@op2.mssante.test",
                    recipients="a@op1.mssante.test",
                    code="250 2.0.0",
                ),
                at=now() - timedelta(days=1),
            )
            await add(
                TraceRecord(
                    "client",
                    "submission.auth",
                    "refused",
                    sender="a@op1.mssante.test",
                    code="535 5.7.8",
                ),
                at=now() - timedelta(days=10),
            )
            await add(TraceRecord("client", "imap.login", "accepted", sender="c@op1.mssante.test"))
        finally:
            await store.close()

    asyncio.run(seed())
    return path


def test_list_filters_and_json(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "list", "--json", "--address", "a@op1.mssante.test"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["action"] for r in rows] == ["submission.auth", "mta.data"]  # newest first
    assert main(["trace", "list", "--category", "transport"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["AT", "CATEGORY", "ACTION"] and len(out) == 2
    assert "mta.data" in out[1] and "250 2.0.0" in out[1]


def test_purge_applies_retention(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "purge"]) == 0
    assert (
        capsys.readouterr().out.strip()
        == "transport: 0 removed, admin: 0 removed, client: 1 removed"
    )
    assert main(["trace", "list", "--json"]) == 0
    assert {r["action"] for r in json.loads(capsys.readouterr().out)} == {"mta.data", "imap.login"}


def test_bad_limit_is_one_line(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "list", "--limit", "0"]) == 1
    assert capsys.readouterr().err == "mssgw: --limit 0: expected a positive number\n"
