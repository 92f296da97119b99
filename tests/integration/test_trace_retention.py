"""Traces are purged past their retention (SPEC TRACE-1), per category."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mssgw.store.traces import TraceRecord
from tests.support.gateway import running_gateway


async def test_daily_purge_keeps_each_category_for_its_retention(
    tmp_path: Path, trust_space: dict[str, Any]
) -> None:
    extra = "[traces]\ntransport_retention_days = 30\nclient_retention_days = 7\n"
    async with running_gateway(tmp_path, trust_space, listeners=("http",), extra=extra) as gw:
        now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
        ages = {"transport": [29, 31], "client": [6, 8], "admin": [29, 31]}
        for category, days in ages.items():
            for age in days:
                record = TraceRecord(
                    category=category,
                    action=f"{category}-{age}",  # type: ignore[arg-type]
                    result="accepted",
                )
                await gw.store.traces.add(record, at=now - timedelta(days=age))
        removed = await gw.app.purge_traces(at=now)
        assert removed == {"transport": 1, "admin": 1, "client": 1}
        left = sorted(
            t.action for t in await gw.store.traces.recent(100) if t.action.split("-")[0] in ages
        )
        assert left == ["admin-29", "client-6", "transport-29"]
