"""Two nodes on one PostgreSQL database: a change on one wakes IDLE on the other
(LISTEN/NOTIFY, ``mssgw.imap.pgnotify``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mssgw.imap.notify import LocalChannel
from mssgw.imap.pgnotify import CHANNEL, PostgresBridge, asyncpg_dsn, parse
from mssgw.store.delivery import LocalTarget
from tests.imap.server_support import Env, Raw, imap_env, message
from tests.support.gateway import RunningGateway, running_gateway


@contextlib.asynccontextmanager
async def two_nodes(
    tmp_path: Path, trust_space: dict[str, Any], url: str
) -> AsyncIterator[tuple[RunningGateway, Env]]:
    """Node A (SMTP and IMAP) and node B (IMAP, with the test's mailboxes)."""
    async with imap_env(tmp_path / "b", trust_space, url=url) as node_b, running_gateway(
        tmp_path / "a", trust_space, url=url, listeners=("mta", "imaps")
    ) as node_a:
        for gw in (node_a, node_b.gw):
            assert gw.app.node_bridge is not None
            await gw.app.node_bridge.connected()
        yield node_a, node_b


async def idling(env: Env) -> Raw:
    raw = await Raw.connect(env.imaps, env.client_context())
    await raw.login(env.per, env.per_password)
    await raw.command("SELECT INBOX")
    await raw.send(b"i1 IDLE\r\n")
    assert (await raw.line()).startswith(b"+ ")
    return raw


async def until_line(raw: Raw, fragment: bytes, wait: float = 5.0) -> bytes:
    while True:
        line = await raw.line(wait)
        if fragment in line:
            return line


async def changes_wake_idle(other: RunningGateway, env: Env) -> None:
    """A delivery committed by ``other`` and a flag change by a client of ``other``
    wake an IDLE session of ``env`` (another node, or another worker)."""
    await env.deliver(message(1))
    idler = await idling(env)

    # A delivery committed by the other one (its port 25 would do the same).
    await other.store.messages.deliver(message(2), [LocalTarget(env.per)])
    await until_line(idler, b"* 2 EXISTS")

    # A flag change by a client of the other one.
    actor = await Raw.connect(other.ports["imaps"], env.client_context())
    await actor.login(env.per, env.per_password)
    await actor.command("SELECT INBOX")
    await actor.command("STORE 1 +FLAGS (\\Flagged)")
    line = await until_line(idler, b"* 1 FETCH")
    assert b"\\Flagged" in line
    for raw in (idler, actor):
        await raw.close()


async def test_delivery_and_flags_on_one_node_wake_idle_on_the_other(
    tmp_path: Path, trust_space: dict[str, Any], pg_url: str
) -> None:
    async with two_nodes(tmp_path, trust_space, pg_url) as (node_a, node_b):
        await changes_wake_idle(node_a, node_b)


async def test_idle_still_woken_after_the_link_was_cut(
    tmp_path: Path, trust_space: dict[str, Any], pg_url: str
) -> None:
    async with two_nodes(tmp_path, trust_space, pg_url) as (node_a, node_b):
        idler = await idling(node_b)
        bridge = node_b.gw.app.node_bridge
        assert bridge is not None
        # Cut node B's link from the server side, as a restart of PostgreSQL would.
        conn = await asyncpg.connect(asyncpg_dsn(pg_url))
        try:
            cut = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND datname = current_database()"
                " AND query LIKE $1",
                f"LISTEN%{CHANNEL}%",
            )
        finally:
            await conn.close()
        assert cut >= 1
        await node_a.store.messages.deliver(message(1), [LocalTarget(node_b.per)])
        # Missed while the link was down, or carried after it came back: either
        # way the idle session learns of it (poke_all after reconnecting).
        await until_line(idler, b"* 1 EXISTS", wait=15.0)
        await idler.close()


@pytest.mark.parametrize(
    ("payload", "parsed"),
    [
        ("12:345", (12, 345)),
        ("1:²", None),
        ("1:1", (1, 1)),
        ("12", None),
        ("a:1", None),
        ("1:-2", None),
        ("", None),
    ],
)
def test_payloads(payload: str, parsed: tuple[int, int] | None) -> None:
    assert parse(payload) == parsed


def test_malformed_notifications_are_ignored_and_stale_marks_wake_sessions() -> None:
    local = LocalChannel()
    woken: list[int] = []
    sub = local.subscribe(7)
    sub.waker = lambda: woken.append(sub.modseq)
    bridge = PostgresBridge("postgresql://unused", local)
    bridge._on_notification(None, 0, CHANNEL, "7:not-a-number")
    assert (sub.modseq, woken, bridge.received) == (0, [], 0)
    bridge._on_notification(None, 0, CHANNEL, "7:42")
    assert (sub.modseq, woken) == (42, [42])
    local.poke_all()
    assert sub.stale and woken == [42, 42]


def test_local_commits_are_merged_per_folder_before_sending() -> None:
    bridge = PostgresBridge("postgresql://unused")
    for folder, modseq in ((1, 5), (1, 9), (2, 3), (1, 7)):
        bridge.publish(folder, modseq)
    assert bridge._outbox == {1: 9, 2: 3}
