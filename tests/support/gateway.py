"""A whole gateway in the test process, on ephemeral loopback ports.

``running_gateway`` builds settings from a development PKI manifest (see
``mssgw.tls.devpki``), opens and upgrades the store (SQLite in ``tmp``, or the
given PostgreSQL URL), builds the trust space and starts the requested
listeners, each on a free port.  Tests then talk to it over real sockets.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mssgw import config, runtime
from mssgw.app import App
from mssgw.dev import PORT_OFFSETS
from mssgw.store import Store


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
) -> Path:
    op = manifest["operators"][operator]
    wanted = set(listeners)
    blocks = []
    for name in PORT_OFFSETS:
        enabled = "true" if name in wanted else "false"
        blocks.append(f'[listeners.{name}]\nenabled = {enabled}\naddress = "127.0.0.1"\nport = 0\n')
    store_url = url or f"sqlite:///{tmp / 'mssgw.db'}"
    text = (
        f'[gateway]\nhostname = "{op["host"]}"\ndomains = ["{op["domain"]}"]\nstate_dir = "{tmp}"\n'
        f'[store]\nurl = "{store_url}"\n'
        f'[tls]\nprofile = "mssante"\ncertificate = "{op["certificate"]}"\nkey = "{op["key"]}"\n'
        f'anchors = "{manifest["anchors"]}"\ncrls = ["{manifest["crl"]}"]\nreload_interval = 1\n'
        f'[trust]\nliste_blanche_file = "{tmp / "listeblanche.xml"}"\n' + "\n".join(blocks) + extra
    )
    path = tmp / "mssgw.toml"
    path.write_text(text)
    lb = tmp / "listeblanche.xml"
    if not lb.exists():
        lb.write_bytes(Path(manifest["liste_blanche"]).read_bytes())
    return path


@contextlib.asynccontextmanager
async def running_gateway(
    tmp: Path,
    manifest: dict[str, Any],
    *,
    operator: int = 0,
    url: str | None = None,
    listeners: Iterable[str] = ("mta",),
    extra: str = "",
) -> AsyncIterator[RunningGateway]:
    tmp.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - test set-up, before any I/O matters
    settings = config.load(
        gateway_config(tmp, manifest, operator=operator, url=url, listeners=listeners, extra=extra),
        env={},
    )
    store = await Store.open(settings, check_schema=False)
    await store.upgrade()
    app = App(settings, store, runtime.build(settings))
    try:
        ports = await app.start()
        yield RunningGateway(app, settings, manifest, ports, manifest["operators"][operator])
    finally:
        await app.stop()
        await store.close()
