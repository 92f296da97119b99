"""Change notifications between the workers of one gateway (``mssgw.imap.siblings``)."""

from __future__ import annotations

import asyncio
import socket
import stat
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mssgw.imap.notify import LocalChannel
from mssgw.imap.siblings import MAX_TOKENS, SiblingBridge, decode, encode, socket_path
from mssgw.workers import WorkerRole
from tests.imap.server_support import imap_env
from tests.imap.test_imap_nodes import changes_wake_idle
from tests.support.gateway import running_gateway


def test_encode_then_decode_gives_every_change_back() -> None:
    changes = {folder: folder * 7 + 1 for folder in range(1, 2 * MAX_TOKENS + 10)}
    datagrams = encode(changes)
    assert len(datagrams) == 3
    assert all(len(d.split()) <= MAX_TOKENS for d in datagrams)
    got: dict[int, int] = {}
    for datagram in datagrams:
        pairs, bad = decode(datagram)
        assert bad == 0
        got.update(pairs)
    assert got == changes


def test_decode_keeps_well_formed_tokens_and_counts_the_others() -> None:
    table = [
        (b"1:2", [(1, 2)], 0),
        (b"1:2 3:4", [(1, 2), (3, 4)], 0),
        (b"", [], 0),
        (b"x:1 2:3", [(2, 3)], 1),
        (b"1: :2 1:2:3 \xff\xfe", [], 4),
        ("\u0663:1".encode(), [], 1),  # an Arabic-Indic digit is no digit here
    ]
    for datagram, pairs, bad in table:
        assert decode(datagram) == (pairs, bad), datagram


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_decode_takes_any_bytes(datagram: bytes) -> None:
    pairs, bad = decode(datagram)
    assert bad + len(pairs) == len(datagram.split())
    assert all(folder >= 0 and modseq >= 0 for folder, modseq in pairs)


async def _pair(run_dir: Path) -> tuple[SiblingBridge, SiblingBridge, LocalChannel]:
    sender, receiver_channel = SiblingBridge(run_dir, 0, 2), LocalChannel()
    receiver = SiblingBridge(run_dir, 1, 2, receiver_channel)
    sender.begin()
    receiver.begin()
    return sender, receiver, receiver_channel


async def _until(predicate: Any, wait: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + wait
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_a_change_published_by_one_worker_reaches_the_others_merged(
    tmp_path: Path,
) -> None:
    sender, receiver, channel = await _pair(tmp_path / "run")
    try:
        sub = channel.subscribe(7)
        woken: list[int] = []
        sub.waker = lambda: woken.append(sub.modseq)
        for modseq in (3, 5, 4):  # in one turn of the loop: merged, highest wins
            sender.publish(7, modseq)
        await _until(lambda: sub.modseq == 5)
        assert woken == [5]
        assert sender.sent == 1
        assert receiver.received == 1
        assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o700
    finally:
        await sender.stop()
        await receiver.stop()
    assert not socket_path(tmp_path / "run", 0).exists()


async def test_a_full_receive_queue_delays_notices_and_loses_none(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    sender = SiblingBridge(run_dir, 0, 2)
    sender.begin()
    # A sibling that does not read yet, with a small receive queue.
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    slow.bind(str(socket_path(run_dir, 1)))
    slow.setblocking(False)
    try:
        for folder in range(1, 4001):  # one folder per turn: one datagram each
            sender.publish(folder, 1)
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        assert sender._outbox, "the queue never filled: the test proves nothing"
        got: set[int] = set()
        deadline = asyncio.get_running_loop().time() + 10
        while len(got) < 4000:
            assert asyncio.get_running_loop().time() < deadline, f"{len(got)} of 4000"
            try:
                pairs, bad = decode(slow.recv(65536))
            except BlockingIOError:
                await asyncio.sleep(0.002)
                continue
            assert bad == 0
            got.update(folder for folder, _ in pairs)
        assert got == set(range(1, 4001))
        assert sender.dropped == 0
    finally:
        slow.close()
        await sender.stop()


async def test_a_sibling_that_is_not_running_costs_nothing(tmp_path: Path) -> None:
    sender = SiblingBridge(tmp_path / "run", 0, 3)
    sender.begin()
    channel = LocalChannel()
    running = SiblingBridge(tmp_path / "run", 2, 3, channel)
    running.begin()
    try:
        sub = channel.subscribe(1)
        sender.publish(1, 9)
        await _until(lambda: sub.modseq == 9)
        assert sender.dropped == 1  # worker 1 has no socket (restarting)
        assert not sender._outbox
    finally:
        await sender.stop()
        await running.stop()


async def test_a_stale_socket_left_by_a_dead_worker_is_replaced(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(socket_path(run_dir, 1)))
    dead.close()  # the file stays, as after a kill -9
    sender, receiver, channel = await _pair(run_dir)
    try:
        sub = channel.subscribe(4)
        sender.publish(4, 2)
        await _until(lambda: sub.modseq == 2)
    finally:
        await sender.stop()
        await receiver.stop()


async def test_garbage_from_a_local_process_is_ignored(tmp_path: Path) -> None:
    sender, receiver, channel = await _pair(tmp_path / "run")
    intruder = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sub = channel.subscribe(5)
        intruder.sendto(b"\x00\xff junk 5:x 5:3", str(socket_path(tmp_path / "run", 1)))
        await _until(lambda: sub.modseq == 3)
        assert receiver.received == 1
    finally:
        intruder.close()
        await sender.stop()
        await receiver.stop()


async def test_two_workers_on_one_sqlite_database_wake_each_others_idle(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    """The gateway wiring: worker 1 serves the IDLE session; a delivery and a flag
    change made through worker 0 reach it (same state folder, same database)."""
    state = tmp_path / "gw"
    async with (
        imap_env(state, trust_space, role=WorkerRole(1, 2)) as worker_1,
        running_gateway(
            state, trust_space, listeners=("mta", "imaps"), role=WorkerRole(0, 2)
        ) as worker_0,
    ):
        for gw in (worker_0, worker_1.gw):
            assert isinstance(gw.app.node_bridge, SiblingBridge)
        await changes_wake_idle(worker_0, worker_1)
