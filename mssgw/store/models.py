"""Tables of the store (SQLAlchemy 2 declarative models).

The schema is owned by Alembic migrations (``mssgw db upgrade``); these
models must stay identical to what the migrations build (a test compares
them).  Vocabulary follows the glossary: a *mailbox* is an MSSanté BAL, a
*folder* is an IMAP mailbox.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mssgw.store.base import Base, UtcDateTime

# BigInteger on PostgreSQL, INTEGER (a rowid alias, so autoincrement works) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class MailboxType(enum.StrEnum):
    """SPEC BAL-1: the four MSSanté BAL types."""

    PER = "PER"
    ORG = "ORG"
    APP = "APP"
    CAB = "CAB"


class MailboxState(enum.StrEnum):
    """SPEC BAL-4: lifecycle.  ``deleted`` keeps the row so the address is never reused."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"


class QueueState(enum.StrEnum):
    QUEUED = "queued"
    HELD = "held"
    DELIVERED = "delivered"
    FAILED = "failed"


class Flag(enum.IntFlag):
    """IMAP system flags (RFC 3501 §2.3.2) as a bit set: compact for 100k-message folders."""

    SEEN = 1
    ANSWERED = 2
    FLAGGED = 4
    DELETED = 8
    DRAFT = 16


class Domain(Base):
    """A mail domain this gateway hosts."""

    __tablename__ = "domains"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Mailbox(Base):
    """An MSSanté BAL hosted here.  Address and type never change (BAL-1)."""

    __tablename__ = "mailboxes"
    __table_args__ = (
        CheckConstraint("type IN ('PER','ORG','APP','CAB')", name="type"),
        CheckConstraint("state IN ('active','suspended','deleted')", name="state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)
    domain_id: Mapped[int] = mapped_column(ForeignKey("domains.id"), index=True)
    type: Mapped[str] = mapped_column(String(3))
    #: RPPS/ADELI national id (PER) or FINESS/SIRET structure id (ORG/APP/CAB).
    owner_id: Mapped[str] = mapped_column(String(64), index=True)
    #: Structure a PER mailbox is attached to, when any.
    structure_id: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(16), default=MailboxState.ACTIVE.value)
    liste_rouge: Mapped[bool] = mapped_column(Boolean, default=False)
    last_auth_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Credential(Base):
    """An application password (SPEC AUTH-3): bound to one mailbox, stored hashed."""

    __tablename__ = "credentials"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"), index=True)
    #: Who it was issued to: national id of a professional, or the structure id.
    identity: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(100), default="")
    #: Public lookup prefix of the password, so authentication hashes once, not per row.
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class Delegation(Base):
    """Who may use an ORG/CAB mailbox (SPEC BAL-3): a professional's national id."""

    __tablename__ = "delegations"
    __table_args__ = (UniqueConstraint("mailbox_id", "identity"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"), index=True)
    identity: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Folder(Base):
    """An IMAP mailbox of one BAL, with the counters RFC 3501/7162 need."""

    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("mailbox_id", "name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    mailbox_id: Mapped[int] = mapped_column(ForeignKey("mailboxes.id"), index=True)
    name: Mapped[str] = mapped_column(String(500))
    special_use: Mapped[str | None] = mapped_column(String(20))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    #: Next UID to assign; only ever grows (RFC 3501 §2.3.1.1).
    uidnext: Mapped[int] = mapped_column(BigInteger, default=1)
    #: Highest MODSEQ given to any change in the folder (RFC 7162 §3.1.1).
    highestmodseq: Mapped[int] = mapped_column(BigInteger, default=1)
    subscribed: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Blob(Base):
    """Immutable message bytes, named by their SHA-256.

    A small message's bytes are ``data``, committed with the rows that
    reference them; a larger one's are a file under ``blob_dir`` (``data`` is
    NULL).  See ``mssgw.store.content``.
    """

    __tablename__ = "blobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    #: Never loaded with the row (``deferred``): only the content readers read it.
    data: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)


class Message(Base):
    """One stored copy of a blob in one folder."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("folder_id", "uid"),
        Index("ix_messages_folder_modseq", "folder_id", "modseq"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id"))
    uid: Mapped[int] = mapped_column(BigInteger)
    modseq: Mapped[int] = mapped_column(BigInteger)
    flags: Mapped[int] = mapped_column(Integer, default=0)
    #: Keywords (RFC 3501 §2.3.2), space separated, in the order they were set.
    keywords: Mapped[str] = mapped_column(Text, default="")
    internaldate: Mapped[datetime] = mapped_column(UtcDateTime())
    size: Mapped[int] = mapped_column(BigInteger)
    blob_id: Mapped[str] = mapped_column(ForeignKey("blobs.id"), index=True)
    message_id: Mapped[str | None] = mapped_column(Text)
    #: Cached at delivery: JSON of ENVELOPE and BODYSTRUCTURE, and raw header block size.
    envelope: Mapped[str | None] = mapped_column(Text)
    bodystructure: Mapped[str | None] = mapped_column(Text)
    header_size: Mapped[int | None] = mapped_column(Integer)
    #: Inbound (port 25) envelope kept for a "delivered" DSN (RFC 3461 §6.2.1), values
    #: as sent; NULL when the peer sent no DSN parameter (migration 0003_inbound).
    return_path: Mapped[str | None] = mapped_column(String(320))
    dsn_envid: Mapped[str | None] = mapped_column(String(100))
    dsn_ret: Mapped[str | None] = mapped_column(String(8))
    dsn_notify: Mapped[str | None] = mapped_column(String(40))
    dsn_orcpt: Mapped[str | None] = mapped_column(String(500))


class ExpungedMessage(Base):
    """A UID removed from a folder, with the MODSEQ of its removal (RFC 7162 §3.2.10).

    Why: other IMAP sessions on the folder learn about expunges by asking
    "what changed since MODSEQ m" (messages with ``modseq > m``, and these
    rows); a deleted row can no longer answer that.  Rows go with their
    folder; they are small (three integers) and may be purged by age.
    """

    __tablename__ = "expunged"
    __table_args__ = (Index("ix_expunged_folder_modseq", "folder_id", "modseq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id"))
    uid: Mapped[int] = mapped_column(BigInteger)
    modseq: Mapped[int] = mapped_column(BigInteger)


class QueueEntry(Base):
    """One remote recipient of one outbound message (SPEC FLOW-3)."""

    __tablename__ = "queue"
    __table_args__ = (Index("ix_queue_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    blob_id: Mapped[str] = mapped_column(ForeignKey("blobs.id"), index=True)
    sender: Mapped[str] = mapped_column(String(320))
    recipient: Mapped[str] = mapped_column(String(320))
    #: DSN parameters as sent (RFC 3461), case kept.
    envid: Mapped[str | None] = mapped_column(String(100))
    ret: Mapped[str | None] = mapped_column(String(8))
    notify: Mapped[str | None] = mapped_column(String(40))
    orcpt: Mapped[str | None] = mapped_column(String(500))
    state: Mapped[str] = mapped_column(String(16), default=QueueState.QUEUED.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    delay_notified: Mapped[bool] = mapped_column(Boolean, default=False)
    locked_by: Mapped[str | None] = mapped_column(String(100))
    locked_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    #: Outcome of the last attempt, for the DSN (RFC 3464 §2.3.4-2.3.7) and the CLI
    #: (migration 0005): when, the RFC 3463 status, the server that answered (its MX
    #: name) and its SMTP reply when the result came from it (else ``last_error``
    #: alone, our own reason).
    last_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_status: Mapped[str | None] = mapped_column(String(16))
    remote_mta: Mapped[str | None] = mapped_column(String(255))
    last_reply: Mapped[str | None] = mapped_column(Text)


class QueueEvent(Base):
    """One thing that happened to a queue row: an attempt's result or an operator action.

    Why a table next to the traces: ``mssgw queue history`` answers "what
    happened to message 42" by queue id, which traces (per SMTP
    transaction, TRACE-1) do not carry.  No foreign key: a dropped row keeps
    its history (migration 0005).
    """

    __tablename__ = "queue_events"
    __table_args__ = (
        Index("ix_queue_events_queue_id", "queue_id"),
        Index("ix_queue_events_at", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    queue_id: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    #: ``delivered``, ``deferred``, ``failed`` (attempts), ``hold``, ``release``,
    #: ``retry``, ``bounce``, ``drop`` (operator), ``dsn`` (a report was sent).
    event: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(320))
    #: The worker (node) or ``operator``.
    actor: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)


class Trace(Base):
    """Audit record of one action (SPEC TRACE-1).  Never message content or secrets."""

    __tablename__ = "traces"
    __table_args__ = (Index("ix_traces_at", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    #: ``transport`` (SMTP between operators, relay) or ``client`` (user actions).
    category: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str | None] = mapped_column(String(500))
    peer_ip: Mapped[str | None] = mapped_column(String(64))
    tls: Mapped[str | None] = mapped_column(String(100))
    sender: Mapped[str | None] = mapped_column(String(320))
    recipients: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    result: Mapped[str] = mapped_column(String(16))
    code: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)


def table(model: type[Base]) -> Table:
    """The Core ``Table`` of a model, for hot paths written as Core statements."""
    return cast(Table, model.__table__)
