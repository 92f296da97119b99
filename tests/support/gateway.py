"""A whole gateway in the test process, on ephemeral loopback ports.

``running_gateway`` builds settings from a development PKI manifest (see
``mssgw.tls.devpki``), opens and upgrades the store (SQLite in ``tmp``, or the
given PostgreSQL URL), builds the trust space and starts the requested
listeners, each on a free port.  Tests then talk to it over real sockets.
"""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from mssgw import config, dev, runtime
from mssgw.app import App
from mssgw.store import Store
from mssgw.workers import WorkerRole


@dataclass
class RunningGateway:
    app: App
    settings: config.Settings
    manifest: dict[str, Any]
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        return self.app.store

    operator: dict[str, Any] = field(default_factory=dict)


def gateway_config(
    tmp: Path,
    manifest: dict[str, Any],
    *,
    operator: int = 0,
    url: str | None = None,
    listeners: Iterable[str] = ("mta",),
    extra: str = "",
    routes: dict[str, str] | None = None,
) -> Path:
    """Write ``tmp/mssgw.toml`` for development operator ``operator`` (ephemeral ports)."""
    lb = tmp / "listeblanche.xml"  # a private copy, so a test may replace it
    if not lb.exists():
        lb.write_bytes(Path(manifest["liste_blanche"]).read_bytes())
    text = dev.config_text(
        tmp,
        manifest,
        ports=dict.fromkeys(listeners, 0),
        operator=operator,
        routes=routes,
        liste_blanche=str(lb),
    )
    store_url = url or f"sqlite:///{tmp / 'mssgw.db'}"
    text = text.replace(
        "[tls]\n", f'[store]\nurl = "{store_url}"\n\n[tls]\nreload_interval = 1\n', 1
    )
    merged = _merge(tomllib.loads(text), tomllib.loads(extra))
    path = tmp / "mssgw.toml"
    path.write_text(tomli_w.dumps(merged))
    return path


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` tables override or extend ``base`` key by key (a test's own settings)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@contextlib.asynccontextmanager
async def running_gateway(
    tmp: Path,
    manifest: dict[str, Any],
    *,
    operator: int = 0,
    url: str | None = None,
    listeners: Iterable[str] = ("mta",),
    extra: str = "",
    routes: dict[str, str] | None = None,
    role: WorkerRole | None = None,
) -> AsyncIterator[RunningGateway]:
    tmp.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - test set-up, before any I/O matters
    settings = config.load(
        gateway_config(
            tmp,
            manifest,
            operator=operator,
            url=url,
            listeners=listeners,
            extra=extra,
            routes=routes,
        ),
        env={},
    )
    store = await Store.open(settings, check_schema=False)
    await store.upgrade()
    app = App(settings, store, runtime.build(settings), role=role)
    try:
        ports = await app.start()
        yield RunningGateway(app, settings, manifest, ports, manifest["operators"][operator])
    finally:
        await app.stop()
        await store.close()
