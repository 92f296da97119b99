"""Publication of our own mailboxes to the national directory (SPEC DIR-4).

The ANS interface is a FHIR PATCH on the ``telecom`` element of the owner
resource, addressed by the owner's identifier (a conditional patch:
``PATCH [base]/Practitioner?identifier=urn:oid:1.2.250.1.71.4.2.1|<id>``).
Bodies are FHIRPath Patch ``Parameters``: ``add`` (the ANS's "insert": a
new telecom appended), ``replace`` and ``delete`` of the telecom selected
by ``telecom.where(value='<address>')``.  [A] The endpoint is configured
(``publish_url``); the exact ANS contract may differ and is isolated here.

What was published is remembered in ``directory_publications`` (address →
content hash), so each run sends only what changed since the last
successful publication; a failed request is retried by the next run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import quote

import httpx
from sqlalchemy import Table, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from mssgw.directory.entry import DirectoryEntry
from mssgw.directory.fhir import (
    API_KEY_HEADER,
    EMAIL_TYPE_URL,
    IDNAT_PP,
    IDNAT_STRUCT,
    META_URL,
    TYPE_BAL,
    TYPE_MESSAGERIE,
)
from mssgw.directory.sql_models import DirectoryPublication

PUBLICATIONS = cast(Table, DirectoryPublication.__table__)


@dataclass(frozen=True)
class Published:
    """What the national directory got from us last time for one address."""

    owner_resource: str
    owner_identifier: str
    content_hash: str


@dataclass(frozen=True)
class PatchRequest:
    """One FHIR PATCH, ready to print (dry run) or send."""

    action: str  # add | replace | delete
    address: str
    owner_resource: str
    owner_identifier: str
    url: str
    body: dict[str, Any]
    content_hash: str = ""

    def describe(self) -> str:
        return f"PATCH {self.url}\n{json.dumps(self.body, indent=2, ensure_ascii=False)}"


def owner_of(entry: DirectoryEntry) -> tuple[str, str]:
    """(resource type, ``system|value``) of the owner that carries the BAL."""
    if entry.bal_type == "PER":
        return "Practitioner", f"{IDNAT_PP}|{entry.pp_national_id}"
    return "Organization", f"{IDNAT_STRUCT}|{entry.structure_id}"


def contact_point(entry: DirectoryEntry) -> dict[str, Any]:
    """The ``telecom`` element of a BAL, shaped like the ANS profile ``as-mailbox-mss``."""
    meta: list[dict[str, Any]] = [
        {"url": "type", "valueCodeableConcept": {"coding": [
            {"system": TYPE_BAL, "code": entry.bal_type}]}},
        {"url": "digitization", "valueBoolean": entry.dematerialisation},
        {"url": "listeRouge", "valueBoolean": entry.liste_rouge},
    ]
    if entry.service:
        meta.insert(1, {"url": "service", "valueString": entry.service})
    return {
        "system": "email",
        "value": entry.address,
        "extension": [
            {"url": EMAIL_TYPE_URL, "valueCoding": {"system": TYPE_MESSAGERIE, "code": "MSSANTE"}},
            {"url": META_URL, "extension": meta},
        ],
    }


def _operation(kind: str, resource: str, address: str,
               value: dict[str, Any] | None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"name": "type", "valueCode": kind}]
    if kind == "add":
        parts += [{"name": "path", "valueString": resource},
                  {"name": "name", "valueString": "telecom"}]
    else:
        escaped = address.replace("\\", "\\\\").replace("'", "\\'")
        parts.append({"name": "path",
                      "valueString": f"{resource}.telecom.where(value='{escaped}')"})
    if value is not None:
        parts.append({"name": "value", "valueContactPoint": value})
    return {"resourceType": "Parameters",
            "parameter": [{"name": "operation", "part": parts}]}


def _request(base_url: str, action: str, address: str, resource: str, identifier: str,
             entry: DirectoryEntry | None) -> PatchRequest:
    url = f"{base_url.rstrip('/')}/{resource}?identifier={quote(identifier, safe='')}"
    value = contact_point(entry) if entry is not None else None
    return PatchRequest(action, address, resource, identifier, url,
                        _operation(action, resource, address, value),
                        entry.content_hash if entry is not None else "")


def build_requests(base_url: str, current: Iterable[DirectoryEntry],
                   published: Mapping[str, Published]) -> list[PatchRequest]:
    """The PATCHes that bring the national directory to ``current`` (pure).

    An owner change (a BAL moved to another structure) is a delete on the
    old owner and an add on the new one.
    """
    requests: list[PatchRequest] = []
    seen: set[str] = set()
    for entry in sorted(current, key=lambda e: e.address):
        seen.add(entry.address)
        resource, identifier = owner_of(entry)
        before = published.get(entry.address)
        if before is None:
            requests.append(_request(base_url, "add", entry.address, resource, identifier, entry))
        elif (before.owner_resource, before.owner_identifier) != (resource, identifier):
            requests.append(_request(base_url, "delete", entry.address, before.owner_resource,
                                     before.owner_identifier, None))
            requests.append(_request(base_url, "add", entry.address, resource, identifier, entry))
        elif before.content_hash != entry.content_hash:
            requests.append(
                _request(base_url, "replace", entry.address, resource, identifier, entry))
    for address in sorted(set(published) - seen):
        before = published[address]
        requests.append(_request(base_url, "delete", address, before.owner_resource,
                                 before.owner_identifier, None))
    return requests


@dataclass
class PublishReport:
    sent: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    requests: list[PatchRequest] = field(default_factory=list)


async def load_published(engine: AsyncEngine) -> dict[str, Published]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(PUBLICATIONS))
        return {r.address: Published(r.owner_resource, r.owner_identifier, r.content_hash)
                for r in rows}


async def publish(engine: AsyncEngine, base_url: str, api_key: str,
                  current: Iterable[DirectoryEntry], *, dry_run: bool = False,
                  client: httpx.AsyncClient | None = None,
                  write_engine: AsyncEngine | None = None) -> PublishReport:
    """Build the PATCHes; unless ``dry_run``, send them and remember each success."""
    requests = build_requests(base_url, current, await load_published(engine))
    report = PublishReport(requests=requests)
    if dry_run or not requests:
        return report
    headers = {API_KEY_HEADER: api_key, "Content-Type": "application/fhir+json",
               "Accept": "application/fhir+json"}
    own = client is None
    http = client or httpx.AsyncClient(timeout=30.0)
    try:
        for req in requests:
            try:
                response = await http.patch(req.url, json=req.body, headers=headers)
            except httpx.HTTPError as exc:
                report.failed.append((req.address, f"{req.action}: {type(exc).__name__}"))
                continue
            if response.is_success:
                await _remember(write_engine or engine, req)
                report.sent += 1
            else:
                report.failed.append((req.address, f"{req.action}: HTTP {response.status_code}"))
    finally:
        if own:
            await http.aclose()
    return report


async def _remember(engine: AsyncEngine, req: PatchRequest) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(PUBLICATIONS).where(PUBLICATIONS.c.address == req.address))
        if req.action != "delete":
            await conn.execute(insert(PUBLICATIONS).values(
                address=req.address, owner_resource=req.owner_resource,
                owner_identifier=req.owner_identifier, content_hash=req.content_hash,
                published_at=datetime.now(UTC)))
