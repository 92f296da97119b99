"""Initial schema: domains, mailboxes, credentials, delegations, folders, blobs, messages,
queue, traces.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

# BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blobs")),
    )
    op.create_table(
        "domains",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domains")),
        sa.UniqueConstraint("name", name=op.f("uq_domains_name")),
    )
    op.create_table(
        "traces",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=500), nullable=True),
        sa.Column("peer_ip", sa.String(length=64), nullable=True),
        sa.Column("tls", sa.String(length=100), nullable=True),
        sa.Column("sender", sa.String(length=320), nullable=True),
        sa.Column("recipients", sa.Text(), nullable=True),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=20), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_traces")),
    )
    op.create_index("ix_traces_at", "traces", ["at"], unique=False)
    op.create_table(
        "mailboxes",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("domain_id", BIG_ID, nullable=False),
        sa.Column("type", sa.String(length=3), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("structure_id", sa.String(length=64), nullable=True),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("liste_rouge", sa.Boolean(), nullable=False),
        sa.Column("last_auth_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('active','suspended','deleted')", name=op.f("ck_mailboxes_state")
        ),
        sa.CheckConstraint("type IN ('PER','ORG','APP','CAB')", name=op.f("ck_mailboxes_type")),
        sa.ForeignKeyConstraint(
            ["domain_id"], ["domains.id"], name=op.f("fk_mailboxes_domain_id_domains")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailboxes")),
        sa.UniqueConstraint("address", name=op.f("uq_mailboxes_address")),
    )
    op.create_index(op.f("ix_mailboxes_domain_id"), "mailboxes", ["domain_id"], unique=False)
    op.create_index(op.f("ix_mailboxes_owner_id"), "mailboxes", ["owner_id"], unique=False)
    op.create_table(
        "queue",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("blob_id", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("envid", sa.String(length=100), nullable=True),
        sa.Column("ret", sa.String(length=8), nullable=True),
        sa.Column("notify", sa.String(length=40), nullable=True),
        sa.Column("orcpt", sa.String(length=500), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delay_notified", sa.Boolean(), nullable=False),
        sa.Column("locked_by", sa.String(length=100), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["blob_id"], ["blobs.id"], name=op.f("fk_queue_blob_id_blobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue")),
    )
    op.create_index(op.f("ix_queue_blob_id"), "queue", ["blob_id"], unique=False)
    op.create_index("ix_queue_due", "queue", ["state", "next_attempt_at"], unique=False)
    op.create_table(
        "credentials",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("mailbox_id", BIG_ID, nullable=False),
        sa.Column("identity", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["mailboxes.id"], name=op.f("fk_credentials_mailbox_id_mailboxes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credentials")),
    )
    op.create_index(op.f("ix_credentials_mailbox_id"), "credentials", ["mailbox_id"], unique=False)
    op.create_index(op.f("ix_credentials_prefix"), "credentials", ["prefix"], unique=False)
    op.create_table(
        "delegations",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("mailbox_id", BIG_ID, nullable=False),
        sa.Column("identity", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["mailboxes.id"], name=op.f("fk_delegations_mailbox_id_mailboxes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delegations")),
        sa.UniqueConstraint(
            "mailbox_id", "identity", name=op.f("uq_delegations_mailbox_id_identity")
        ),
    )
    op.create_index(op.f("ix_delegations_identity"), "delegations", ["identity"], unique=False)
    op.create_index(op.f("ix_delegations_mailbox_id"), "delegations", ["mailbox_id"], unique=False)
    op.create_table(
        "folders",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("mailbox_id", BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("special_use", sa.String(length=20), nullable=True),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uidnext", sa.BigInteger(), nullable=False),
        sa.Column("highestmodseq", sa.BigInteger(), nullable=False),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"], ["mailboxes.id"], name=op.f("fk_folders_mailbox_id_mailboxes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_folders")),
        sa.UniqueConstraint("mailbox_id", "name", name=op.f("uq_folders_mailbox_id_name")),
    )
    op.create_index(op.f("ix_folders_mailbox_id"), "folders", ["mailbox_id"], unique=False)
    op.create_table(
        "messages",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("folder_id", BIG_ID, nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.Column("flags", sa.Integer(), nullable=False),
        sa.Column("keywords", sa.Text(), nullable=False),
        sa.Column("internaldate", sa.DateTime(timezone=True), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("blob_id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("envelope", sa.Text(), nullable=True),
        sa.Column("bodystructure", sa.Text(), nullable=True),
        sa.Column("header_size", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["blob_id"], ["blobs.id"], name=op.f("fk_messages_blob_id_blobs")),
        sa.ForeignKeyConstraint(
            ["folder_id"], ["folders.id"], name=op.f("fk_messages_folder_id_folders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("folder_id", "uid", name=op.f("uq_messages_folder_id_uid")),
    )
    op.create_index(op.f("ix_messages_blob_id"), "messages", ["blob_id"], unique=False)
    op.create_index("ix_messages_folder_modseq", "messages", ["folder_id", "modseq"], unique=False)


def downgrade() -> None:
    for table in (
        "traces",
        "queue",
        "messages",
        "blobs",
        "folders",
        "delegations",
        "credentials",
        "mailboxes",
        "domains",
    ):
        op.drop_table(table)
