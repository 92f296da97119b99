"""Directory replica: entries, sync reports, publication state (issue 7).

Revision ID: 0002_directory
Revises: 0001_initial
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_directory"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "directory_entries",
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("bal_type", sa.String(length=3), nullable=False),
        sa.Column("pp_id_type", sa.String(length=8), nullable=True),
        sa.Column("pp_id", sa.String(length=32), nullable=True),
        sa.Column("pp_national_id", sa.String(length=32), nullable=True),
        sa.Column("structure_id_type", sa.String(length=8), nullable=True),
        sa.Column("structure_id", sa.String(length=64), nullable=True),
        sa.Column("service", sa.Text(), nullable=True),
        sa.Column("civility", sa.String(length=32), nullable=True),
        sa.Column("last_name", sa.Text(), nullable=True),
        sa.Column("first_name", sa.Text(), nullable=True),
        sa.Column("profession_category_code", sa.String(length=16), nullable=True),
        sa.Column("profession_category", sa.Text(), nullable=True),
        sa.Column("profession_code", sa.String(length=16), nullable=True),
        sa.Column("profession", sa.Text(), nullable=True),
        sa.Column("speciality_code", sa.String(length=16), nullable=True),
        sa.Column("speciality", sa.Text(), nullable=True),
        sa.Column("dematerialisation", sa.Boolean(), nullable=False),
        sa.Column("org_name", sa.Text(), nullable=True),
        sa.Column("org_trade_name", sa.Text(), nullable=True),
        sa.Column("addr_complement_location", sa.Text(), nullable=True),
        sa.Column("addr_complement_distribution", sa.Text(), nullable=True),
        sa.Column("addr_street_number", sa.String(length=16), nullable=True),
        sa.Column("addr_street_number_complement", sa.String(length=16), nullable=True),
        sa.Column("addr_street_type", sa.String(length=32), nullable=True),
        sa.Column("addr_street_name", sa.Text(), nullable=True),
        sa.Column("addr_lieu_dit", sa.Text(), nullable=True),
        sa.Column("addr_routing_line", sa.Text(), nullable=True),
        sa.Column("addr_postcode", sa.String(length=16), nullable=True),
        sa.Column("addr_department", sa.String(length=64), nullable=True),
        sa.Column("addr_country", sa.String(length=64), nullable=True),
        sa.Column("liste_rouge", sa.Boolean(), nullable=False),
        sa.Column("owner_ref", sa.String(length=128), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("content_hash", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_directory_entries")),
    )
    op.create_index(
        op.f("ix_directory_entries_pp_national_id"),
        "directory_entries",
        ["pp_national_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_directory_entries_structure_id"),
        "directory_entries",
        ["structure_id"],
        unique=False,
    )
    op.create_table(
        "directory_publications",
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("owner_resource", sa.String(length=32), nullable=False),
        sa.Column("owner_identifier", sa.String(length=200), nullable=False),
        sa.Column("content_hash", sa.String(length=16), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_directory_publications")),
    )
    op.create_table(
        "directory_sync_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("replica", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("read", sa.Integer(), nullable=False),
        sa.Column("valid", sa.Integer(), nullable=False),
        sa.Column("invalid", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("skipped_local", sa.Integer(), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("invalid_details", sa.Text(), nullable=False),
        sa.Column("watermark", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directory_sync_runs")),
    )
    op.create_index(
        op.f("ix_directory_sync_runs_started_at"),
        "directory_sync_runs",
        ["started_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_directory_sync_runs_started_at"), table_name="directory_sync_runs")
    op.drop_table("directory_sync_runs")
    op.drop_table("directory_publications")
    op.drop_index(op.f("ix_directory_entries_structure_id"), table_name="directory_entries")
    op.drop_index(op.f("ix_directory_entries_pp_national_id"), table_name="directory_entries")
    op.drop_table("directory_entries")
