"""The in-process gateway used by the edge tests starts and stops cleanly."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.gateway import running_gateway


async def test_gateway_starts_with_trust_space(tmp_path: Path, trust_space: dict[str, Any]) -> None:
    async with running_gateway(tmp_path, trust_space, listeners=("http",)) as gw:
        assert gw.app.trust is not None and gw.app.trust.liste is not None
        assert gw.app.trust.liste.is_listed(gw.operator["domain"])
        assert gw.operator["domain"] in await gw.store.mailboxes.hosted_domains()
        port = gw.ports["http"]

        def get() -> dict[str, object]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                return dict(json.loads(r.read()))

        import asyncio

        assert (await asyncio.to_thread(get))["status"] == "ok"
