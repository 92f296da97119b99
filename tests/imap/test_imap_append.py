"""APPEND finds its folder in the transaction that files the message (RFC 3501 §6.3.11)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.imap.server_support import Raw, imap_env

DATA = b"Subject: filed\r\n\r\nBonjour.\r\n"


def _append(folder: bytes) -> bytes:
    return b"APPEND " + folder + b" {%d+}\r\n" % len(DATA) + DATA


@asynccontextmanager
async def _logged_in(tmp_path: Path, trust_space: dict[str, Any]) -> AsyncIterator[Raw]:
    async with imap_env(tmp_path, trust_space) as env:
        raw = await Raw.connect(env.imaps, env.client_context())
        await raw.login(env.per, env.per_password)
        try:
            yield raw
        finally:
            await raw.close()


async def test_append_to_a_missing_folder_says_trycreate_then_works_once_created(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with _logged_in(tmp_path, trust_space) as raw:
        refused = await raw.command(_append(b"Projets"))
        assert refused[-1].split()[1:3] == [b"NO", b"[TRYCREATE]"]
        assert (await raw.command("CREATE Projets"))[-1].split()[1] == b"OK"
        done = await raw.command(_append(b"Projets"))
        assert done[-1].split()[1:3] == [b"OK", b"[APPENDUID"]
        status = await raw.command("STATUS Projets (MESSAGES)")
        assert status[0] == b"* STATUS Projets (MESSAGES 1)\r\n"


async def test_append_to_inbox_in_any_case_and_to_the_selected_folder(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with _logged_in(tmp_path, trust_space) as raw:
        await raw.command("SELECT INBOX")
        for name in (b"inbox", b"INBOX", b"InBox"):
            done = await raw.command(_append(name))
            assert done[-1].split()[1] == b"OK", done
        # The selected folder learnt about its own appends (RFC 3501 §7.3.1).
        noop = await raw.command("NOOP")
        exists = await raw.command("SEARCH ALL")
        assert exists[0] == b"* SEARCH 1 2 3\r\n", (noop, exists)
