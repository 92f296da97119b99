"""Alembic environment: runs on the connection ``mssgw.store.schema`` hands over.

Migrations are only ever run through ``mssgw db upgrade`` (never the
``alembic`` command), which passes an open connection in
``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

import mssgw.store.models
from mssgw.store.base import Base

try:  # the directory replica tables live in their own package
    import mssgw.directory.sql_models  # noqa: F401
except ImportError:  # pragma: no cover - only while that package is absent
    pass

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
