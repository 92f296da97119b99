"""Refresh with a last good copy (TRUST-3) against a local HTTP server."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mssgw.trust.listeblanche import Entry, sign_liste_blanche
from mssgw.trust.refresh import (
    ListeBlancheStore,
    Refresher,
    fetch_once,
    fetch_once_async,
)
from tests.tls.pki import DevPki

NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Script:
    """What the fake ANS server answers next, and what it was asked."""

    status: int = 200
    body: bytes = b""
    etag: str = ""
    last_modified: str = ""
    truncate: bool = False
    requests: list[dict[str, str]] = field(default_factory=list)


class Handler(http.server.BaseHTTPRequestHandler):
    script: Script

    def do_GET(self) -> None:
        s = self.script
        s.requests.append(dict(self.headers.items()))
        if s.etag and self.headers.get("If-None-Match") == s.etag:
            self.send_response(304)
            self.end_headers()
            return
        self.send_response(s.status)
        length = len(s.body) * (2 if s.truncate else 1)
        self.send_header("Content-Length", str(length))
        if s.etag:
            self.send_header("ETag", s.etag)
        if s.last_modified:
            self.send_header("Last-Modified", s.last_modified)
        self.end_headers()
        self.wfile.write(s.body)  # with truncate: the connection closes early

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()
    handler = type("H", (Handler,), {"script": script})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/listeblanchemssante.xml", script
    httpd.shutdown()
    httpd.server_close()


def make_list(dev_pki: DevPki, generated: datetime, domains: list[str]) -> bytes:
    cert, key = dev_pki.signer()
    return sign_liste_blanche([Entry(d, f"CN=mx.{d},C=FR") for d in domains], generated, cert, key)


@pytest.fixture
def store(dev_pki: DevPki, tmp_path: Path) -> ListeBlancheStore:
    return ListeBlancheStore(
        tmp_path / "trust" / "lb.xml",
        anchors=dev_pki.anchors,
        expected_signer=dev_pki.manifest["signer"]["dn"],
    )


def test_good_then_conditional_get(
    server: tuple[str, Script], store: ListeBlancheStore, dev_pki: DevPki
) -> None:
    url, script = server
    script.body, script.etag = make_list(dev_pki, NOW, ["a.test"]), '"v1"'
    script.last_modified = "Fri, 28 Feb 2025 15:42:07 GMT"
    first = fetch_once(store, url)
    assert first.status == "updated" and first.liste is not None
    assert store.path.read_bytes() == script.body
    second = fetch_once(store, url)
    assert second.status == "not_modified" and second.liste is first.liste
    assert script.requests[1]["If-None-Match"] == '"v1"'
    assert script.requests[1]["If-Modified-Since"] == "Fri, 28 Feb 2025 15:42:07 GMT"


@pytest.mark.parametrize(
    "bad", ["tampered", "older", "truncated_xml", "truncated_http", "500", "foreign"]
)
def test_bad_responses_keep_last_good_copy(
    server: tuple[str, Script], store: ListeBlancheStore, dev_pki: DevPki, bad: str
) -> None:
    url, script = server
    good = make_list(dev_pki, NOW, ["a.test"])
    script.body = good
    assert fetch_once(store, url).status == "updated"
    script.body = {
        "tampered": good.replace(b"<Nom>a.test<", b"<Nom>b.test<"),
        "older": make_list(dev_pki, NOW - timedelta(days=1), ["evil.test"]),
        "truncated_xml": good[: len(good) // 2],
        "truncated_http": good,
        "500": b"oops",
        "foreign": (Path(__file__).parents[0] / "__init__.py").read_bytes() + b"<x/>",
    }[bad]
    script.truncate = bad == "truncated_http"
    script.status = 500 if bad == "500" else 200
    outcome = fetch_once(store, url)
    assert outcome.status == ("failed" if bad in ("500", "truncated_http") else "refused")
    assert "keeping the copy generated" in outcome.detail
    if bad == "older":
        assert "older than the copy in use" in outcome.detail
    assert store.current is not None and store.current.is_listed("a.test")
    assert store.path.read_bytes() == good


def test_newer_copy_replaces_and_survives_restart(
    server: tuple[str, Script], store: ListeBlancheStore, dev_pki: DevPki
) -> None:
    url, script = server
    script.body = make_list(dev_pki, NOW - timedelta(hours=2), ["a.test"])
    assert fetch_once(store, url).status == "updated"
    script.body = make_list(dev_pki, NOW, ["a.test", "b.test"])
    assert fetch_once(store, url).status == "updated"
    restarted = ListeBlancheStore(store.path, anchors=dev_pki.anchors, expected_signer=None)
    liste = restarted.load()
    assert liste is not None and liste.domains == 2
    # a download failure after a restart still leaves the last good copy in use
    script.status = 500
    assert fetch_once(restarted, url).status == "failed"
    assert restarted.current is liste


def test_unreachable_and_no_copy(store: ListeBlancheStore) -> None:
    outcome = fetch_once(store, "http://127.0.0.1:9/none.xml", timeout=2)
    assert outcome.status == "failed" and "no good copy available" in outcome.detail
    assert store.current is None and store.is_stale()


def test_local_file_source(store: ListeBlancheStore, dev_pki: DevPki, tmp_path: Path) -> None:
    src = tmp_path / "in.xml"
    src.write_bytes(make_list(dev_pki, NOW, ["a.test"]))
    assert fetch_once(store, str(src)).status == "updated"
    assert fetch_once(store, str(src)).status == "not_modified"
    assert fetch_once(store, str(tmp_path / "missing.xml")).status == "failed"


def test_age_and_staleness(dev_pki: DevPki, tmp_path: Path) -> None:
    clock = [NOW]
    store = ListeBlancheStore(
        tmp_path / "lb.xml",
        anchors=dev_pki.anchors,
        expected_signer=None,
        max_age=timedelta(hours=48),
        clock=lambda: clock[0],
    )
    src = tmp_path / "in.xml"
    src.write_bytes(make_list(dev_pki, NOW, ["a.test"]))
    fetch_once(store, str(src))
    assert not store.is_stale()
    clock[0] = NOW + timedelta(hours=49)
    assert store.is_stale() and store.age() == timedelta(hours=49)


async def test_async_refresher_metrics(
    server: tuple[str, Script], store: ListeBlancheStore, dev_pki: DevPki
) -> None:
    url, script = server
    script.body = make_list(dev_pki, NOW, ["a.test"])
    refresher = Refresher(store, url, interval=3600)
    outcome = await refresher.refresh()
    assert outcome.status == "updated"
    metrics = refresher.metrics()
    assert metrics["mssgw_liste_blanche_entries"] == 1
    assert metrics["mssgw_liste_blanche_stale"] == 0
    assert metrics["mssgw_liste_blanche_last_refresh_ok"] == 1
    script.body = b"<truncated"
    assert (await fetch_once_async(store, url)).status == "refused"
    script.status = 503
    assert (await refresher.refresh()).status == "failed"
    assert refresher.metrics()["mssgw_liste_blanche_last_refresh_ok"] == 0
    assert store.current is not None and store.current.is_listed("a.test")
