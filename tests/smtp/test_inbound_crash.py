"""Kill -9 the daemon during a load: every message that got 250 is stored exactly once.

The gateway runs as a real ``python -m mssgw serve`` process; 16 senders
deliver concurrently (several messages per connection), the process is
SIGKILLed once 60 messages were acknowledged, then restarted on the same
state.  Messages are identified by Message-ID.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from mssgw import config
from mssgw.smtp.data import stuff
from mssgw.store import Store
from mssgw.store.models import Message
from tests.smtp.inbound_support import RawClient, add_mailbox, message, sender_context
from tests.support import process
from tests.support.gateway import gateway_config

SENDERS = 16
KILL_AFTER = 60
_PORT_RE = re.compile(rb"listener mta on 127\.0\.0\.1:(\d+)")


async def start(config_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    argv = [sys.executable, "-m", "mssgw", "--config", str(config_path), "serve"]
    return await asyncio.to_thread(process.start, argv, _port_in, timeout=30)


def _port_in(line: bytes) -> int | None:
    found = _PORT_RE.search(line)
    return int(found.group(1)) if found else None


async def sender(
    port: int, ctx: Any, rcpt: str, who: int, acked: list[str], stop: asyncio.Event
) -> None:
    n = 0
    while not stop.is_set():
        try:
            c = await RawClient.connect(port)
            await c.open_session(ctx)
            for _ in range(4):  # a few messages per connection, then a new one
                mid = f"crash-{who}-{n}"
                n += 1
                assert (await c.cmd("MAIL FROM:<dr.martin@op2.mssante.test>")).code == 250
                assert (await c.cmd(f"RCPT TO:<{rcpt}>")).code == 250
                assert (await c.cmd("DATA")).code == 354
                await c.send(stuff(message(mid, body=b"x" * 3000 + b"\r\n")))
                reply = await c.reply()
                if reply.code == 250:
                    acked.append(f"<{mid}@op2.mssante.test>")
            await c.cmd("QUIT")
            await c.close()
        except (OSError, ConnectionError, AssertionError, TimeoutError, EOFError):
            return


async def counts(settings: config.Settings) -> dict[str, int]:
    store = await Store.open(settings)
    try:
        async with store.read() as s:
            rows = await s.execute(
                select(Message.message_id, func.count()).group_by(Message.message_id)
            )
            return {str(mid): int(n) for mid, n in rows.all()}
    finally:
        await store.close()


async def test_sigkill_during_load_loses_and_duplicates_nothing_acknowledged(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    path = gateway_config(tmp_path, trust_space, listeners=("mta",))
    settings = config.load(path, env={})
    rcpt = f"a@{trust_space['operators'][0]['domain']}"
    store = await Store.open(settings, check_schema=False)
    await store.upgrade()
    await store.mailboxes.ensure_domain(trust_space["operators"][0]["domain"])
    await add_mailbox(store, rcpt)
    await store.close()

    proc, port = await start(path)
    ctx = sender_context(trust_space)
    acked: list[str] = []
    stop = asyncio.Event()
    tasks = [asyncio.create_task(sender(port, ctx, rcpt, i, acked, stop)) for i in range(SENDERS)]
    try:
        async with asyncio.timeout(60):
            while len(acked) < KILL_AFTER:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        proc.send_signal(signal.SIGKILL)  # mid-load: transactions are in flight
        proc.wait(10)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert len(acked) >= KILL_AFTER

    proc, port = await start(path)  # restart on the same state
    try:
        found = await counts(settings)
        assert [m for m in acked if found.get(m) != 1] == []
        assert [m for m, n in found.items() if n != 1] == []  # nothing twice, acked or not
        # And the restarted daemon takes mail again.
        c = await RawClient.connect(port)
        await c.open_session(ctx)
        assert (await c.cmd("MAIL FROM:<dr.martin@op2.mssante.test>")).code == 250
        assert (await c.cmd(f"RCPT TO:<{rcpt}>")).code == 250
        assert (await c.cmd("DATA")).code == 354
        await c.send(stuff(message("after-restart")))
        assert (await c.reply()).code == 250
        await c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
