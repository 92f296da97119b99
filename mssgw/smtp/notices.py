"""Delivery status notifications that the SMTP edges and the relay send.

RFC 3461 §6.2.1: the MTA that makes the final delivery of a recipient whose
``NOTIFY`` includes ``SUCCESS`` sends a "delivered" report to the envelope
sender.  Both our final-delivery edges do: submission (a local recipient of
one of our users) and port 25 (a message from another operator, whose sender
is remote: the report is queued back to it through the relay).

``route_report`` is where any report we generate goes: into the sender's
INBOX when it is one of our mailboxes, else queued to it with an empty
envelope sender, so that no report is ever sent about a report (§6.1).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from mssgw.address import domain_of
from mssgw.smtp.dsn import DsnReport, RecipientReport, build_dsn, wants_notice
from mssgw.store import Store
from mssgw.store.delivery import Envelope, LocalTarget, RemoteTarget
from mssgw.store.models import MailboxState

log = logging.getLogger(__name__)

#: A header block longer than this is cut (a report carries headers, not content).
HEADER_MAX = 256 * 1024


@dataclass(frozen=True)
class Delivered:
    """One recipient that was finally delivered, with its DSN parameters as sent."""

    address: str
    notify: str | None
    orcpt: str | None


async def route_report(
    store: Store, sender: str, data: bytes, *, wake: Callable[[], None] | None = None
) -> str | None:
    """Deliver report ``data`` to ``sender``; return where it went, None when dropped."""
    mailbox = await store.mailboxes.find(sender)
    if mailbox is not None:
        if mailbox.state != MailboxState.ACTIVE.value:
            log.warning("DSN for a %s mailbox dropped", mailbox.state)
            return None
        await store.messages.deliver(data, [LocalTarget(mailbox.address)])
        return "INBOX"
    if domain_of(sender) in await store.mailboxes.hosted_domains():
        log.warning("DSN for an unknown local mailbox dropped")
        return None
    await store.messages.deliver(
        data, remote=[RemoteTarget(sender, notify="NEVER")], envelope=Envelope("")
    )
    if wake is not None:
        wake()
    return "queued"


async def send_delivered(
    store: Store,
    *,
    reporting_mta: str,
    sender: str,
    recipients: Sequence[Delivered],
    envid: str | None,
    ret: str | None,
    head: bytes,
    message_id: str | None,
    wake: Callable[[], None] | None = None,
) -> str | None:
    """The "delivered" report for the recipients that asked for one (RFC 3461 §6.2.1).

    The message itself is already durable: a failure here is logged, never raised,
    and the message stays accepted (a lost notice beats a duplicate on retry).
    """
    now = datetime.now(UTC)
    reports = [
        RecipientReport(
            final_recipient=r.address.lower(),
            action="delivered",
            status="2.0.0",
            reason="delivered to the mailbox",
            original_recipient=r.orcpt,
            last_attempt=now,
        )
        for r in recipients
        if wants_notice(r.notify, "delivered", sender=sender)
    ]
    if not reports:
        return None
    report = DsnReport(
        reporting_mta=reporting_mta,
        sender=sender,
        recipients=reports,
        date=now,
        envid=envid,
        ret=ret,
        arrival_date=now,
        message_id=message_id,
    )
    try:
        return await route_report(store, sender, build_dsn(report, head), wake=wake)
    except Exception as exc:  # the store refused: log, the message is accepted already
        log.error("delivered DSN to a sender not stored: %s", type(exc).__name__)
        return None


async def header_block(source: bytes | IO[bytes]) -> bytes:
    """The message's header block (bounded), read from the spool and rewound."""
    if isinstance(source, bytes):
        return _read_head(io.BytesIO(source))
    head = await asyncio.to_thread(_read_head, source)
    source.seek(0)
    return head


def _read_head(f: IO[bytes]) -> bytes:
    head = bytearray()
    while line := f.readline(65536):
        head += line
        if line == b"\r\n" or len(head) > HEADER_MAX:
            break
    return bytes(head)
