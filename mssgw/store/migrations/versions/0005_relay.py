"""Relay: outcome of the last attempt on queue rows, and the queue event history (issue 6).

Revision ID: 0005_relay
Revises: 0004_imap
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_relay"
down_revision = "0004_imap"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("queue") as batch:
        batch.add_column(sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_status", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("remote_mta", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("last_reply", sa.Text(), nullable=True))
    op.create_table(
        "queue_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("queue_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_events")),
    )
    op.create_index("ix_queue_events_queue_id", "queue_events", ["queue_id"], unique=False)
    op.create_index("ix_queue_events_at", "queue_events", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_queue_events_at", table_name="queue_events")
    op.drop_index("ix_queue_events_queue_id", table_name="queue_events")
    op.drop_table("queue_events")
    with op.batch_alter_table("queue") as batch:
        batch.drop_column("last_reply")
        batch.drop_column("remote_mta")
        batch.drop_column("last_status")
        batch.drop_column("last_attempt_at")
