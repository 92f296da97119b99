"""``mssgw demo``: two operators on loopback, exit status 0 only when every step passed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import mssgw.demo
from mssgw.cli import main


def test_help_names_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--state DIR" in out and "--keep" in out and "byte-identical" in out


def test_demo_passes_and_reuses_its_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "demo"
    assert main(["demo", "--state", str(state)]) == 0
    out = capsys.readouterr().out
    steps = re.findall(r"^ ?(\d+)\. ", out, re.MULTILINE)
    assert steps == [str(n) for n in range(1, 11)]
    assert "FAILED" not in out and out.rstrip().endswith("Demo passed.")
    assert "235 2.7.0" in out and "250 2.0.0 queued as" in out
    assert "return-path, received, received" in out
    assert re.search(r"remaining (\d+) octets are identical to the \1 submitted", out)
    assert "550 5.7.1" in out
    manifest = state / "pki" / "manifest.json"
    made = manifest.stat().st_mtime_ns
    # again, same folder: the PKI and mailboxes are reused, a new message goes through
    assert main(["demo", "--state", str(state)]) == 0
    assert manifest.stat().st_mtime_ns == made
    assert capsys.readouterr().out.rstrip().endswith("Demo passed.")


def test_exit_status_is_1_when_a_step_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def altered(stored: bytes) -> tuple[bytes, list[str]]:
        return stored, []  # as if the trace fields were part of the message

    monkeypatch.setattr(mssgw.demo, "strip_trace_fields", altered)
    assert main(["demo", "--state", str(tmp_path / "demo")]) == 1
    out = capsys.readouterr().out
    assert "FAILED  the remaining" in out and out.rstrip().endswith("Demo FAILED.")


def test_command_line_with_a_temporary_state() -> None:
    """As a user runs it: no configuration, a temporary folder, removed afterwards."""
    done = subprocess.run(
        [sys.executable, "-m", "mssgw", "demo"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"state in (\S+)\)", done.stdout)
    assert match is not None
    assert not Path(match.group(1)).exists()
    assert "Traceback" not in done.stderr
