"""Inbound SMTP (port 25) throughput and memory, against same-run baselines (issue 4).

Starts, as separate processes on loopback:

* ``mssgw serve`` (SQLite store, fsync on) with the development PKI;
* an aiosmtpd server whose handler stores nothing, with the same TLS
  context (MSSanté profile, client certificate required);
* Postfix configured with the same certificates and TLS profile, queueing
  (fsync) then discarding, when ``postfix`` is installed and this runs as
  root (``bench/postfix.py``; otherwise said so, not faked).

Then K concurrent senders (this process, asyncio) deliver 4 KB messages
with STARTTLS and the other operator's client certificate, first with a new
connection per message, then over reused connections, and the rates are
printed with their ratio to the null handler.  Finally 20 messages of 20 MB
arrive at once at a fresh mssgw and at the null handler, and the peak RSS
(VmHWM) of each server process is printed.

Targets: mssgw >= 0.5x the null handler (and >= 1.0x Postfix); peak RSS
<= 200 MB for mssgw during the 20 x 20 MB burst.

    .venv/bin/python bench/smtp_inbound.py [--seconds 5] [--rounds 3] [--senders 16] [--no-rss]
        [--workers N]

The three servers run side by side; each round loads each in turn (rotating
the order), and the medians over rounds are printed, with the range of the
per-round ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import postfix
from mssgw import config
from mssgw.smtp.data import stuff
from mssgw.store import Store
from mssgw.tls import devpki
from tests.smtp.inbound_support import RawClient, add_mailbox, sender_context
from tests.support import process
from tests.support.gateway import gateway_config
from tests.support.ports import free_base
from tests.support.process import stop, tree_cpu_seconds

MESSAGE_SIZE = 4096
#: With workers, the supervisor names the port once every worker serves.
_PORT_RE = re.compile(
    rb"(?:^(?!.*\[worker ).*listener mta on 127\.0\.0\.1:|NULL-SMTP-PORT )(\d+)"
)


# --------------------------------------------------------------------------- servers


async def start(argv: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """Start a server process; return it with the port it printed."""
    return await asyncio.to_thread(process.start, argv, _port_in)


def _port_in(line: bytes) -> int | None:
    found = _PORT_RE.search(line)
    return int(found.group(1)) if found else None


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def null_server_main(pki_dir: str) -> None:
    """``--null-server``: aiosmtpd, same TLS, handler that stores nothing."""
    from aiosmtpd.smtp import SMTP

    from mssgw.tls.reload import ReloadingContext, TlsFiles

    manifest = _manifest(Path(pki_dir))
    op = manifest["operators"][0]
    holder = ReloadingContext(
        TlsFiles(op["certificate"], op["key"], manifest["anchors"], [manifest["crl"]]),
        side="server",
        profile="mssante",
        client_cert="required",
    )

    class Null:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 2.0.0 OK"

    async def main() -> None:
        import logging

        logging.getLogger("mail.log").setLevel(logging.ERROR)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(
                Null(),
                tls_context=holder.current,
                require_starttls=True,
                hostname=op["host"],
                data_size_limit=50 * 1024 * 1024,
                loop=loop,
            ),
            "127.0.0.1",
            0,
            backlog=512,
        )
        print(f"NULL-SMTP-PORT {server.sockets[0].getsockname()[1]}", file=sys.stderr, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def _manifest(pki_dir: Path) -> dict[str, Any]:
    import json

    return dict(json.loads((pki_dir / "manifest.json").read_text()))


# --------------------------------------------------------------------------- load


def payload(tag: str, size: int = MESSAGE_SIZE) -> bytes:
    head = (
        f"From: dr.martin@op2.mssante.test\r\nSubject: bench\r\n"
        f"Message-ID: <{tag}@op2.mssante.test>\r\nX-MSS-NIL: BENCH\r\n\r\n"
    ).encode()
    line = b"x" * 76 + b"\r\n"
    body = line * ((size - len(head)) // len(line))
    return stuff(head + body)


async def transaction(c: RawClient, rcpt: str, data: bytes) -> bool:
    for command in ("MAIL FROM:<dr.martin@op2.mssante.test>", f"RCPT TO:<{rcpt}>", "DATA"):
        r = await c.cmd(command)
        if r.code not in (250, 354):
            return False
    await c.send(data)
    return (await c.reply(wait=120)).code == 250


async def session(port: int, ctx: ssl.SSLContext) -> RawClient:
    c = await RawClient.connect(port)
    await c.open_session(ctx)
    return c


async def run_load(
    port: int,
    ctx: ssl.SSLContext,
    rcpt: str,
    senders: int,
    seconds: float,
    reuse: bool,
    cpu: Callable[[], float],
) -> tuple[float, float]:
    """(messages acknowledged per second, server CPU ms per message);
    ``cpu`` gives the server's CPU seconds so far."""
    done = 0
    cpu0 = cpu()
    deadline = time.monotonic() + seconds

    async def one(i: int) -> None:
        nonlocal done
        n = 0
        c = await session(port, ctx) if reuse else None
        while time.monotonic() < deadline:
            data = payload(f"{i}-{n}-{time.monotonic_ns()}")
            n += 1
            if reuse:
                assert c is not None
                ok = await transaction(c, rcpt, data)
            else:
                fresh = await session(port, ctx)
                ok = await transaction(fresh, rcpt, data)
                await fresh.cmd("QUIT")
                await fresh.close()
            if not ok:
                raise RuntimeError("message refused")
            done += 1
        if c is not None:
            await c.cmd("QUIT")
            await c.close()

    start_at = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(senders)))
    rate = done / (time.monotonic() - start_at)
    return rate, 1000 * (cpu() - cpu0) / max(done, 1)


async def burst(port: int, ctx: ssl.SSLContext, rcpt: str, count: int, size: int) -> float:
    """``count`` messages of ``size`` bytes sent at once; seconds until all acknowledged."""
    body = payload("shared", size)  # one buffer, each sender writes it after its own header
    clients = [await session(port, ctx) for _ in range(count)]

    async def one(i: int, c: RawClient) -> None:
        for command in ("MAIL FROM:<dr.martin@op2.mssante.test>", f"RCPT TO:<{rcpt}>", "DATA"):
            assert (await c.cmd(command)).code in (250, 354)
        await c.send(f"X-Burst: {i}\r\n".encode())
        await c.send(body)
        assert (await c.reply(wait=300)).code == 250
        await c.close()

    t0 = time.monotonic()
    await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))
    return time.monotonic() - t0


# --------------------------------------------------------------------------- main


async def prepare_mssgw(root: Path, manifest: dict[str, Any]) -> tuple[Path, str]:
    state = root / "mssgw"
    state.mkdir(parents=True, exist_ok=True)
    path = gateway_config(state, manifest, listeners=("mta",))
    settings = config.load(path, env={})
    store = await Store.open(settings, check_schema=False)
    await store.upgrade()
    domain = manifest["operators"][0]["domain"]
    await store.mailboxes.ensure_domain(domain)
    rcpt = f"bench@{domain}"
    await add_mailbox(store, rcpt)
    await store.close()
    return path, rcpt


class Target:
    """A running server under load: its port and how to read its CPU seconds."""

    def __init__(self, name: str, port: int, cpu: Callable[[], float]) -> None:
        self.name, self.port, self.cpu = name, port, cpu
        #: mode -> [(msg/s, server CPU ms per message)], one per round.
        self.runs: dict[str, list[tuple[float, float]]] = {"new": [], "reuse": []}

    def median(self, mode: str) -> tuple[float, float]:
        runs = self.runs[mode]
        return (
            statistics.median(r for r, _ in runs),
            statistics.median(c for _, c in runs),
        )


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="mssgw-bench-smtp-"))
    procs: list[subprocess.Popen[bytes]] = []
    instance: postfix.ThrowawayPostfix | None = None
    try:
        manifest = devpki.init_dev(root / "pki", operators=2)
        ctx = sender_context(manifest)
        path, rcpt = await prepare_mssgw(root, manifest)
        mssgw_cmd = [sys.executable, "-m", "mssgw", "--config", str(path), "serve"]
        workers_cmd = [*mssgw_cmd, "--workers", str(args.workers)]
        null_cmd = [sys.executable, __file__, "--null-server", str(root / "pki")]
        targets: list[Target] = []
        for name, argv in (("null", null_cmd), ("mssgw", workers_cmd)):
            proc, port = await start(argv)
            procs.append(proc)
            targets.append(Target(name, port, functools.partial(tree_cpu_seconds, proc.pid)))
        missing = postfix.available()
        if missing is None:
            instance = postfix.ThrowawayPostfix(
                root / "postfix", manifest, rcpt.split("@", 1)[1], free_base([0])
            )
            await asyncio.to_thread(instance.start)
            targets.append(Target("postfix", instance.port, instance.cpu_seconds))
        # Interleaved: every round loads each server in turn, in a rotating order,
        # so that a change in the machine's load hits the baselines and us alike.
        for n in range(args.rounds):
            for mode, reuse in (("new", False), ("reuse", True)):
                for target in targets[n % len(targets) :] + targets[: n % len(targets)]:
                    target.runs[mode].append(
                        await run_load(
                            target.port, ctx, rcpt, args.senders, args.seconds, reuse, target.cpu
                        )
                    )
        print(
            f"inbound SMTP, {args.senders} senders, {MESSAGE_SIZE} B messages, "
            f"STARTTLS + client certificate, {args.rounds} interleaved round(s) of "
            f"{args.seconds:g} s per server and mode, medians, {os.cpu_count()} cores, "
            f"mssgw workers: {args.workers}"
        )
        if missing is not None:
            print(f"postfix: no baseline ({missing})")
        by_name = {t.name: t for t in targets}
        for mode, label in (("new", "new connection per message"), ("reuse", "reused connections")):
            null, null_cpu = by_name["null"].median(mode)
            ours, our_cpu = by_name["mssgw"].median(mode)
            spread = _ratios(by_name["mssgw"], by_name["null"], mode)
            print(
                f"  {label:28s} null handler {null:8.1f} msg/s   mssgw {ours:8.1f} msg/s   "
                f"ratio {ours / null:5.2f}x {spread}  (target >= 0.5x)"
            )
            print(
                f"  {'':28s} server CPU per message: null {null_cpu:5.2f} ms, "
                f"mssgw {our_cpu:5.2f} ms"
            )
            if "postfix" in by_name:
                pf, pf_cpu = by_name["postfix"].median(mode)
                spread = _ratios(by_name["mssgw"], by_name["postfix"], mode)
                print(
                    f"  {'':28s} postfix {pf:8.1f} msg/s (CPU {pf_cpu:5.2f} ms/msg, all its "
                    f"processes)   mssgw / postfix {ours / pf:5.2f}x {spread}  (target >= 1.0x)"
                )
        for proc in procs:
            stop(proc)
        procs.clear()
        if args.no_rss:
            return
        print("burst: 20 messages of 20 MB at once (one mssgw process)")
        for name, argv in (("null", null_cmd), ("mssgw", mssgw_cmd)):
            proc, port = await start(argv)
            try:
                seconds = await burst(port, ctx, rcpt, 20, 20 * 1024 * 1024)
                rss = peak_rss_mb(proc.pid)
            finally:
                stop(proc)
            target = "  (target <= 200 MB)" if name == "mssgw" else ""
            print(
                f"  {name:6s} peak RSS {rss:7.1f} MB, all acknowledged in {seconds:5.1f} s{target}"
            )
    finally:
        for proc in procs:
            stop(proc)
        if instance is not None:
            await asyncio.to_thread(instance.stop)
        shutil.rmtree(root, ignore_errors=True)


def _ratios(ours: Target, baseline: Target, mode: str) -> str:
    """The per-round ratios' range (each round's runs are minutes apart at most)."""
    ratios = [a / b for (a, _), (b, _) in zip(ours.runs[mode], baseline.runs[mode], strict=True)]
    return f"(rounds {min(ratios):.2f}-{max(ratios):.2f})"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--null-server":
        null_server_main(sys.argv[2])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--no-rss", action="store_true", help="skip the 20 x 20 MB burst")
    parser.add_argument(
        "--workers", type=int, default=1, help="mssgw worker processes (gateway.workers)"
    )
    asyncio.run(main(parser.parse_args()))
