"""The daemon's housekeeping forgets IMAP expunge records a period after they were marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mssgw.store.delivery import LocalTarget
from mssgw.store.mail import Mail
from mssgw.store.models import Flag
from tests.store.helpers import message, with_mailboxes
from tests.support.gateway import running_gateway


async def test_housekeeping_forgets_expunges_one_period_later(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    async with running_gateway(tmp_path, trust_space, listeners=("http",)) as gw:
        (address,) = await with_mailboxes(gw.store, "alice")
        for n in range(3):
            await gw.store.messages.deliver(message(n), [LocalTarget(address)])
        mail = Mail(gw.store)
        mailbox = await gw.store.mailboxes.get(address)
        inbox = await mail.folder(mailbox.id, "INBOX")
        assert inbox is not None
        await mail.store_flags(inbox.id, [1], "add", Flag.DELETED, [])
        await mail.expunge(inbox.id)

        mark = await gw.app.forget_expunged(None)  # first run after a start: mark only
        assert (await mail.changes(inbox.id, 0)).expunged == [1]
        await mail.store_flags(inbox.id, [2], "add", Flag.DELETED, [])
        await mail.expunge(inbox.id)

        next_mark = await gw.app.forget_expunged(mark)  # a day later: older ones go
        assert (await mail.changes(inbox.id, 0)).expunged == [2]
        assert next_mark > mark
