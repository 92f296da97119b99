"""Publication of our mailboxes as FHIR PATCH requests (SPEC DIR-4)."""

from __future__ import annotations

from typing import Any

import pytest

from mssgw.directory.entry import DirectoryEntry
from mssgw.directory.publish import Published, build_requests, load_published, publish
from mssgw.directory.sql_replica import SqlReplica
from tests.directory.conftest import HttpServer, Recorded

BASE = "https://annuaire.example/fhir/v2"
PER = DirectoryEntry("PER", "dr.a@op.mssante.fr", pp_national_id="810001", last_name="A")
ORG = DirectoryEntry("ORG", "accueil@op.mssante.fr", structure_id="1750001", service="Accueil")
PRACT = "Practitioner", "urn:oid:1.2.250.1.71.4.2.1|810001"


def _kinds(current: list[DirectoryEntry], published: dict[str, Published]) -> list[tuple[str,
                                                                                        str]]:
    return [(r.action, r.address) for r in build_requests(BASE, current, published)]


@pytest.mark.parametrize(
    ("current", "published", "expected"),
    [
        ([PER], {}, [("add", PER.address)]),
        ([PER], {PER.address: Published(*PRACT, PER.content_hash)}, []),
        ([PER], {PER.address: Published(*PRACT, "0" * 16)}, [("replace", PER.address)]),
        ([], {PER.address: Published(*PRACT, PER.content_hash)}, [("delete", PER.address)]),
        # the BAL moved to another owner: delete on the old one, add on the new one
        ([PER], {PER.address: Published("Practitioner", "urn:oid:1.2.250.1.71.4.2.1|9",
                                        PER.content_hash)},
         [("delete", PER.address), ("add", PER.address)]),
        ([PER, ORG], {}, [("add", ORG.address), ("add", PER.address)]),
    ],
)
def test_build_requests(current: list[DirectoryEntry], published: dict[str, Published],
                        expected: list[tuple[str, str]]) -> None:
    assert _kinds(current, published) == expected


def test_request_shapes() -> None:
    add, = build_requests(BASE, [ORG], {})
    assert add.url == f"{BASE}/Organization?identifier=urn%3Aoid%3A1.2.250.1.71.4.2.2%7C1750001"
    parts = {p["name"]: p for p in add.body["parameter"][0]["part"]}
    assert parts["type"]["valueCode"] == "add"
    assert (parts["path"]["valueString"], parts["name"]["valueString"]) == ("Organization",
                                                                            "telecom")
    telecom = parts["value"]["valueContactPoint"]
    assert telecom["value"] == ORG.address and telecom["system"] == "email"
    meta = {e["url"]: e for e in telecom["extension"][1]["extension"]}
    assert meta["type"]["valueCodeableConcept"]["coding"][0]["code"] == "ORG"
    assert meta["service"]["valueString"] == "Accueil"
    quoted = DirectoryEntry("PER", "o'neil@op.mssante.fr", pp_national_id="8")
    delete, = build_requests(BASE, [], {quoted.address: Published(*PRACT, "x")})
    path = delete.body["parameter"][0]["part"][1]["valueString"]
    assert path == "Practitioner.telecom.where(value='o\\'neil@op.mssante.fr')"
    assert "PATCH" in delete.describe()


async def test_publish_sends_only_changes(http_server: HttpServer,
                                          sql_replica: SqlReplica) -> None:
    statuses = {"Practitioner": 200, "Organization": 200}

    def route(kind: str) -> Any:
        def handle(req: Recorded) -> tuple[int, Any]:
            assert req.headers["esante-api-key"] == "k"
            assert req.headers["content-type"] == "application/fhir+json"
            return statuses[kind], {"resourceType": kind}
        return handle

    http_server.routes["/fhir/v2/Practitioner"] = route("Practitioner")
    http_server.routes["/fhir/v2/Organization"] = route("Organization")
    base = f"{http_server.url}/fhir/v2"
    engine = sql_replica.engine

    dry = await publish(engine, base, "k", [PER, ORG], dry_run=True)
    assert len(dry.requests) == 2 and dry.sent == 0 and http_server.requests == []

    statuses["Organization"] = 500
    report = await publish(engine, base, "k", [PER, ORG])
    assert report.sent == 1 and report.failed == [(ORG.address, "add: HTTP 500")]
    assert set(await load_published(engine)) == {PER.address}

    statuses["Organization"] = 200
    http_server.requests.clear()
    report = await publish(engine, base, "k", [PER, ORG])  # only the failed one is retried
    assert report.sent == 1 and [r.method for r in http_server.requests] == ["PATCH"]

    changed = DirectoryEntry("PER", PER.address, pp_national_id="810001", last_name="A",
                             liste_rouge=True)
    report = await publish(engine, base, "k", [changed])
    assert [(r.action, r.address) for r in report.requests] == [
        ("replace", PER.address), ("delete", ORG.address)]
    assert report.sent == 2
    assert set(await load_published(engine)) == {PER.address}
    assert (await publish(engine, base, "k", [changed])).requests == []
