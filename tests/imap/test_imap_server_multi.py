"""Several sessions on one folder: pushes during IDLE, catch-up at the next
command, MSNs never shifted mid-command (RFC 3501 §7.4.1), keep-alives."""

from __future__ import annotations

import asyncio
import dataclasses
import imaplib
from pathlib import Path
from typing import Any

import aioimaplib
import pytest

from tests.imap.server_support import Env, Raw, imap_env, message


async def _pushes(raw: Raw, wanted: list[bytes], wait: float = 5.0) -> list[bytes]:
    """Read untagged lines until every wanted fragment was seen."""
    seen: list[bytes] = []
    missing = list(wanted)
    while missing:
        line = await raw.line(wait)
        seen.append(line)
        missing = [w for w in missing if not any(w in s for s in seen)]
    return seen


async def _client(env: Env) -> Raw:
    raw = await Raw.connect(env.imaps, env.client_context())
    await raw.login(env.per, env.per_password)
    return raw


async def test_idle_receives_flags_expunge_and_new_mail(
    tmp_path: Path, trust_space: dict[str, Any], backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    async with imap_env(tmp_path, trust_space, url=url) as env:
        for n in range(1, 4):
            await env.deliver(message(n))
        idler, actor = await _client(env), await _client(env)
        await idler.command("ENABLE CONDSTORE")
        await idler.command("SELECT INBOX")
        await actor.command("SELECT INBOX")
        await idler.send(b"i1 IDLE\r\n")
        assert (await idler.line()).startswith(b"+ ")

        await actor.command("STORE 1 +FLAGS (\\Seen $Urgent)")
        got = await _pushes(idler, [b"* 1 FETCH (UID 1 FLAGS (\\Seen $Urgent) MODSEQ"])
        assert not any(b"EXPUNGE" in line for line in got)

        await actor.command("STORE 2 +FLAGS.SILENT (\\Deleted)")
        await actor.command("EXPUNGE")
        await _pushes(idler, [b"* 2 EXPUNGE"])

        await env.deliver(message(4))
        await _pushes(idler, [b"* 3 EXISTS"])
        await idler.send(b"DONE\r\n")
        done = await idler.until(b"i1")
        assert done[-1] == b"i1 OK IDLE terminated\r\n"
        fetched = await idler.command("FETCH 1:* (UID)")
        assert [line for line in fetched if line.startswith(b"* ")] == [
            b"* 1 FETCH (UID 1)\r\n",
            b"* 2 FETCH (UID 3)\r\n",
            b"* 3 FETCH (UID 4)\r\n",
        ]
        await idler.close()
        await actor.close()


async def test_expunge_never_shifts_numbers_mid_command(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with imap_env(tmp_path, trust_space) as env:
        for n in range(1, 5):
            await env.deliver(message(n))
        reader, actor = await _client(env), await _client(env)
        await reader.command("SELECT INBOX")
        await actor.command("SELECT INBOX")
        await actor.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
        await actor.command("EXPUNGE")
        await env.deliver(message(5))

        # FETCH by number: EXISTS may come, EXPUNGE may not; message 1 keeps its number.
        lines = await reader.command("FETCH 1:* (UID FLAGS)")
        assert not any(b"EXPUNGE" in line for line in lines)
        assert b"* 5 EXISTS\r\n" in lines
        assert b"* 2 FETCH (UID 2 FLAGS ())\r\n" in lines
        # Data of the expunged message is gone, its number still valid.
        lines = await reader.command("FETCH 1 (BODY.PEEK[])")
        assert lines[-1].split()[1] == b"OK" and not any(b"BODY[]" in x for x in lines)
        lines = await reader.command("SEARCH ALL")
        assert lines[0] == b"* SEARCH 2 3 4 5\r\n"
        # STORE by number: still no EXPUNGE.
        lines = await reader.command("STORE 2 +FLAGS (\\Flagged)")
        assert not any(b"EXPUNGE" in line for line in lines)
        # NOOP is where the expunge is announced, then numbers shift.
        lines = await reader.command("NOOP")
        assert lines[0] == b"* 1 EXPUNGE\r\n"
        lines = await reader.command("FETCH 1 (UID)")
        assert lines[0] == b"* 1 FETCH (UID 2)\r\n"
        await reader.close()
        await actor.close()


async def test_uid_commands_may_announce_expunges(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with imap_env(tmp_path, trust_space) as env:
        for n in range(1, 4):
            await env.deliver(message(n))
        reader, actor = await _client(env), await _client(env)
        await reader.command("SELECT INBOX")
        await actor.command("SELECT INBOX")
        await actor.command("UID MOVE 2 Trash")
        lines = await reader.command("UID FETCH 1:* (FLAGS)")
        assert lines[0] == b"* 1 FETCH (UID 1 FLAGS ())\r\n"
        assert b"* 2 EXPUNGE\r\n" in lines
        status = await reader.command("STATUS Trash (MESSAGES UIDNEXT)")
        assert status[0] == b"* STATUS Trash (MESSAGES 1 UIDNEXT 2)\r\n"
        await reader.close()
        await actor.close()


async def test_keepalive_during_idle(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    async with imap_env(tmp_path, trust_space) as env:
        env.service.limits = dataclasses.replace(env.service.limits, keepalive=0.2)
        raw = await _client(env)
        await raw.command("SELECT INBOX")
        await raw.send(b"i IDLE\r\n")
        await raw.line()
        assert await raw.line(2.0) == b"* OK Still here\r\n"
        await raw.send(b"DONE\r\n")
        assert (await raw.until(b"i"))[-1].startswith(b"i OK")
        await raw.close()


async def test_real_clients_one_idles_while_other_expunges(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with imap_env(tmp_path, trust_space) as env:
        for n in range(1, 4):
            await env.deliver(message(n))
        idler = aioimaplib.IMAP4_SSL("127.0.0.1", env.imaps, ssl_context=env.client_context())
        await idler.wait_hello_from_server()
        await idler.login(env.per, env.per_password)
        await idler.select("INBOX")
        idle = await idler.idle_start(timeout=20)

        def other() -> None:
            m = imaplib.IMAP4_SSL("127.0.0.1", env.imaps, ssl_context=env.client_context())
            m.login(env.per, env.per_password)
            m.select("INBOX")
            m.store("3", "+FLAGS", r"(\Flagged)")
            m.store("1", "+FLAGS", r"(\Deleted)")
            m.expunge()
            m.logout()

        await asyncio.to_thread(other)
        pushed: list[bytes] = []
        while _flagged_then_expunged(pushed) is None:
            batch = await idler.wait_server_push(timeout=5)
            pushed.extend(p if isinstance(p, bytes) else p.encode() for p in batch)
        idler.idle_done()
        await asyncio.wait_for(idle, 5)
        await idler.logout()
    assert _flagged_then_expunged(pushed), pushed


def _flagged_then_expunged(pushed: list[bytes]) -> bool | None:
    """Whether the pushes report message 3 flagged and message 1 expunged with the
    right numbers (None: not both yet).  A session that learns of both changes at
    once may send the EXPUNGE first; message 3 is then number 2 (RFC 3501 §7.4.1)."""
    expunged, flagged_msn = False, None
    for p in pushed:
        if p.startswith(b"1 EXPUNGE"):
            expunged = True
        elif b"FETCH" in p and b"\\Flagged" in p and flagged_msn is None:
            flagged_msn = (b"2" if expunged else b"3", p.split(b" ", 1)[0])
    if not expunged or flagged_msn is None:
        return None
    expected, got = flagged_msn
    return expected == got
