"""Small messages kept inside the database: ``blobs.data`` (NULL: the bytes are a file).

Revision ID: 0006_inline_blobs
Revises: 0005_relay
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_inline_blobs"
down_revision = "0005_relay"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("data", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # Inline messages would be lost with the column: refuse rather than lose mail.
    bind = op.get_bind()
    inline = bind.execute(sa.text("SELECT count(*) FROM blobs WHERE data IS NOT NULL")).scalar()
    if inline:
        raise RuntimeError(
            f"{inline} message(s) are stored inside the database (blobs.data); "
            "downgrading would lose them"
        )
    with op.batch_alter_table("blobs") as batch:
        batch.drop_column("data")
