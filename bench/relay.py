"""End-to-end relay A → B: throughput and latency, against a direct-to-B baseline (issue 6).

Starts two ``mssgw serve`` processes on loopback (SQLite stores, fsync on,
the development PKI): operator B (op2.mssante.test, port 25) and operator A
(op1.mssante.test, submission on 587 with a static relay route to B's port
25).  Then, from this process, K concurrent clients (one reused connection
each, 4 KB messages, one recipient at B) send N messages:

* **relay**: to A's submission port (STARTTLS + AUTH PLAIN), A queues, its
  relay worker delivers to B over mutual TLS;
* **direct** (baseline, same client code, same run): straight to B's port 25
  with STARTTLS, presenting operator A's certificate, as A's relay would;
* **direct-new** (informative): the same, with a new connection (TCP, mutual
  TLS handshake, EHLO) per message, which is what A's relay did before it
  kept connections open between messages (``docs/relay.md``);
* **relay-idle** (latency without a backlog): one client, 30 messages, each
  sent only once the previous one reached B's INBOX.

Arrival is read from B's store: a thread polls B's SQLite database every
``--poll`` ms for new rows in the recipient's INBOX (Message-ID), so the
measured latency includes up to one poll interval.  Throughput = N / (time of
the last arrival − first send); latency = arrival − the client's ``250`` at
the end of DATA (for the direct baseline that is only the poll delay, since
B answers ``250`` after its commit).  The two modes alternate ``--rounds``
times; the medians are printed.

CPU time per message of each process (from ``/proc``) is printed too: on a
machine where A, B and this client share the cores, the relay's throughput
is bounded by A's and B's CPU per message together, the direct one by B's
alone; "CPU-bound ceiling" is direct B CPU / (relay A + relay B CPU).

Target: relay throughput ≥ 0.8× the direct baseline.

    .venv/bin/python bench/relay.py [--messages 300] [--senders 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import shutil
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mssgw import config, dev
from mssgw.smtp.data import stuff
from mssgw.store import Store
from mssgw.store.mailboxes import NewMailbox
from mssgw.store.models import MailboxType
from mssgw.tls import devpki
from tests.smtp.inbound_support import RawClient, client_context
from tests.support import process
from tests.support.process import cpu_seconds

A_USER = "jean.dupont@op1.mssante.test"
B_USER = "marie.martin@op2.mssante.test"
SIZE = 4096
_PORT_RE = re.compile(rb"listener (mta|submission) on 127\.0\.0\.1:(\d+)")


# --------------------------------------------------------------------------- processes


def start(config_path: Path, listener: str) -> tuple[subprocess.Popen[bytes], int]:
    """``mssgw serve``; return it with the port of ``listener`` (from its log line)."""

    def port_in(line: bytes) -> int | None:
        found = _PORT_RE.search(line)
        return int(found.group(2)) if found and found.group(1).decode() == listener else None

    argv = [sys.executable, "-m", "mssgw", "--config", str(config_path), "serve"]
    return process.start(argv, port_in)


def stop(proc: subprocess.Popen[bytes]) -> None:
    process.stop(proc, grace=40)


async def prepare(
    state: Path,
    pki: dict[str, Any],
    operator: int,
    listener: str,
    user: str,
    routes: dict[str, str] | None = None,
    relay: str = "",
) -> tuple[Path, str]:
    """Configuration, schema, the user's mailbox (and a password); ``(config, password)``."""
    state.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - set-up, nothing runs yet
    path = state / "mssgw.toml"
    text = dev.config_text(state, pki, ports={listener: 0}, operator=operator, routes=routes)
    # Logs at INFO so the listener's port can be read; nothing per message is logged.
    if relay:  # extra [relay] keys, in the table the development configuration has
        text = text.replace("[relay]\n", f"[relay]\n{relay}", 1)
    path.write_text(text + '\n[logging]\nlevel = "info"\n')
    settings = config.load(path, env={})
    store = await Store.open(settings, check_schema=False)
    try:
        await store.upgrade()
        for domain in settings.gateway.domains:
            await store.mailboxes.ensure_domain(domain)
        await store.mailboxes.add(NewMailbox(user, MailboxType.PER, "8100000001" + str(operator)))
        password = (await store.credentials.issue(user)).password
    finally:
        await store.close()
    return path, password


# --------------------------------------------------------------------------- arrivals


class Arrivals:
    """Polls B's database for new messages in one INBOX; records when each was seen."""

    def __init__(self, db: Path, address: str, interval: float) -> None:
        self.conn = sqlite3.connect(db, check_same_thread=False)
        self.conn.execute("PRAGMA query_only = 1")
        row = self.conn.execute(
            "SELECT f.id FROM folders f JOIN mailboxes m ON m.id = f.mailbox_id "
            "WHERE m.address = ? AND f.name = 'INBOX'",
            (address,),
        ).fetchone()
        self.folder = int(row[0])
        self.interval = interval
        self.last_uid = self._max_uid()
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _max_uid(self) -> int:
        row = self.conn.execute(
            "SELECT COALESCE(MAX(uid), 0) FROM messages WHERE folder_id = ?", (self.folder,)
        ).fetchone()
        return int(row[0])

    def _run(self) -> None:
        while not self._stop.is_set():
            rows = self.conn.execute(
                "SELECT uid, message_id FROM messages WHERE folder_id = ? AND uid > ?",
                (self.folder, self.last_uid),
            ).fetchall()
            now = time.monotonic()
            for uid, message_id in rows:
                self.seen.setdefault(str(message_id), now)
                self.last_uid = max(self.last_uid, int(uid))
            time.sleep(self.interval)

    def __enter__(self) -> Arrivals:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.conn.close()


# --------------------------------------------------------------------------- load


def payload(message_id: str) -> bytes:
    head = (
        f"From: <{A_USER}>\r\nTo: <{B_USER}>\r\nSubject: bench relay\r\n"
        f"Message-ID: {message_id}\r\nX-MSS-NIL: BENCH\r\n\r\n"
    ).encode()
    line = b"x" * 76 + b"\r\n"
    return stuff(head + line * ((SIZE - len(head)) // len(line)))


@dataclass
class Run:
    mode: str
    count: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    cpu_ms: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.seconds


async def client(port: int, ctx: ssl.SSLContext, login: tuple[str, str] | None) -> RawClient:
    c = await RawClient.connect(port)
    await c.open_session(ctx, helo="bench.op1.mssante.test")
    if login is not None:
        token = base64.b64encode(f"\0{login[0]}\0{login[1]}".encode()).decode()
        r = await c.cmd(f"AUTH PLAIN {token}")
        if r.code != 235:
            raise RuntimeError(f"AUTH failed: {r}")
    return c


async def load(
    mode: str,
    port: int,
    ctx: ssl.SSLContext,
    login: tuple[str, str] | None,
    arrivals: Arrivals,
    count: int,
    senders: int,
    pids: dict[str, int],
    tag: str,
    *,
    reuse: bool = True,
    one_by_one: bool = False,
) -> Run:
    clients = [await client(port, ctx, login) for _ in range(senders)]
    acked: dict[str, float] = {}
    queue = list(range(count))
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}

    async def sender(i: int) -> None:
        while queue:
            n = queue.pop()
            if not reuse:  # what A's relay does today: one connection per message
                await clients[i].cmd("QUIT")
                await clients[i].close()
                clients[i] = await client(port, ctx, login)
            c = clients[i]
            message_id = f"<{tag}.{n}@op1.mssante.test>"
            for command in (f"MAIL FROM:<{A_USER}>", f"RCPT TO:<{B_USER}>", "DATA"):
                r = await c.cmd(command)
                if r.code not in (250, 354):
                    raise RuntimeError(f"{mode}: {command} -> {r}")
            await c.send(payload(message_id))
            r = await c.reply(wait=120)
            if r.code != 250:
                raise RuntimeError(f"{mode}: end of data -> {r}")
            acked[message_id] = time.monotonic()
            while one_by_one and message_id not in arrivals.seen:  # noqa: ASYNC110 - a thread fills it
                await asyncio.sleep(0.001)

    started = time.monotonic()
    await asyncio.gather(*(sender(i) for i in range(senders)))
    deadline = time.monotonic() + 300
    while len([m for m in acked if m in arrivals.seen]) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{mode}: only {len(arrivals.seen)} of {count} arrived")
        await asyncio.sleep(0.01)
    last = max(arrivals.seen[m] for m in acked)
    run = Run(mode, count, last - started)
    run.latencies = [max(0.0, arrivals.seen[m] - t) for m, t in acked.items()]
    run.cpu_ms = {
        name: 1000 * (cpu_seconds(pid) - cpu0[name]) / count for name, pid in pids.items()
    }
    for c in clients:
        await c.cmd("QUIT")
        await c.close()
    return run


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


# --------------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="mssgw-bench-relay-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pki = devpki.init_dev(root / "pki", operators=2)
        b_config, _ = await prepare(root / "b", pki, 1, "mta", B_USER)
        b_proc, b_port = start(b_config, "mta")
        procs.append(b_proc)
        a_config, password = await prepare(
            root / "a",
            pki,
            0,
            "submission",
            A_USER,
            routes={"op2.mssante.test": f"127.0.0.1:{b_port}"},
            relay=f"workers = {args.workers}\n" if args.workers else "",
        )
        a_proc, a_port = start(a_config, "submission")
        procs.append(a_proc)
        pids = {"A": a_proc.pid, "B": b_proc.pid}
        anchors = pki["anchors"]
        direct_ctx = client_context(pki["operators"][0], anchors)  # as A's relay presents it
        user_ctx = client_context(None, anchors)
        runs: list[Run] = []
        with Arrivals(root / "b" / "mssgw.db", B_USER, args.poll / 1000) as arrivals:
            # warm-up: first connections, caches, imports
            await load("direct", b_port, direct_ctx, None, arrivals, 20, 2, pids, "warm-d")
            await load(
                "relay", a_port, user_ctx, (A_USER, password), arrivals, 20, 2, pids, "warm-r"
            )
            for i in range(args.rounds):
                runs.append(
                    await load(
                        "direct",
                        b_port,
                        direct_ctx,
                        None,
                        arrivals,
                        args.messages,
                        args.senders,
                        pids,
                        f"d{i}",
                    )
                )
                runs.append(
                    await load(
                        "direct-new",
                        b_port,
                        direct_ctx,
                        None,
                        arrivals,
                        args.messages,
                        args.senders,
                        pids,
                        f"n{i}",
                        reuse=False,
                    )
                )
                runs.append(
                    await load(
                        "relay",
                        a_port,
                        user_ctx,
                        (A_USER, password),
                        arrivals,
                        args.messages,
                        args.senders,
                        pids,
                        f"r{i}",
                    )
                )
            for i in range(args.rounds):
                runs.append(
                    await load(
                        "relay-idle",
                        a_port,
                        user_ctx,
                        (A_USER, password),
                        arrivals,
                        30,
                        1,
                        pids,
                        f"i{i}",
                        one_by_one=True,
                    )
                )
        report(runs, args)
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(root, ignore_errors=True)


def report(runs: list[Run], args: argparse.Namespace) -> None:
    print(
        f"relay A -> B end to end: {args.messages} messages of {SIZE} B per run, "
        f"{args.senders} clients (one connection each), {args.rounds} round(s), "
        f"poll {args.poll:g} ms, {os.cpu_count()} cores, SQLite (fsync on)"
    )
    summary: dict[str, tuple[float, float, float]] = {}
    for mode in ("direct", "direct-new", "relay", "relay-idle"):
        mine = [r for r in runs if r.mode == mode]
        rate = statistics.median(r.rate for r in mine)
        lat = [x for r in mine for x in r.latencies]
        p50, p95 = 1000 * percentile(lat, 0.5), 1000 * percentile(lat, 0.95)
        cpu = {k: statistics.median(r.cpu_ms[k] for r in mine) for k in ("A", "B")}
        summary[mode] = (rate, p50, p95)
        print(
            f"  {mode:10s} {rate:7.1f} msg/s   250 -> B's INBOX p50 {p50:7.1f} ms  "
            f"p95 {p95:7.1f} ms   CPU/msg A {cpu['A']:5.2f} ms  B {cpu['B']:5.2f} ms   "
            f"(runs: {', '.join(f'{r.rate:.1f}' for r in mine)})"
        )
    ratio = summary["relay"][0] / summary["direct"][0]
    verdict = "met" if ratio >= 0.8 else "NOT met"
    print(f"  relay / direct throughput: {ratio:.2f}x  (target >= 0.8x: {verdict})")
    fresh = summary["relay"][0] / summary["direct-new"][0]
    print(f"  relay / direct-new (a new connection per message): {fresh:.2f}x")
    cpu = {
        m: sum(statistics.median(r.cpu_ms[k] for r in runs if r.mode == m) for k in ("A", "B"))
        for m in ("direct", "relay")
    }
    print(
        f"  CPU per message: relay A+B {cpu['relay']:.2f} ms, direct B {cpu['direct']:.2f} ms;"
        f" CPU-bound ceiling {cpu['direct'] / cpu['relay']:.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="A's [relay] workers (default: the configuration's default, 4)",
    )
    parser.add_argument("--poll", type=float, default=5.0, help="arrival poll interval, ms")
    asyncio.run(main(parser.parse_args()))
