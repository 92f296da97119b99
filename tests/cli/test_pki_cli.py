"""``mssgw pki init-dev`` through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mssgw.cli import main


def test_init_dev_writes_the_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "pki"
    assert main(["pki", "init-dev", str(target), "--operators", "3"]) == 0
    out = capsys.readouterr().out
    assert "op3.mssante.test" in out and "manifest" in out
    manifest = json.loads((target / "manifest.json").read_text())
    assert [o["name"] for o in manifest["operators"]] == ["op1", "op2", "op3"]
    assert (target / "operators/op3/server.pem").exists()


def test_refuses_non_empty_dir_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x").write_text("x")
    assert main(["pki", "init-dev", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err
    assert main(["pki", "init-dev", str(tmp_path), "--force", "--operators", "1"]) == 0


def test_bad_operator_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pki", "init-dev", str(tmp_path / "p"), "--operators", "0"]) == 1
    assert "--operators 0" in capsys.readouterr().err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["pki", "init-dev", "--help"])
    assert exit_.value.code == 0
    assert "--operators" in capsys.readouterr().out
