"""Schema versions: upgrade with Alembic, and refuse to run on an old schema.

The daemon and every CLI command check that the database is at the newest
migration before touching it; an older schema gives one line telling the
operator to run ``mssgw db upgrade`` (nothing is changed behind their back).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from mssgw.errors import StoreUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def _current(connection: Connection) -> set[str]:
    return set(MigrationContext.configure(connection).get_current_heads())


async def current_revisions(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def upgrade(engine: AsyncEngine, target: str = "heads") -> tuple[set[str], set[str]]:
    """Apply every pending migration; return (before, after) revisions."""

    def run(connection: Connection) -> tuple[set[str], set[str]]:
        before = _current(connection)
        command.upgrade(alembic_config(connection), target)
        return before, _current(connection)

    async with engine.begin() as conn:
        return await conn.run_sync(run)


async def check(engine: AsyncEngine, url_for_humans: str) -> None:
    """Raise ``StoreUnavailable`` unless the schema is exactly at head."""
    current = await current_revisions(engine)
    heads = head_revisions()
    if current == heads:
        return
    if not current:
        what = "is empty (no mssgw schema)"
    elif current - heads and not _known(current):
        what = f"is at revision {_fmt(current)}, newer than this mssgw ({_fmt(heads)})"
        raise StoreUnavailable(f"database {url_for_humans} {what}: upgrade mssgw itself")
    else:
        what = f"is at revision {_fmt(current)}, expected {_fmt(heads)}"
    raise StoreUnavailable(f"database {url_for_humans} {what}: run 'mssgw db upgrade'")


def _known(revisions: set[str]) -> bool:
    script = ScriptDirectory.from_config(alembic_config())
    try:
        return all(script.get_revision(r) is not None for r in revisions)
    except Exception:  # alembic raises several types for unknown ids
        return False


def _fmt(revisions: set[Any]) -> str:
    return ",".join(sorted(revisions)) or "none"
