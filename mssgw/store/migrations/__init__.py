"""Alembic migrations of the store schema (``mssgw db upgrade``)."""
