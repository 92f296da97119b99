"""A throwaway PostgreSQL cluster for the tests.

Started with ``initdb``/``postgres`` in a temporary folder on a free loopback
port and stopped by pid afterwards; it never uses the machine's own
PostgreSQL service.  PostgreSQL refuses to run as root, so under root (CI)
the cluster belongs to the ``postgres`` user and is run with ``runuser``.
A missing server is an error, never a skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class ServerMissing(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.insert(0, found)
    for c in candidates:
        if os.access(c, os.X_OK):
            return Path(c).resolve().parent
    raise ServerMissing(
        "PostgreSQL server binaries (initdb, postgres) not found: apt-get install postgresql"
    )


@dataclass
class PgCluster:
    port: int
    user: str
    datadir: Path
    proc: subprocess.Popen[bytes]

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> None:
        subprocess.run(
            [
                str(pg_bindir() / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
        )


def _as_user(cmd: list[str]) -> tuple[list[str], str]:
    if os.geteuid() != 0:
        return cmd, pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise ServerMissing(
            "running as root and there is no 'postgres' user to run the cluster"
        ) from None
    return ["runuser", "-u", "postgres", "--", *cmd], "postgres"


@contextlib.contextmanager
def cluster(*, durable: bool = False) -> Iterator[PgCluster]:
    """Start a cluster; ``durable`` keeps fsync on (benchmarks), tests turn it off for speed."""
    bindir = pg_bindir()
    tmp = Path(tempfile.mkdtemp(prefix="mssgw-pg-"))
    datadir = tmp / "data"
    _, user = _as_user([])
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
    cmd, user = _as_user(
        [
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]
    )
    subprocess.run(cmd, check=True, capture_output=True)
    port = free_port()
    cmd, _ = _as_user(
        [
            str(bindir / "postgres"),
            "-D",
            str(datadir),
            "-p",
            str(port),
            "-h",
            "127.0.0.1",
            "-k",
            str(tmp),
            "-c",
            f"fsync={'on' if durable else 'off'}",
            "-c",
            "max_connections=200",
        ]
    )
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    server = PgCluster(port, user, datadir, proc)
    try:
        _wait_ready(server)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_ready(server: PgCluster) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        if server.proc.poll() is not None:
            raise ServerMissing(f"postgres exited with code {server.proc.returncode} at start")
        try:
            server.psql("SELECT 1")
            return
        except subprocess.CalledProcessError:
            time.sleep(0.1)
    raise ServerMissing("postgres did not become ready in 30 s")
