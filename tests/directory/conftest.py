"""Fixtures for the directory: a real slapd, real local HTTP servers, sample files.

The slapd fixture FAILS (never skips) when slapd is missing: an LDAP replica
that was not exercised must not look tested.  One server per session; each
test gets its own base ``ou`` so tests stay independent.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

import mssgw.directory.sql_models  # noqa: F401  (registers the tables)
from mssgw.directory import sample, slapd
from mssgw.directory.ldap_replica import LdapReplica
from mssgw.directory.sql_replica import SqlReplica
from mssgw.store.base import Base

_ou_counter = itertools.count(1)


@pytest.fixture(scope="session")
def slapd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[slapd.Slapd]:
    server = slapd.start(tmp_path_factory.mktemp("slapd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ldap_replica(slapd_server: slapd.Slapd) -> Iterator[LdapReplica]:
    base = f"ou=t{next(_ou_counter)},{slapd_server.suffix}"
    replica = LdapReplica(slapd_server.url, slapd_server.root_dn, slapd_server.password, base,
                          timeout=5, window=7)  # a small window exercises several windows
    try:
        yield replica
    finally:
        replica.close()


@pytest.fixture(params=["sqlite", "postgres"])
def replica_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: SQLite file, or a fresh database on the throwaway PostgreSQL."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite+aiosqlite:///{tmp_path / 'directory.db'}"


@pytest.fixture
async def sql_replica(replica_url: str) -> AsyncIterator[SqlReplica]:
    """The SQL replica tables (``create_all``; the migration is checked by the store tests)."""
    engine = create_async_engine(replica_url)
    if replica_url.startswith("sqlite"):

        @event.listens_for(engine.sync_engine, "connect")
        def _wal(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA journal_mode = WAL")

    tables = [t for name, t in Base.metadata.tables.items() if name.startswith("directory_")]
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: Base.metadata.create_all(c, tables=tables))
    try:
        yield SqlReplica(engine, batch_size=7)
    finally:
        await engine.dispose()


@pytest.fixture
def make_zip(tmp_path: Path) -> Callable[..., Path]:
    """Write a ZIP of the given lines (header included by the caller)."""
    counter = itertools.count(1)

    def make(lines: list[str] | Iterator[str], name: str = "") -> Path:
        path = tmp_path / (name or f"extraction{next(counter)}.zip")
        return sample.write_zip(path, lines)

    return make


# --------------------------------------------------------------------------- HTTP


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


Route = Callable[[Recorded], tuple[int, Any]]


@dataclass
class HttpServer:
    """A real local HTTP server; ``routes`` map a path to a handler."""

    url: str
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    state = HttpServer("")

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            rec = Recorded(self.command, parts.path, parse_qs(parts.query),
                           {k.lower(): v for k, v in self.headers.items()},
                           json.loads(raw) if raw else None)
            state.requests.append(rec)
            route = state.routes.get(parts.path)
            status, body = route(rec) if route else (404, {"resourceType": "OperationOutcome"})
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PATCH = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
