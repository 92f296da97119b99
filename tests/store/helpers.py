"""Builders shared by the store tests."""

from __future__ import annotations

from mssgw.store import Store
from mssgw.store.mailboxes import NewMailbox
from mssgw.store.models import MailboxType

DOMAIN = "op1.mssante.test"


async def with_mailboxes(store: Store, *locals_: str) -> list[str]:
    """Host ``DOMAIN`` and create PER mailboxes for the given local parts."""
    if DOMAIN not in await store.mailboxes.hosted_domains():
        await store.mailboxes.add_domain(DOMAIN)
    addresses = []
    for i, local in enumerate(locals_):
        address = f"{local}@{DOMAIN}"
        await store.mailboxes.add(NewMailbox(address, MailboxType.PER, f"8100000000{i:02d}"))
        addresses.append(address)
    return addresses


def message(n: int, size: int = 200) -> bytes:
    head = f"From: a@{DOMAIN}\r\nSubject: test {n}\r\nMessage-ID: <{n}@test>\r\n\r\n".encode()
    return head + (b"x" * max(0, size - len(head) - 2)) + b"\r\n"
