"""Schema versions: migrations match the models; old or absent schemas are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from mssgw.config import Settings
from mssgw.errors import StoreUnavailable
from mssgw.store import Store
from mssgw.store.base import Base
from tests.conftest import settings_for


async def test_migrations_build_exactly_the_models(store: Store) -> None:
    def diff(conn: object) -> list[object]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})  # type: ignore[arg-type]
        return list(compare_metadata(ctx, Base.metadata))

    async with store.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_empty_database_is_refused_with_the_fix(settings: Settings) -> None:
    with pytest.raises(StoreUnavailable, match=r"is empty .*run 'mssgw db upgrade'"):
        await Store.open(settings)


async def test_older_schema_is_refused(store: Store, settings: Settings) -> None:
    async with store.write() as s:
        await s.execute(text("UPDATE alembic_version SET version_num = '0000_older'"))
    with pytest.raises(StoreUnavailable, match=r"0000_older.*(newer than this mssgw|db upgrade)"):
        await Store.open(settings)


async def test_upgrade_is_idempotent(store: Store) -> None:
    before, after = await store.upgrade()
    assert before == after


async def test_unreachable_database_says_so(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "postgresql+asyncpg://nobody@127.0.0.1:1/none")
    with pytest.raises(
        StoreUnavailable,
        match=r"database postgresql\+asyncpg://nobody@127.0.0.1:1/none unreachable",
    ):
        await Store.open(settings)


async def test_downgrade_below_inline_blobs_refuses_to_lose_messages(store: Store) -> None:
    from alembic import command
    from sqlalchemy import Connection

    from mssgw.store.delivery import LocalTarget
    from mssgw.store.schema import alembic_config
    from tests.store.helpers import message, with_mailboxes

    def downgrade(conn: Connection) -> None:
        command.downgrade(alembic_config(conn), "0005_relay")

    (alice,) = await with_mailboxes(store, "alice")
    await store.messages.deliver(message(1), [LocalTarget(alice)])
    with pytest.raises(RuntimeError, match=r"1 message\(s\) are stored inside the database"):
        async with store.write_engine.begin() as conn:
            await conn.run_sync(downgrade)
    async with store.write() as s:  # the messages are gone another way: now it may go
        await s.execute(text("DELETE FROM messages"))
        await s.execute(text("DELETE FROM blobs"))
    async with store.write_engine.begin() as conn:
        await conn.run_sync(downgrade)
    before, after = await store.upgrade()
    assert before == {"0005_relay"} and after == {"0006_inline_blobs"}
