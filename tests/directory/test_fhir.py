"""The FHIR source against a local HTTP server replaying ANS-shaped Bundles (SPEC DIR-2)."""

from __future__ import annotations

from typing import Any

import pytest

from mssgw.directory.base import DirectoryError, ScanStats
from mssgw.directory.fhir import (
    EMAIL_TYPE_URL,
    IDNAT_PP,
    IDNAT_STRUCT,
    META_URL,
    TYPE_BAL,
    TYPE_MESSAGERIE,
    FhirSource,
    entries_of,
)
from mssgw.directory.sql_replica import SqlReplica
from mssgw.directory.sync import Guards, run_sync
from tests.directory.conftest import HttpServer, Recorded

KEY = "test-api-key"


def telecom(address: str, bal_type: str = "PER", liste_rouge: bool = False,
            service: str = "") -> dict[str, Any]:
    meta: list[dict[str, Any]] = [
        {"url": "type", "valueCodeableConcept": {"coding": [{"system": TYPE_BAL,
                                                             "code": bal_type}]}},
        {"url": "listeRouge", "valueBoolean": liste_rouge},
    ]
    if service:
        meta.append({"url": "service", "valueString": service})
    return {"system": "email", "value": address, "extension": [
        {"url": EMAIL_TYPE_URL, "valueCoding": {"system": TYPE_MESSAGERIE, "code": "MSSANTE"}},
        {"url": META_URL, "extension": meta}]}


def practitioner(pid: str, family: str, given: str, *telecoms: dict[str, Any],
                 active: bool = True) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "id": pid, "active": active,
            "identifier": [{"system": IDNAT_PP, "value": f"8{pid}"}],
            "name": [{"use": "official", "family": family, "given": [given]}],
            "telecom": [{"system": "phone", "value": "0102030405"}, *telecoms]}


def organisation(oid: str, name: str, *telecoms: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Organization", "id": oid,
            "identifier": [{"system": IDNAT_STRUCT, "value": f"1{oid}"}], "name": name,
            "address": [{"line": ["3 rue de l'Église"], "postalCode": "75001", "city": "PARIS"}],
            "telecom": list(telecoms)}


def role(rid: str, pract: str, org: str, *telecoms: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "PractitionerRole", "id": rid,
            "practitioner": {"reference": f"Practitioner/{pract}"},
            "organization": {"reference": f"Organization/{org}"},
            "code": [{"coding": [{"code": "10", "display": "Médecin"}]}],
            "specialty": [{"coding": [{"code": "SM54", "display": "Médecine générale"}]}],
            "telecom": list(telecoms)}


def bundle(server: HttpServer, kind: str, resources: list[tuple[dict[str, Any], str]],
           page: int, last: bool) -> dict[str, Any]:
    links = [{"relation": "self", "url": f"{server.url}/fhir/v2/{kind}?page={page}"}]
    if not last:
        links.append({"relation": "next", "url": f"{server.url}/fhir/v2/{kind}?page={page + 1}"})
    return {"resourceType": "Bundle", "type": "searchset", "link": links,
            "entry": [{"resource": r, "search": {"mode": m}} for r, m in resources]}


def serve(server: HttpServer, pages: dict[str, list[list[tuple[dict[str, Any], str]]]]) -> None:
    for kind, kind_pages in pages.items():
        def route(req: Recorded, kind: str = kind,
                  kind_pages: list[list[tuple[dict[str, Any], str]]] = kind_pages
                  ) -> tuple[int, Any]:
            if req.headers.get("esante-api-key") != KEY:
                return 401, {"resourceType": "OperationOutcome"}
            page = int(req.query.get("page", ["1"])[0])
            return 200, bundle(server, kind, kind_pages[page - 1], page,
                               page == len(kind_pages))
        server.routes[f"/fhir/v2/{kind}"] = route


DAY1 = {
    "Practitioner": [
        [(practitioner("1", "LEFÈVRE", "Hélène", telecom("h.lefevre@medecin.mssante.fr")),
          "match")],
        [(practitioner("2", "D'ARCY", "Jean", telecom("j.darcy@medecin.mssante.fr"),
                       telecom("J.Darcy@Second.MSSante.fr")), "match"),
         (practitioner("3", "SANS", "Bal"), "match")],
    ],
    "PractitionerRole": [
        [(role("r1", "1", "o1", telecom("h.lefevre@ch-etang.mssante.fr", service="Cardio")),
          "match"),
         (practitioner("1", "LEFÈVRE", "Hélène"), "include"),
         (organisation("o1", "CH de l'Étang"), "include")],
    ],
    "Organization": [
        [(organisation("o1", "CH de l'Étang", telecom("accueil@ch-etang.mssante.fr", "ORG"),
                       telecom("robot@ch-etang.mssante.fr", "APP"),
                       telecom("bad address@ch-etang.mssante.fr", "ORG")), "match")],
    ],
}


def test_mapping_of_a_practitioner_role() -> None:
    others = {"Practitioner/1": practitioner("1", "LEFÈVRE", "Hélène"),
              "Organization/o1": organisation("o1", "CH de l'Étang")}
    (entry,) = entries_of(DAY1["PractitionerRole"][0][0][0], others)
    assert (entry.bal_type, entry.address, entry.service) == (
        "PER", "h.lefevre@ch-etang.mssante.fr", "Cardio")
    assert (entry.last_name, entry.first_name, entry.pp_national_id) == ("LEFÈVRE", "Hélène", "81")
    assert (entry.org_name, entry.structure_id, entry.addr_routing_line) == (
        "CH de l'Étang", "1o1", "75001 PARIS")
    assert (entry.profession, entry.speciality_code) == ("Médecin", "SM54")
    assert entry.owner_ref == "PractitionerRole/r1"


def test_full_download_follows_pages_with_the_key(http_server: HttpServer) -> None:
    serve(http_server, DAY1)
    source = FhirSource(f"{http_server.url}/fhir/v2", KEY, page_size=2)
    stats = ScanStats()
    found = {e.address: e for e in source.scan(stats)}
    assert set(found) == {"h.lefevre@medecin.mssante.fr", "j.darcy@medecin.mssante.fr",
                          "j.darcy@second.mssante.fr", "h.lefevre@ch-etang.mssante.fr",
                          "accueil@ch-etang.mssante.fr", "robot@ch-etang.mssante.fr"}
    assert found["robot@ch-etang.mssante.fr"].bal_type == "APP"
    assert (stats.invalid, stats.valid) == (1, 6)
    first = http_server.requests[0]
    assert first.query["mailbox-mss:missing"] == ["false"] and first.query["_count"] == ["2"]
    assert "_lastUpdated" not in first.query
    assert len([r for r in http_server.requests if r.path.endswith("Practitioner")]) == 2
    assert source.complete and source.watermark


def test_wrong_key_is_a_clear_error(http_server: HttpServer) -> None:
    serve(http_server, DAY1)
    with pytest.raises(DirectoryError, match="HTTP 401"):
        list(FhirSource(f"{http_server.url}/fhir/v2", "wrong").scan(ScanStats()))


async def test_incremental_sync_removes_by_owner(http_server: HttpServer,
                                                 sql_replica: SqlReplica) -> None:
    serve(http_server, DAY1)
    base = f"{http_server.url}/fhir/v2"
    report = await run_sync(FhirSource(base, KEY), sql_replica, Guards(max_invalid_share=0.2))
    assert (report.added, report.invalid) == (6, 1)
    # day 2: practitioner 2 lost a BAL, practitioner 1 left (inactive); nothing else returned
    serve(http_server, {
        "Practitioner": [[(practitioner("2", "D'ARCY", "Jean",
                                        telecom("j.darcy@medecin.mssante.fr", liste_rouge=True)),
                           "match"),
                          (practitioner("1", "LEFÈVRE", "Hélène",
                                        telecom("h.lefevre@medecin.mssante.fr"), active=False),
                           "match")]],
        "PractitionerRole": [[]], "Organization": [[]]})
    http_server.requests.clear()
    source = FhirSource(base, KEY, since="2025-01-01T00:00:00Z")
    report = await run_sync(source, sql_replica, Guards(max_removal_share=0.5))
    assert (report.added, report.changed, report.removed) == (0, 1, 2)
    assert http_server.requests[0].query["_lastUpdated"] == ["ge2025-01-01T00:00:00Z"]
    assert not source.complete
    darcy = await sql_replica.get("j.darcy@medecin.mssante.fr")
    assert darcy is not None and darcy.liste_rouge
    assert await sql_replica.get("j.darcy@second.mssante.fr") is None
    assert await sql_replica.get("h.lefevre@medecin.mssante.fr") is None
    assert await sql_replica.get("accueil@ch-etang.mssante.fr") is not None


def test_malformed_resources_are_rejected_one_by_one(http_server: HttpServer) -> None:
    """Shapes outside FHIR (a boolean telecom, a string where an object goes, an
    entry that is not an object) reject that resource only, with a reason."""
    good = practitioner("1", "LEFÈVRE", "Hélène", telecom("h.lefevre@medecin.mssante.fr"))
    bad_telecom = {**practitioner("2", "X", "Y"), "telecom": True}
    bad_items = {**practitioner("3", "Z", "W"), "telecom": ["mailto:z@medecin.mssante.fr", 1]}
    serve(http_server, {"Practitioner": [[(good, "match"), (bad_telecom, "match"),
                                          (bad_items, "match")]],
                        "PractitionerRole": [[]], "Organization": [[]]})
    original = http_server.routes["/fhir/v2/Practitioner"]

    def with_junk_entries(req: Recorded) -> tuple[int, Any]:
        status, body = original(req)
        body["entry"] += ["not an object", {"resource": "not a resource"}, {"search": 1}]
        body["link"] = [1, {"relation": "next"}]  # a next link without a URL ends the pages
        return status, body

    http_server.routes["/fhir/v2/Practitioner"] = with_junk_entries
    source = FhirSource(f"{http_server.url}/fhir/v2", KEY)
    stats = ScanStats()
    found = [e.address for e in source.scan(stats)]
    assert found == ["h.lefevre@medecin.mssante.fr"]
    assert (stats.valid, stats.invalid) == (1, 2)


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"<html>maintenance</html>", "not JSON"), ([1, 2], "expected a Bundle, got list")],
)
def test_an_answer_that_is_not_a_bundle_is_a_clear_error(
    http_server: HttpServer, body: Any, message: str
) -> None:
    http_server.routes["/fhir/v2/Practitioner"] = lambda req: (200, body)
    with pytest.raises(DirectoryError, match=message):
        list(FhirSource(f"{http_server.url}/fhir/v2", KEY).scan(ScanStats()))
