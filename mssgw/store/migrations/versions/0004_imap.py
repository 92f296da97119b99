"""IMAP server: expunged UIDs per MODSEQ, so sessions resynchronise by MODSEQ (issue 5).

Revision ID: 0004_imap
Revises: 0003_inbound
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_imap"
down_revision = "0003_inbound"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "expunged",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("folder_id", BIG_ID, nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["folder_id"], ["folders.id"], name=op.f("fk_expunged_folder_id_folders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_expunged")),
    )
    op.create_index("ix_expunged_folder_modseq", "expunged", ["folder_id", "modseq"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_expunged_folder_modseq", table_name="expunged")
    op.drop_table("expunged")
