"""``mssgw serve --dev`` end to end: the contract other issues and tests rely on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mssgw import config
from mssgw.dev import PORT_OFFSETS
from mssgw.store import Store
from tests.support.ports import free_base


def _start(state: Path, base: int, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mssgw",
            "serve",
            "--dev",
            "--state",
            str(state),
            "--port-base",
            str(base),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _wait_ready(proc: subprocess.Popen[bytes], dev_json: Path) -> dict[str, object]:
    deadline = time.time() + 60
    while time.time() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "exited"
        if dev_json.exists() and dev_json.stat().st_size > 0:
            return dict(json.loads(dev_json.read_text()))
        time.sleep(0.1)
    raise AssertionError("dev.json not written within 60 s")


def _stop(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    return out.decode()


async def _verify_users(config_path: str, users: list[dict[str, str]]) -> list[str]:
    store = await Store.open(config.load(config_path, env={}))
    try:
        found = []
        for user in users:
            ok = await store.credentials.verify(user["address"], user["password"])
            assert ok is not None, user["address"]
            found.append((await store.mailboxes.get(user["address"])).type)
        return found
    finally:
        await store.close()


def test_dev_mode_creates_a_working_setup_and_reuses_it(tmp_path: Path) -> None:
    state = tmp_path / "dev"
    base = free_base(PORT_OFFSETS.values())
    proc = _start(state, base)
    try:
        info = _wait_ready(proc, state / "dev.json")
        listeners = info["listeners"]
        assert isinstance(listeners, dict)
        assert listeners["http"] == base + PORT_OFFSETS["http"]
        assert set(listeners) <= set(PORT_OFFSETS)
        assert all(listeners[name] == base + PORT_OFFSETS[name] for name in listeners)
        ca = Path(str(info["ca"]))
        assert ca.is_absolute() and ca.read_text().startswith("-----BEGIN CERTIFICATE-----")
        users = info["users"]
        assert isinstance(users, list)
        assert [u["type"] for u in users] == ["PER", "ORG", "APP"]
        with urllib.request.urlopen(
            f"http://127.0.0.1:{listeners['http']}/healthz", timeout=10
        ) as r:
            assert json.loads(r.read())["status"] == "ok"
        assert (state / "mssgw.toml").exists()
        assert oct((state / "dev.json").stat().st_mode & 0o777) == "0o600"
    finally:
        output = _stop(proc)
    assert "Traceback" not in output
    assert asyncio.run(_verify_users(str(info["config"]), users)) == ["PER", "ORG", "APP"]

    # Second start: same trust space, same users, new ports.
    base2 = free_base(PORT_OFFSETS.values())
    root_before = ca.read_bytes()
    (state / "dev.json").unlink()  # dev mode removes it at start too; don't race on the old one
    proc = _start(state, base2)
    try:
        info2 = _wait_ready(proc, state / "dev.json")
    finally:
        _stop(proc)
    assert info2["users"] == users
    assert ca.read_bytes() == root_before
    assert info2["listeners"] == {k: base2 + PORT_OFFSETS[k] for k in info2["listeners"]}  # type: ignore[union-attr]


def test_dev_mode_with_two_workers_serves_reloads_and_stops(tmp_path: Path) -> None:
    """``--workers 2``: dev.json once both serve, /healthz from worker 0, SIGHUP
    reaches each worker as a reload, SIGTERM stops them all with status 0."""
    state = tmp_path / "dev"
    base = free_base(PORT_OFFSETS.values())
    proc = _start(state, base, "--workers", "2")
    try:
        info = _wait_ready(proc, state / "dev.json")
        listeners = info["listeners"]
        assert isinstance(listeners, dict)
        assert all(listeners[name] == base + PORT_OFFSETS[name] for name in listeners)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{listeners['http']}/healthz", timeout=10
        ) as r:
            assert json.loads(r.read())["status"] == "ok"
        proc.send_signal(signal.SIGHUP)
        time.sleep(2)
    finally:
        output = _stop(proc)
    assert "Traceback" not in output
    for worker in ("worker 0/2", "worker 1/2"):
        assert f"[{worker}] mssgw.app: reload requested" in output
        assert f"[{worker}] mssgw: stopped" in output
    assert "[supervisor] mssgw: stopped" in output
    assert "starting it again" not in output  # no worker died on the way


def test_dev_mode_refuses_a_low_port_base(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mssgw",
            "serve",
            "--dev",
            "--state",
            str(tmp_path),
            "--port-base",
            "25",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert proc.returncode == 1
    assert (
        proc.stderr
        == "mssgw: --port-base 25: expected 1024..64000 (dev listeners use high ports)\n"
    )
