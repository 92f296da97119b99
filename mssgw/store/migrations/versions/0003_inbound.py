"""Inbound SMTP: the envelope and DSN parameters kept with each delivered copy (issue 4).

A message received on port 25 is finally delivered here; RFC 3461 §6.2.1
makes us the MTA that sends a "delivered" DSN when the sender asked for
NOTIFY=SUCCESS.  The relay produces those notices later from these
columns, which hold the values exactly as the peer sent them.

Revision ID: 0003_inbound
Revises: 0002_directory
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_inbound"
down_revision = "0002_directory"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("return_path", sa.String(length=320), nullable=True))
        batch.add_column(sa.Column("dsn_envid", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("dsn_ret", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("dsn_notify", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("dsn_orcpt", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        for name in ("dsn_orcpt", "dsn_notify", "dsn_ret", "dsn_envid", "return_path"):
            batch.drop_column(name)
