"""Shared fixtures: settings, stores on SQLite and on a throwaway PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from mssgw import config
from mssgw.store import Store
from tests.support import postgres

_db_counter = itertools.count(1)


@pytest.fixture(scope="session")
def trust_space(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A development PKI and signed liste blanche (``mssgw.tls.devpki``), made once per run."""
    from mssgw.tls import devpki

    return devpki.init_dev(tmp_path_factory.mktemp("trust-space"), operators=2)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[postgres.PgCluster]:
    with postgres.cluster() as server:
        yield server


@pytest.fixture
def pg_url(pg_cluster: postgres.PgCluster) -> str:
    """A fresh, empty database on the throwaway cluster (asyncpg URL)."""
    name = f"t{next(_db_counter)}"
    pg_cluster.psql(f"CREATE DATABASE {name}")
    return pg_cluster.url(name).replace("postgresql://", "postgresql+asyncpg://")


def settings_for(tmp_path: Path, url: str | None = None) -> config.Settings:
    """Settings with everything under ``tmp_path`` (SQLite unless ``url``)."""
    path = tmp_path / "mssgw.toml"
    store_url = url or f"sqlite:///{tmp_path / 'mssgw.db'}"
    path.write_text(
        f'[gateway]\nstate_dir = "{tmp_path}"\ndomains = []\n'
        f'[store]\nurl = "{store_url}"\nblob_dir = "{tmp_path / "blobs"}"\n'
    )
    return config.load(path, env={})


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> config.Settings:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    return settings_for(tmp_path, url)


@pytest.fixture
async def store(settings: config.Settings) -> AsyncIterator[Store]:
    """An upgraded, empty store on the parametrised backend."""
    s = await Store.open(settings, check_schema=False)
    await s.upgrade()
    try:
        yield s
    finally:
        await s.close()
