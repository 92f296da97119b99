"""Limits: literal size (APPENDLIMIT), line length, connections, idle time, AUTH-4;
APPEND of a spooled literal is durable before OK (STORE-2)."""

from __future__ import annotations

import asyncio
import dataclasses
import imaplib
import re
from pathlib import Path
from typing import Any

from mssgw.auth.ratelimit import Budget, RateLimiter
from tests.imap.server_support import Raw, imap_env, message

SMALL = "[limits]\nimap_max_literal = 1000\n"


async def test_literal_limit_is_advertised_and_enforced(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with imap_env(tmp_path, trust_space, extra=SMALL) as env:
        raw = await Raw.connect(env.imaps, env.client_context())
        assert b"APPENDLIMIT=1000" in raw.greeting
        await raw.login(env.per, env.per_password)
        # Synchronising literal: refused before any octet is sent (no "+").
        lines = await raw.command("APPEND INBOX {5000}")
        assert lines == [b"t2 NO [TOOBIG] message too large\r\n"]
        # Non-synchronising: the octets are read and discarded, the session goes on.
        await raw.send(b"t3 APPEND INBOX {5000+}\r\n" + b"x" * 5000 + b"\r\n")
        assert (await raw.until(b"t3"))[-1].startswith(b"t3 NO [TOOBIG]")
        ok = await raw.command(b"APPEND INBOX {32+}\r\nSubject: small\r\n\r\nHello there.\r\n")
        assert ok[-1].split()[1:3] == [b"OK", b"[APPENDUID"]
        await raw.close()


async def test_long_line_is_fatal(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    async with imap_env(tmp_path, trust_space) as env:
        raw = await Raw.connect(env.imaps, env.client_context())
        await raw.send(b"t1 NOOP " + b"x" * 70_000 + b"\r\n")
        assert (await raw.line()).startswith(b"* BYE")
        assert await raw.reader.read() == b""
        await raw.close()


async def test_large_append_is_spooled_and_durable(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with imap_env(tmp_path, trust_space) as env:
        big = message(1, body="ligne de compte rendu\r\n" * 20_000)  # ~460 KB > spool threshold

        def client() -> tuple[Any, Any]:
            m = imaplib.IMAP4_SSL("127.0.0.1", env.imaps, ssl_context=env.client_context())
            m.login(env.per, env.per_password)
            _, data = m.append("Drafts", r"(\Draft)", None, big)
            m.select("Drafts")
            fetched = m.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
            m.logout()
            return data, fetched

        appended, fetched = await asyncio.to_thread(client)
        uid = int(re.search(rb"APPENDUID \d+ (\d+)", appended[0]).group(1))  # type: ignore[union-attr]
        folder = await env.gw.store.messages.folder(env.per, "Drafts")
        rows = await env.service.mail.rows(folder.id, [uid])
        assert (await env.gw.store.contents.read_one(rows[uid].blob_id)) == big
        assert fetched[1][0][1] == big and f"RFC822.SIZE {len(big)}".encode() in fetched[1][0][0]


async def test_connection_limits(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    per_identity = "[limits]\nimap_max_connections_per_identity = 2\n"
    async with imap_env(tmp_path, trust_space, extra=per_identity) as env:
        assert env.service.limits.max_per_identity == 2  # from the configuration file
        first = await Raw.connect(env.imaps, env.client_context())
        second = await Raw.connect(env.imaps, env.client_context())
        third = await Raw.connect(env.imaps, env.client_context())
        await first.login(env.per, env.per_password)
        await second.login(env.org, env.org_password)  # same person, as ORG delegate
        refused = await third.command(f'LOGIN "{env.per}" "{env.per_password}"')
        assert refused[-1].startswith(b"t1 NO [LIMIT]")
        await first.command("LOGOUT")
        await first.close()
        await asyncio.sleep(0.1)
        await third.login(env.per, env.per_password)
        for raw in (second, third):
            await raw.close()

        env.service.limits = dataclasses.replace(env.service.limits, max_per_ip=0)
        raw = await Raw.connect(env.imaps, env.client_context())
        assert raw.greeting.startswith(b"* BYE")
        await raw.close()


async def test_autologout_after_inactivity(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    async with imap_env(tmp_path, trust_space) as env:
        env.service.limits = dataclasses.replace(env.service.limits, idle_timeout=0.3)
        raw = await Raw.connect(env.imaps, env.client_context())
        assert (await raw.line(3.0)).startswith(b"* BYE autologout")
        await raw.close()


async def test_failed_logins_are_rate_limited(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    async with imap_env(tmp_path, trust_space) as env:
        env.service.auth.limiter = RateLimiter(Budget(2, 600), Budget(100, 600))
        raw = await Raw.connect(env.imaps, env.client_context())
        for _ in range(2):
            lines = await raw.command(f'LOGIN "{env.per}" "wrong-password"')
            assert b"NO [AUTHENTICATIONFAILED]" in lines[-1]
        lines = await raw.command(f'LOGIN "{env.per}" "{env.per_password}"')
        assert b"NO [UNAVAILABLE]" in lines[-1]
        await raw.close()
        traces = await env.gw.store.traces.recent(10, category="client")
        assert [t.result for t in traces if t.action == "imap.auth"][:3] == [
            "refused",
            "failed",
            "failed",
        ]


async def test_append_and_expunge_are_traced_with_their_change(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    """TRACE-1 records of APPEND and EXPUNGE are committed with the change itself:
    they are there when the tagged OK arrives, without waiting for anything."""
    async with imap_env(tmp_path, trust_space) as env:
        raw = await Raw.connect(env.imaps, env.client_context("professional"))
        await raw.command("AUTHENTICATE EXTERNAL =")
        await raw.command("SELECT INBOX")
        data = b"Subject: traced\r\n\r\nBonjour.\r\n"
        done = await raw.command(b"APPEND INBOX {%d+}\r\n" % len(data) + data)
        uid = done[-1].split(b"APPENDUID ")[1].split()[1].rstrip(b"]")
        await raw.command(b"UID STORE " + uid + b" +FLAGS.SILENT (\\Deleted)")
        appended = [t for t in await env.gw.store.traces.recent(20) if t.action == "imap.append"]
        assert [(t.result, t.size, t.recipients) for t in appended] == [("ok", len(data), env.per)]
        assert appended[0].tls and appended[0].tls.startswith("TLSv1.2")
        await raw.command(b"UID EXPUNGE " + uid)
        await raw.command(b"UID EXPUNGE " + uid)  # nothing left: nothing traced
        expunged = [t for t in await env.gw.store.traces.recent(20) if t.action == "imap.expunge"]
        assert [(t.size, t.reason, t.actor) for t in expunged] == [
            (1, "1 message(s)", appended[0].actor)
        ]
        assert not env.service._background  # nothing left to write afterwards
        await raw.command("LOGOUT")
        await raw.close()
