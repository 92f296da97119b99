"""IMAP load: commands/s with N clients (against Dovecot when installed), RSS per
idle IDLE connection, SELECT and ``UID FETCH 1:* (FLAGS)`` on a 100,000-message folder.

The gateway runs in a child process (``--serve``), so that the load generator
does not share its interpreter, and its RSS can be read from /proc.  Every
client is the same small asyncio IMAP client for both servers.  Each client
loops over: LOGIN, SELECT, header FETCH, body FETCH, flag STORE, APPEND,
STORE \\Deleted, UID EXPUNGE, LOGOUT (9 commands), in its own mailbox.  The
"session" figure repeats the same loop without LOGIN/LOGOUT (one session per
client), which isolates command cost from Argon2id password checks.

    .venv/bin/python bench/imap_load.py [--clients 10] [--seconds 10] [--rounds 3]
        [--idle 1000] [--big 100000] [--no-dovecot] [--idle-login] [--workers N]

Both servers run side by side and are loaded in interleaved rounds (rotating
the order); the medians are printed, with the range of the per-round ratios.

Targets (issue 5): >= 1.0x Dovecot; <= 30 KiB per idle connection; SELECT <= 1 s
and the full flag fetch <= 2 s on 100k messages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import json
import os
import pwd
import resource
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MESSAGE = (
    b"From: Dr A <a@op2.mssante.test>\r\nTo: b@op1.mssante.test\r\nSubject: bench\r\n"
    b"Date: Mon, 1 Jan 2024 10:00:00 +0100\r\nMessage-ID: <bench@test>\r\n\r\n"
    + b"Compte rendu de consultation.\r\n"
    * 60
)
HEADERS = "BODY.PEEK[HEADER.FIELDS (From To Subject Date Message-ID)]"


# --------------------------------------------------------------------------- client


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.n = reader, writer, 0

    @classmethod
    async def open(cls, port: int, ctx: ssl.SSLContext) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, limit=1 << 22)
        client = cls(reader, writer)
        await reader.readuntil(b"\r\n")
        return client

    async def cmd(self, text: bytes) -> list[bytes]:
        self.n += 1
        tag = b"b%d " % self.n
        self.writer.write(tag + text + b"\r\n")
        lines = []
        while True:
            line = await self.reader.readuntil(b"\r\n")
            while line.endswith(b"}\r\n"):
                size = int(line[line.rindex(b"{") + 1 : -3])
                line += await self.reader.readexactly(size) + await self.reader.readuntil(b"\r\n")
            lines.append(line)
            if line.startswith(tag):
                if not line[len(tag) :].startswith(b"OK"):
                    raise RuntimeError(f"{text[:40]!r}: {line!r}")
                return lines

    async def append(self, data: bytes) -> int:
        lines = await self.cmd(b"APPEND INBOX {%d+}\r\n" % len(data) + data)
        tail = lines[-1]
        if b"APPENDUID" in tail:
            return int(tail.split(b"APPENDUID ")[1].split()[1].rstrip(b"]"))
        return -1

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def one_loop(c: Client, user: str, password: str, *, login: bool) -> int:
    count = 0
    if login:
        await c.cmd(f'LOGIN "{user}" "{password}"'.encode())
        count += 1
    await c.cmd(b"SELECT INBOX")
    await c.cmd(f"UID FETCH 1:* (UID RFC822.SIZE FLAGS {HEADERS})".encode())
    await c.cmd(b"FETCH 1 (BODY.PEEK[])")
    await c.cmd(b"STORE 1 +FLAGS (\\Seen)")
    uid = await c.append(MESSAGE)
    uid_set = b"*" if uid < 0 else b"%d" % uid  # no APPENDUID: the last message
    await c.cmd(b"UID STORE " + uid_set + b" +FLAGS.SILENT (\\Deleted)")
    await c.cmd(b"UID EXPUNGE " + uid_set)
    count += 7
    if login:
        await c.cmd(b"LOGOUT")
        count += 1
    else:
        await c.cmd(b"UNSELECT")
        count += 1
    return count


async def load(port: int, accounts: list[list[str]], seconds: float, *, login: bool) -> float:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    stop = time.monotonic() + seconds
    total = 0

    # ``total += await ...`` would read ``total`` before the await and lose the
    # other workers' counts made meanwhile: await first, then add.
    async def worker(user: str, password: str) -> None:
        nonlocal total
        if login:
            while time.monotonic() < stop:
                c = await Client.open(port, ctx)
                done = await one_loop(c, user, password, login=True)
                total += done
                await c.close()
            return
        c = await Client.open(port, ctx)
        await c.cmd(f'LOGIN "{user}" "{password}"'.encode())
        while time.monotonic() < stop:
            done = await one_loop(c, user, password, login=False)
            total += done
        await c.cmd(b"LOGOUT")
        await c.close()

    start = time.monotonic()
    await asyncio.gather(*(worker(u, p) for u, p in accounts))
    return total / (time.monotonic() - start)


async def prefill(port: int, accounts: list[list[str]], count: int = 20) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    for user, password in accounts:
        c = await Client.open(port, ctx)
        await c.cmd(f'LOGIN "{user}" "{password}"'.encode())
        for _ in range(count):
            await c.append(MESSAGE)
        await c.cmd(b"LOGOUT")
        await c.close()


# --------------------------------------------------------------------------- mssgw child


async def serve(state: Path, clients: int, big: int, workers: int = 1) -> None:
    from mssgw import config, runtime
    from mssgw.app import App
    from mssgw.imap.service import for_app
    from mssgw.store import Store
    from mssgw.store.mailboxes import NewMailbox
    from mssgw.store.models import MailboxType, Message, table
    from mssgw.tls import devpki
    from tests.support.gateway import gateway_config

    manifest = devpki.init_dev(state / "pki", operators=1)
    extra = (
        "[limits]\nmax_connections = 5000\nmax_connections_per_ip = 5000\n"
        "imap_max_connections_per_identity = 10000\n"
    )
    settings = config.load(
        gateway_config(state, manifest, listeners=("imaps",), extra=extra), env={}
    )
    store = await Store.open(settings, check_schema=False)
    await store.upgrade()
    app = App(settings, store, runtime.build(settings))
    ports = await app.start()
    service = for_app(app)
    service.limits = dataclasses.replace(service.limits, max_per_identity=10_000)
    domain = manifest["operators"][0]["domain"]
    accounts = []
    for i in range(clients):
        address = f"bench{i}@{domain}"
        await store.mailboxes.add(NewMailbox(address, MailboxType.PER, f"81000000{i:04d}"))
        accounts.append([address, (await store.credentials.issue(address)).password])
    pro = manifest["professional"]
    await store.mailboxes.add(NewMailbox(f"pro@{domain}", MailboxType.PER, pro["national_id"]))
    big_address = f"big@{domain}"
    await store.mailboxes.add(NewMailbox(big_address, MailboxType.PER, "810000099999"))
    big_password = (await store.credentials.issue(big_address)).password
    if big:
        from mssgw.store.delivery import LocalTarget

        first = await store.messages.deliver(MESSAGE, [LocalTarget(big_address)])
        folder_id, blob_id = first.copies[0].folder_id, first.blob.id
        rows = await service.mail.rows(folder_id, [1])
        template = dataclasses.asdict(rows[1])

        def fill(conn: Any) -> None:
            from sqlalchemy import update

            from mssgw.store.models import Folder

            t = table(Message)
            batch = []
            for uid in range(2, big + 1):
                batch.append(
                    {
                        **{k: v for k, v in template.items()},
                        "uid": uid,
                        "modseq": 2,
                        "folder_id": folder_id,
                        "blob_id": blob_id,
                        "flags": uid % 2,
                        "message_id": None,
                    }
                )
                if len(batch) == 10_000:
                    conn.execute(t.insert(), batch)
                    batch = []
            if batch:
                conn.execute(t.insert(), batch)
            f = table(Folder)
            conn.execute(
                update(f).where(f.c.id == folder_id).values(uidnext=big + 1, highestmodseq=3)
            )

        await store.committer.run(fill)
    supervisor = None
    if workers > 1:
        # The gateway as `mssgw serve --workers N` runs it: this process binds
        # the listener and supervises N worker processes sharing it.
        from mssgw.workers import Supervisor, bind_listeners, bound_ports, enabled_listeners

        await app.stop()
        listeners = enabled_listeners(settings, ["imaps"])
        sockets = bind_listeners(listeners, workers)
        supervisor = Supervisor(settings.source, sockets)
        await supervisor.start()
        ports = bound_ports(sockets[0])
    info = {
        "pid": os.getpid(),
        "workers": supervisor.pids() if supervisor else [],
        "port": ports["imaps"],
        "accounts": accounts,
        "big": [big_address, big_password],
        "anchors": manifest["anchors"],
        "cert": pro["certificate"],
        "cert_server": manifest["operators"][0]["certificate"],
        "key_server": manifest["operators"][0]["key"],
        "key": pro["key"],
    }
    print(json.dumps(info), flush=True)
    loop = asyncio.get_running_loop()
    # SIGUSR1: give free heap pages back to the system (glibc), so that memory
    # freed earlier (the 100k-row fill, the load) is not silently reused by
    # the idle connections measured next.
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc only
    loop.add_signal_handler(signal.SIGUSR1, lambda: trim(0) if trim else None)
    done = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), done.set)
    await done.wait()
    if supervisor is not None:
        await supervisor.stop()
    else:
        await app.stop()
    await store.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def idle_rss(
    info: dict[str, Any], count: int, conns: list[Client], *, external: bool = True
) -> float:
    """KiB of server RSS per authenticated, selected, IDLE connection: EXTERNAL
    (a client certificate, which OpenSSL keeps parsed for the whole connection)
    or LOGIN (no client certificate).  The connections are left open in
    ``conns`` (closing them first would let the next measurement reuse their
    freed memory)."""
    ctx = ssl.create_default_context(cafile=info["anchors"])
    ctx.check_hostname = False
    if external:
        ctx.load_cert_chain(info["cert"], info["key"])
        login = b"AUTHENTICATE EXTERNAL ="
    else:
        user, password = info["accounts"][0]
        login = f'LOGIN "{user}" "{password}"'.encode()

    async def one() -> Client:
        c = await Client.open(info["port"], ctx)
        await c.cmd(login)
        await c.cmd(b"SELECT INBOX")
        c.writer.write(b"i IDLE\r\n")
        await c.reader.readuntil(b"\r\n")
        return c

    for _ in range(20):  # warm up allocator pools
        conns.append(await one())
    os.kill(info["pid"], signal.SIGUSR1)
    await asyncio.sleep(0.5)
    before = rss_kib(info["pid"])
    for start in range(0, count, 50):
        conns.extend(await asyncio.gather(*(one() for _ in range(min(50, count - start)))))
    await asyncio.sleep(1.0)
    after = rss_kib(info["pid"])
    return (after - before) / count


async def big_folder(info: dict[str, Any]) -> tuple[float, float, int]:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    c = await Client.open(info["port"], ctx)
    user, password = info["big"]
    await c.cmd(f'LOGIN "{user}" "{password}"'.encode())
    t0 = time.monotonic()
    await c.cmd(b"SELECT INBOX")
    t1 = time.monotonic()
    lines = await c.cmd(b"UID FETCH 1:* (FLAGS)")
    t2 = time.monotonic()
    await c.cmd(b"LOGOUT")
    await c.close()
    return t1 - t0, t2 - t1, len(lines) - 1


# --------------------------------------------------------------------------- dovecot


@contextlib.contextmanager
def dovecot(state: Path, clients: int, cert: str, key: str) -> Any:
    """A throwaway Dovecot on a free port (maildir, passwd-file, same TLS cert)."""
    from tests.support.postgres import free_port

    port = free_port()
    nobody = pwd.getpwnam("nobody")
    for sub in ("run", "home"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    for folder in (state.parent, state):  # auth workers run as the dovecot user
        os.chmod(folder, 0o755)
    os.chmod(state / "home", 0o777)
    password = "bench-password-123"
    scheme_hash = (
        subprocess.run(
            ["doveadm", "pw", "-s", "ARGON2ID", "-p", password],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        or "{PLAIN}" + password
    )
    accounts = [[f"bench{i}", password] for i in range(clients)]
    (state / "passwd").write_text("".join(f"{u}:{scheme_hash}::::::\n" for u, _ in accounts))
    conf = state / "dovecot.conf"
    conf.write_text(
        f"""base_dir = {state}/run
state_dir = {state}/state
log_path = {state}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = {nobody.pw_uid}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = {state}/passwd
}}
userdb {{
  driver = static
  args = uid={nobody.pw_uid} gid={nobody.pw_gid} home={state}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = 2
}}
service imap {{
  process_limit = 1024
}}
"""
    )
    subprocess.run(["dovecot", "-c", str(conf)], check=True)
    try:
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.1)
        yield port, accounts
    finally:
        subprocess.run(["doveadm", "-c", str(conf), "stop"], check=False, capture_output=True)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--no-dovecot", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--idle-login",
        action="store_true",
        help="also measure idle connections authenticated by LOGIN (no client certificate)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gateway worker processes (gateway.workers; default 1); above 1 only the"
        " command load is measured",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))
    if args.serve:
        asyncio.run(serve(Path(args.serve), args.clients, args.big, args.workers))
        return
    if args.workers > 1:
        args.idle = args.big = 0  # per-process figures: measured with one process
    with tempfile.TemporaryDirectory(prefix="mssgw-imap-bench-") as tmp:
        state = Path(tmp)
        child = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                str(state / "mssgw"),
                "--clients",
                str(args.clients),
                "--big",
                str(args.big),
                "--workers",
                str(args.workers),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            info = json.loads(child.stdout.readline())
            results = asyncio.run(run_all(info, args, state))
        finally:
            if child.stdin:
                child.stdin.close()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(child.pid, signal.SIGKILL)
    print(json.dumps(results, indent=2))


async def run_all(info: dict[str, Any], args: argparse.Namespace, state: Path) -> dict[str, Any]:
    out: dict[str, Any] = {
        "clients": args.clients,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "workers": args.workers,
    }
    with contextlib.ExitStack() as stack:
        targets: dict[str, tuple[int, list[list[str]]]] = {
            "mssgw": (info["port"], info["accounts"])
        }
        if not args.no_dovecot and shutil.which("dovecot"):
            targets["dovecot"] = stack.enter_context(
                dovecot(state / "dovecot", args.clients, info["cert_server"], info["key_server"])
            )
        else:
            out["dovecot"] = "not installed: no ratio"
        for port, accounts in targets.values():
            await prefill(port, accounts)
        # Interleaved rounds, rotating the order: a change in this shared host's
        # speed hits both servers alike; the medians are printed.
        runs: dict[tuple[str, str], list[float]] = {}
        names = list(targets)
        for n in range(args.rounds):
            order = names[n % len(names) :] + names[: n % len(names)]
            for kind, login in (("session", False), ("with_login", True)):
                for name in order:
                    port, accounts = targets[name]
                    rate = await load(port, accounts, args.seconds, login=login)
                    runs.setdefault((name, kind), []).append(rate)
        for (name, kind), rates in runs.items():
            out[f"{name}_cmds_per_s_{kind}"] = round(statistics.median(rates))
        if "dovecot" in targets:
            for kind in ("with_login", "session"):
                ratios = [
                    a / b
                    for a, b in zip(runs[("mssgw", kind)], runs[("dovecot", kind)], strict=True)
                ]
                out[f"ratio_{kind}"] = round(
                    out[f"mssgw_cmds_per_s_{kind}"] / out[f"dovecot_cmds_per_s_{kind}"], 2
                )
                out[f"ratio_{kind}_rounds"] = f"{min(ratios):.2f}-{max(ratios):.2f}"
    print(f"load: {out}", file=sys.stderr)
    if args.idle:
        conns: list[Client] = []
        out["rss_kib_per_idle_connection"] = round(await idle_rss(info, args.idle, conns), 1)
        out["idle_connections"] = args.idle
        if args.idle_login:
            out["rss_kib_per_idle_connection_login"] = round(
                await idle_rss(info, args.idle, conns, external=False), 1
            )
        for c in conns:
            c.writer.write(b"DONE\r\n")
            await c.close()
    if args.big:
        select_s, fetch_s, lines = await big_folder(info)
        out["big_folder_messages"] = lines
        out["big_select_s"] = round(select_s, 3)
        out["big_uid_fetch_flags_s"] = round(fetch_s, 3)
    return out


if __name__ == "__main__":
    main()
