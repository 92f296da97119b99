"""``mssgw queue`` on a stuck message: list, hold, release, retry, fail, drop, history."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import mssgw.cli
from mssgw import config
from mssgw.cli import build_parser, main
from mssgw.store import Store
from mssgw.store.delivery import Envelope, RemoteTarget
from mssgw.store.mailboxes import NewMailbox
from mssgw.store.models import MailboxType
from tests.smtp.relay_support import MESSAGE, SENDER, dsn_fields, free_port, tls_peer
from tests.support.gateway import gateway_config

BOB = "bob@op2.mssante.test"


@pytest.fixture(autouse=True)
def queue_group(monkeypatch: pytest.MonkeyPatch) -> None:
    # The lead adds "queue" to GROUPS when wiring the CLI; until then register it here.
    if "queue" not in mssgw.cli.GROUPS:
        monkeypatch.setattr(mssgw.cli, "GROUPS", (*mssgw.cli.GROUPS, "queue"))


@pytest.fixture
def stuck(
    tmp_path: Path, trust_space: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, int, list[int]]:
    """Operator 1 with three messages to op2, whose route leads nowhere (yet)."""
    port = free_port()
    path = gateway_config(
        tmp_path,
        trust_space,
        listeners=(),
        routes={"op2.mssante.test": f"127.0.0.1:{port}"},
        extra="[relay]\nconnect_timeout = 3\ncommand_timeout = 10\n",
    )
    monkeypatch.setenv("MSSGW_CONFIG", str(path))

    async def setup() -> list[int]:
        store = await Store.open(config.load(path, env={}), check_schema=False)
        try:
            await store.upgrade()
            await store.mailboxes.ensure_domain("op1.mssante.test")
            await store.mailboxes.add(NewMailbox(SENDER, MailboxType.PER, "810012345678"))
            ids = []
            for n in range(3):
                result = await store.messages.deliver(
                    MESSAGE.replace(b"Bonjour", f"Message {n}".encode()),
                    remote=[RemoteTarget(BOB)],
                    envelope=Envelope(SENDER, ret="HDRS"),
                )
                ids += result.queued
            return ids
        finally:
            await store.close()

    return path, port, asyncio.run(setup())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["queue", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _inbox(path: Path) -> list[bytes]:
    async def read() -> list[bytes]:
        store = await Store.open(config.load(path, env={}))
        try:
            folder = await store.messages.folder(SENDER)
            uids = await store.messages.uids(folder.id)
            from sqlalchemy import select

            from mssgw.store.models import Message

            async with store.read() as s:
                blobs = (
                    await s.scalars(select(Message.blob_id).where(Message.folder_id == folder.id))
                ).all()
            assert len(blobs) == len(uids)
            return [(await store.contents.read_one(b)) for b in blobs]
        finally:
            await store.close()

    return asyncio.run(read())


def test_every_queue_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser is not None
    for command in ("list", "retry", "hold", "release", "fail", "drop", "history"):
        with pytest.raises(SystemExit) as info:
            main(["queue", command, "--help"])
        assert info.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: mssgw queue {command}")


def test_a_stuck_message_through_the_cli(
    stuck: tuple[Path, int, list[int]],
    trust_space: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, port, (a, b, c) = stuck
    code, out, _ = run(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "ID",
        "RECIPIENT",
        "STATE",
        "ATTEMPTS",
        "NEXT",
        "ATTEMPT",
        "LAST",
        "ERROR",
    ]
    assert len(lines) == 4 and all(BOB in line and "queued" in line for line in lines[1:])

    # retry now: the peer is down, the entry is deferred on the schedule
    code, out, _ = run(capsys, "retry", str(a))
    assert code == 0
    assert out.startswith(f"queue entry {a}: deferred (cannot connect to 127.0.0.1")
    assert "next attempt" in out
    (entry,) = [e for e in json.loads(run(capsys, "list", "--json")[1]) if e["id"] == a]
    assert (entry["attempts"], entry["last_status"], entry["state"]) == (1, "4.4.1", "queued")
    assert entry["next_attempt_at"] is not None

    # hold: no retry until released; refusals are one line, non-zero
    assert run(capsys, "hold", str(a))[1] == f"queue entry {a} ({BOB}) is now held\n"
    code, out, err = run(capsys, "retry", str(a))
    assert code == 1 and out == ""
    assert err == (
        f"mssgw: queue entry {a} is held: 'retry' needs a queued entry (release it first)\n"
    )
    assert run(capsys, "release", str(a))[1] == f"queue entry {a} ({BOB}) is now queued\n"
    code, _, err = run(capsys, "release", str(a))
    assert code == 1 and err.count("\n") == 1 and "is queued" in err

    # the peer comes back: retry delivers
    with tls_peer(trust_space, port=port) as (peer, _):
        code, out, _ = run(capsys, "retry", str(a))
        assert (code, out) == (
            0,
            f"queue entry {a}: delivered to 127.0.0.1 (250 2.0.0 OK queued)\n",
        )
        assert peer.received[0].recipients == [BOB]

    # fail: bounce now with a failure DSN to the sender's INBOX
    code, out, _ = run(capsys, "fail", str(b), "--reason", "recipient left the hospital")
    assert (code, out) == (0, f"queue entry {b} failed; failure notice sent to {SENDER}\n")
    (dsn,) = _inbox(path)
    _, (_, rcpt) = dsn_fields(dsn)
    assert (rcpt["Action"], rcpt["Status"]) == ("failed", "5.0.0")
    assert rcpt["Diagnostic-Code"] == "X-Mssgw; recipient left the hospital"

    # drop: gone, no DSN, traced
    assert run(capsys, "drop", str(c))[1] == f"queue entry {c} ({BOB}) dropped; no notice sent\n"
    assert len(_inbox(path)) == 1
    code, _, err = run(capsys, "drop", str(c))
    assert (code, err) == (1, f"mssgw: no queue entry {c} (see 'mssgw queue list')\n")

    assert run(capsys, "list")[1].splitlines()[1:] == []
    states = {e["id"]: e["state"] for e in json.loads(run(capsys, "list", "--all", "--json")[1])}
    assert states == {a: "delivered", b: "failed"}

    history = json.loads(run(capsys, "history", "--json")[1])
    assert [(e["id"], e["event"]) for e in reversed(history)] == [
        (a, "retry"), (a, "deferred"), (a, "hold"), (a, "release"), (a, "retry"),
        (a, "delivered"), (b, "bounce"), (b, "dsn"), (c, "drop"),
    ]  # fmt: skip
    code, out, _ = run(capsys, "history", "--limit", "2", "--id", str(a))
    assert code == 0 and len(out.splitlines()) == 3 and "delivered" in out
    with pytest.raises(SystemExit) as info:
        run(capsys, "history", "--limit", "0")
    assert info.value.code == 2
    assert "'0' is not a positive number" in capsys.readouterr().err


def test_unknown_entry_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mssgw.toml"
    path.write_text(f'[gateway]\nstate_dir = "{tmp_path}"\n')
    monkeypatch.setenv("MSSGW_CONFIG", str(path))
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    code, _, err = run(capsys, "retry", "7")
    assert code == 1 and err == "mssgw: no queue entry 7 (see 'mssgw queue list')\n"
