"""STORE that the session expects to change nothing (``read_first``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mssgw.store.mail import Mail
from mssgw.store.models import Flag
from tests.imap.server_support import Raw, imap_env, message


async def test_read_first_still_writes_when_the_hint_is_wrong(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with imap_env(tmp_path, trust_space) as env:
        await env.deliver(message(1))
        mail = Mail(env.gw.store)
        mailbox = await env.gw.store.mailboxes.get(env.per)
        inbox = await mail.folder(mailbox.id, "INBOX")
        assert inbox is not None
        known = inbox.highestmodseq
        # The caller expected no change, but \Seen is not set yet: it is written.
        result = await mail.store_flags(inbox.id, [1], "add", Flag.SEEN, [], read_first=True)
        assert [(m.uid, m.flags) for m in result.changed] == [(1, int(Flag.SEEN))]
        assert result.modseq == known + 1
        # Now it is a no-op: answered from the read, no new MODSEQ.
        again = await mail.store_flags(inbox.id, [1], "add", Flag.SEEN, [], read_first=True)
        assert again.changed == [] and again.modseq is None
        assert [(m.uid, m.flags) for m in again.unchanged] == [(1, int(Flag.SEEN))]
        status = await mail.status(inbox.id)
        assert status.highestmodseq == known + 1


async def test_storing_flags_a_message_has_changes_nothing(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with imap_env(tmp_path, trust_space) as env:
        await env.deliver(message(1))
        raw = await Raw.connect(env.imaps, env.client_context())
        await raw.command(f'LOGIN "{env.per}" "{env.per_password}"')
        await raw.command("SELECT INBOX")
        first = await raw.command("STORE 1 +FLAGS (\\Seen $Label1)")
        assert b"* 1 FETCH (FLAGS (\\Seen $Label1))" in first[0]
        modseq = (await raw.command("STATUS INBOX (HIGHESTMODSEQ)"))[0]
        committer = env.gw.store.committer
        units: list[object] = []
        run = committer.run

        async def counting(work: Any, **kwargs: Any) -> Any:
            units.append(work)
            return await run(work, **kwargs)

        committer.run = counting  # type: ignore[method-assign]
        try:
            again = await raw.command("STORE 1 +FLAGS (\\Seen $label1)")
        finally:
            committer.run = run  # type: ignore[method-assign]
        assert again[0].startswith(b"* 1 FETCH (FLAGS (\\Seen $Label1) MODSEQ (")
        assert again[-1].split()[1] == b"OK"
        assert units == []  # answered from a read: nothing went to the write path
        assert (await raw.command("STATUS INBOX (HIGHESTMODSEQ)"))[0] == modseq
        await raw.close()
