"""Running ``mssgw serve`` (or another server) as a child process, for tests and benchmarks.

The child logs the port of each listener it opened; ``start`` waits for the
line that names the one wanted, then keeps draining the log in a thread so
the child never blocks on a full pipe.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def start(
    argv: Sequence[str], port_in: Callable[[bytes], int | None], *, timeout: float = 60.0
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``argv``; return it with the port ``port_in`` finds in a log line."""
    proc = subprocess.Popen(
        list(argv),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    seen = pending = b""
    deadline = time.monotonic() + timeout
    # Raw reads, not readline: a buffered reader may hold several lines that
    # select() no longer reports (a burst written by several processes at once).
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        seen += chunk
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            port = port_in(line + b"\n")
            if port is not None:
                threading.Thread(target=_drain, args=(proc,), daemon=True).start()
                return proc, port
    proc.kill()
    proc.wait(10)
    raise RuntimeError(
        f"{' '.join(argv[:5])} did not start: {seen.decode(errors='replace')[-2000:]}"
    )


def _drain(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stderr is not None
    while os.read(proc.stderr.fileno(), 65536):
        pass


def stop(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its children (a supervisor and its workers)."""
    total = cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            total += cpu_seconds(int(child))
        except FileNotFoundError:  # exited meanwhile
            continue
    return total
