"""SQL tables of the directory replica (the embedded default, SQLite or PostgreSQL).

One row per address, columns named after ``DirectoryEntry`` fields so the
mapping is mechanical; empty values are stored as NULL.  The primary key is
the lower-cased address: the mail path looks up by address and nothing else
refers to these rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mssgw.store.base import Base


class DirectoryEntryRow(Base):
    """A mailbox of the national directory, or one of ours (``source = 'local'``)."""

    __tablename__ = "directory_entries"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    bal_type: Mapped[str] = mapped_column(String(3))
    pp_id_type: Mapped[str | None] = mapped_column(String(8))
    pp_id: Mapped[str | None] = mapped_column(String(32))
    pp_national_id: Mapped[str | None] = mapped_column(String(32), index=True)
    structure_id_type: Mapped[str | None] = mapped_column(String(8))
    structure_id: Mapped[str | None] = mapped_column(String(64), index=True)
    service: Mapped[str | None] = mapped_column(Text)
    civility: Mapped[str | None] = mapped_column(String(32))
    last_name: Mapped[str | None] = mapped_column(Text)
    first_name: Mapped[str | None] = mapped_column(Text)
    profession_category_code: Mapped[str | None] = mapped_column(String(16))
    profession_category: Mapped[str | None] = mapped_column(Text)
    profession_code: Mapped[str | None] = mapped_column(String(16))
    profession: Mapped[str | None] = mapped_column(Text)
    speciality_code: Mapped[str | None] = mapped_column(String(16))
    speciality: Mapped[str | None] = mapped_column(Text)
    dematerialisation: Mapped[bool] = mapped_column(Boolean, default=False)
    org_name: Mapped[str | None] = mapped_column(Text)
    org_trade_name: Mapped[str | None] = mapped_column(Text)
    addr_complement_location: Mapped[str | None] = mapped_column(Text)
    addr_complement_distribution: Mapped[str | None] = mapped_column(Text)
    addr_street_number: Mapped[str | None] = mapped_column(String(16))
    addr_street_number_complement: Mapped[str | None] = mapped_column(String(16))
    addr_street_type: Mapped[str | None] = mapped_column(String(32))
    addr_street_name: Mapped[str | None] = mapped_column(Text)
    addr_lieu_dit: Mapped[str | None] = mapped_column(Text)
    addr_routing_line: Mapped[str | None] = mapped_column(Text)
    addr_postcode: Mapped[str | None] = mapped_column(String(16))
    addr_department: Mapped[str | None] = mapped_column(String(64))
    addr_country: Mapped[str | None] = mapped_column(String(64))
    liste_rouge: Mapped[bool] = mapped_column(Boolean, default=False)
    owner_ref: Mapped[str | None] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(16))
    content_hash: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DirectorySyncRun(Base):
    """One sync report (applied, refused or failed), newest last."""

    __tablename__ = "directory_sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    source: Mapped[str] = mapped_column(String(200))
    replica: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    read: Mapped[int] = mapped_column(Integer, default=0)
    valid: Mapped[int] = mapped_column(Integer, default=0)
    invalid: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    added: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    skipped_local: Mapped[int] = mapped_column(Integer, default=0)
    duration: Mapped[float] = mapped_column(Float, default=0.0)
    #: JSON list of [line number, reason] for the first invalid lines.
    invalid_details: Mapped[str] = mapped_column(Text, default="[]")
    #: Source-specific resume point (FHIR: the ``_lastUpdated`` to ask next).
    watermark: Mapped[str] = mapped_column(String(64), default="")


class DirectoryPublication(Base):
    """What we last published to the national directory for one of our BALs (DIR-4)."""

    __tablename__ = "directory_publications"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    owner_resource: Mapped[str] = mapped_column(String(32))
    owner_identifier: Mapped[str] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(16))
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
