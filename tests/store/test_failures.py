"""Failures of the database or the disk never leave half a delivery behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mssgw.errors import StoreError
from mssgw.store import Store
from mssgw.store.delivery import LocalTarget
from mssgw.store.models import Message
from tests.conftest import settings_for
from tests.store.helpers import message, with_mailboxes
from tests.support.postgres import PgCluster


async def test_database_down_gives_store_error_then_recovers(
    tmp_path: Path, pg_cluster: PgCluster, pg_url: str
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    store = await Store.open(settings_for(tmp_path, pg_url), check_schema=False)
    await store.upgrade()
    try:
        (alice,) = await with_mailboxes(store, "alice")
        await store.messages.deliver(message(1), [LocalTarget(alice)])
        pg_cluster.psql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        pg_cluster.psql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
        )
        await store.engine.dispose()
        with pytest.raises(StoreError):
            await store.messages.deliver(message(2), [LocalTarget(alice)])
        pg_cluster.psql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")
        await store.engine.dispose()
        result = await store.messages.deliver(message(3), [LocalTarget(alice)])
        assert result.copies[0].uid == 2  # the failed delivery consumed nothing visible
        async with store.read() as s:
            assert await s.scalar(select(func.count()).select_from(Message)) == 2
    finally:
        await store.close()


async def test_blob_folder_unwritable_gives_store_error(store: Store, tmp_path: Path) -> None:
    (alice,) = await with_mailboxes(store, "alice")
    store.inline_max = 0  # a message file is written, not only a database row
    # Replace the blob folder by a file: every write fails like a full disk would.
    shutil.rmtree(store.blobs.root)
    store.blobs.root.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot write message file"):
        await store.messages.deliver(message(1), [LocalTarget(alice)])
    folder = await store.messages.folder(alice)
    assert await store.messages.uids(folder.id) == []
