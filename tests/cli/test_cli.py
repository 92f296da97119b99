"""The ``mssgw`` command: every group, --help everywhere, one-line refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mssgw.cli import build_parser, main

D = "op1.mssante.test"


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "mssgw.toml"
    path.write_text(f'[gateway]\nstate_dir = "{tmp_path}"\n')
    monkeypatch.setenv("MSSGW_CONFIG", str(path))
    assert main(["db", "upgrade"]) == 0
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _subcommands(parser: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    import argparse

    found = [prefix]
    assert isinstance(parser, argparse.ArgumentParser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _subcommands(child, (*prefix, name))
    return found


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _subcommands(build_parser())
    assert ("mailbox", "add") in commands and ("password", "revoke") in commands
    for command in commands:
        with pytest.raises(SystemExit) as info:
            main([*command, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: mssgw"), command


def test_mailbox_lifecycle_through_the_cli(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "domain", "add", D)[1] == f"domain {D} added\n"
    code, out, _ = run(
        capsys,
        "mailbox",
        "add",
        f"jean@{D}",
        "--type",
        "per",
        "--owner",
        "810012345678",
        "--name",
        "Dr Jean",
    )
    assert code == 0 and f"jean@{D} (PER) created" in out
    run(capsys, "mailbox", "add", f"secretariat@{D}", "--type", "ORG", "--owner", "1750000001")
    assert run(capsys, "delegate", "add", f"secretariat@{D}", "810012345678")[0] == 0
    code, out, _ = run(
        capsys, "password", "issue", f"secretariat@{D}", "--identity", "810012345678", "--json"
    )
    issued = json.loads(out)
    assert code == 0 and issued["identity"] == "810012345678" and len(issued["password"]) == 29
    code, out, _ = run(capsys, "mailbox", "list", "--json")
    assert [m["address"] for m in json.loads(out)] == [f"jean@{D}", f"secretariat@{D}"]
    code, out, _ = run(capsys, "mailbox", "show", f"secretariat@{D}")
    assert "delegates:        810012345678" in out and "active_passwords: 1" in out
    assert (
        run(capsys, "mailbox", "suspend", f"jean@{D}")[1] == f"mailbox jean@{D} is now suspended\n"
    )
    code, out, _ = run(capsys, "password", "list", f"secretariat@{D}")
    assert out.splitlines()[0].split()[:3] == ["ID", "IDENTITY", "LABEL"]
    assert run(capsys, "password", "revoke", str(issued["credential_id"]))[0] == 0
    code, out, _ = run(capsys, "domain", "list")
    assert D in out and " 2 " in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["mailbox", "add", f"x@{D}", "--type", "XYZ", "--owner", "1"],
            "unknown mailbox type 'XYZ'",
        ),
        (
            ["mailbox", "add", "not-an-address", "--type", "PER", "--owner", "1"],
            "is not an address",
        ),
        (
            ["mailbox", "add", "x@other.mssante.test", "--type", "PER", "--owner", "1"],
            "is not hosted here",
        ),
        (["mailbox", "show", f"nobody@{D}"], f"no mailbox nobody@{D}"),
        (["password", "revoke", "999"], "no application password with id 999"),
        (["delegate", "remove", f"nobody@{D}", "810000000001"], "no mailbox"),
    ],
)
def test_refusals_are_one_line_and_non_zero(
    cfg: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    run(capsys, "domain", "add", D)
    code, out, err = run(capsys, *argv)
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and message in err and err.startswith("mssgw: ")


def test_duplicate_and_deleted_mailbox(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "domain", "add", D)
    run(capsys, "mailbox", "add", f"a@{D}", "--type", "PER", "--owner", "810000000001")
    code, _, err = run(
        capsys, "mailbox", "add", f"a@{D}", "--type", "PER", "--owner", "810000000001"
    )
    assert code == 1 and "already exists" in err
    run(capsys, "mailbox", "delete", f"a@{D}")
    code, _, err = run(capsys, "password", "issue", f"a@{D}")
    assert code == 1 and "is deleted; no password can be issued" in err


def test_old_schema_and_missing_config_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MSSGW_CONFIG", raising=False)
    code, _, err = run(capsys, "mailbox", "list")
    if not Path("/etc/mssgw/mssgw.toml").exists():
        assert code == 2 and "no configuration: pass --config FILE" in err
    path = tmp_path / "c.toml"
    path.write_text(f'[gateway]\nstate_dir = "{tmp_path}"\n')
    code, _, err = run(capsys, "--config", str(path), "mailbox", "list")
    assert code == 3 and "run 'mssgw db upgrade'" in err
    code, out, _ = run(capsys, "--config", str(path), "db", "status")
    assert code == 1 and "needs 'mssgw db upgrade'" in out


def test_the_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[limits]\nmax_recipients = -1\n")
    env = {**os.environ, "MSSGW_CONFIG": str(path)}
    proc = subprocess.run(
        [sys.executable, "-m", "mssgw", "mailbox", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr == f"mssgw: {path}: limits.max_recipients = -1: expected a positive integer\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mssgw", "mailbox", "frobnicate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        proc.returncode == 2 and "Traceback" not in proc.stderr and "invalid choice" in proc.stderr
    )


def test_serve_refuses_tls_listeners_without_certificates(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[gateway]\nstate_dir = "{tmp_path}"\n'
        + "".join(
            f"[listeners.{n}]\nenabled = false\n"
            for n in ("mta", "submission", "submissions", "imaps", "http")
        )
        + '[listeners.imap]\naddress = "127.0.0.1"\nport = 0\n'
    )
    env = {**os.environ, "MSSGW_CONFIG": str(path)}
    subprocess.run(
        [sys.executable, "-m", "mssgw", "db", "upgrade"],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mssgw", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "mssgw: listeners.imap: TLS listener but no certificate: set tls.certificate, tls.key and "
        "tls.anchors (or disable the listener)"
    )


def test_db_status_says_where_messages_are_kept(
    cfg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from mssgw import config
    from mssgw.store import Store
    from mssgw.store.delivery import LocalTarget

    run(capsys, "domain", "add", D)
    run(capsys, "mailbox", "add", f"dr.a@{D}", "--type", "PER", "--owner", "810000000001")

    async def deliver(*sizes: int) -> None:
        store = await Store.open(config.load(cfg))
        try:
            for n, size in enumerate(sizes):
                head = b"Subject: %d\r\n\r\n" % n
                data = head + b"x" * (size - len(head))
                await store.messages.deliver(data, [LocalTarget(f"dr.a@{D}")])
        finally:
            await store.close()

    asyncio.run(deliver(1000, 2000, 200_000))
    code, out, _ = run(capsys, "db", "status")
    assert code == 0 and "(up to date)" in out
    assert "messages: 2 inside the database (3000 bytes), 1 in files (200000 bytes)" in out
