"""The Annuaire Santé FHIR API as a source (SPEC DIR-2).

Shape assumed (ANS IG "Annuaire Santé", profile ``as-mailbox-mss``): a BAL
is a ``telecom`` entry (``system = email``) of a Practitioner,
PractitionerRole or Organization, carrying the complex extension
``as-ext-mailbox-mss-metadata`` whose sub-extensions are ``type``
(CodeableConcept PER/ORG/APP/CAB), ``description``, ``service``,
``digitization`` (boolean) and ``listeRouge`` (boolean; older versions name
it ``publication``).  Ids: Practitioner ``urn:oid:1.2.250.1.71.4.2.1``
(identifiant national PP), Organization ``urn:oid:1.2.250.1.71.4.2.2``
(identifiant national structure).  [A] The search asks for resources that
have a BAL with ``mailbox-mss:missing=false``, and includes the practitioner
and organization of each role.

Incremental: ``_lastUpdated=ge<watermark>``; a returned resource carries its
complete telecom list, so its BALs that are no longer listed are removed
(the sync removes by owner).  The watermark is the run's start minus a
margin (re-reading a little is harmless: the sync is idempotent).
Paging follows ``link[relation=next]``.  The API key goes in the
``ESANTE-API-KEY`` header.  Entries are held in memory: the national
extraction file is the full-load source; FHIR is for the daily increments.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from mssgw.directory.base import DirectoryError, ScanStats
from mssgw.directory.entry import BAL_TYPES, DirectoryEntry, Scope, is_valid_address

META_URL = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-mailbox-mss-metadata"
EMAIL_TYPE_URL = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"
TYPE_MESSAGERIE = "https://mos.esante.gouv.fr/NOS/TRE_R256-TypeMessagerie/FHIR/TRE-R256-TypeMessagerie"
TYPE_BAL = "https://mos.esante.gouv.fr/NOS/TRE_R257-TypeBAL/FHIR/TRE-R257-TypeBAL"
IDNAT_PP = "urn:oid:1.2.250.1.71.4.2.1"
IDNAT_STRUCT = "urn:oid:1.2.250.1.71.4.2.2"
RPPS = "https://rpps.esante.gouv.fr"
API_KEY_HEADER = "ESANTE-API-KEY"
RESOURCE_TYPES = ("Practitioner", "PractitionerRole", "Organization")
WATERMARK_MARGIN = timedelta(minutes=10)


def _identifier(resource: dict[str, Any], system: str) -> str:
    for ident in resource.get("identifier") or []:
        if ident.get("system") == system and ident.get("value"):
            return str(ident["value"])
    return ""


def _sub(ext: dict[str, Any], name: str) -> dict[str, Any] | None:
    for sub in ext.get("extension") or []:
        if sub.get("url") == name:
            return dict(sub)
    return None


def mailbox_telecoms(resource: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(address, metadata extension or {}) for every MSSanté telecom of a resource."""
    for telecom in resource.get("telecom") or []:
        if telecom.get("system") != "email" or not telecom.get("value"):
            continue
        exts = telecom.get("extension") or []
        meta = next((e for e in exts if e.get("url") == META_URL), None)
        is_mss = meta is not None or any(
            e.get("url") == EMAIL_TYPE_URL and (e.get("valueCoding") or {}).get("code") == "MSSANTE"
            for e in exts
        )
        if is_mss:
            yield str(telecom["value"]).strip().lower(), dict(meta or {})


def _bal_type(meta: dict[str, Any], default: str) -> str:
    sub = _sub(meta, "type")
    codings = ((sub or {}).get("valueCodeableConcept") or {}).get("coding") or []
    return str(codings[0].get("code", default)).upper() if codings else default


def _flag(meta: dict[str, Any], *names: str) -> bool:
    for name in names:
        sub = _sub(meta, name)
        if sub is not None and "valueBoolean" in sub:
            return bool(sub["valueBoolean"])
    return False


def _text(meta: dict[str, Any], name: str) -> str:
    sub = _sub(meta, name)
    return str(sub.get("valueString", "")) if sub else ""


def _coding(concepts: list[dict[str, Any]] | None) -> tuple[str, str]:
    for concept in concepts or []:
        for coding in concept.get("coding") or []:
            return str(coding.get("code", "")), str(coding.get("display", ""))
    return "", ""


def _person(practitioner: dict[str, Any] | None) -> dict[str, str]:
    if not practitioner:
        return {}
    names = practitioner.get("name") or [{}]
    name = next((n for n in names if n.get("use") == "official"), names[0])
    rpps = _identifier(practitioner, RPPS)
    return {
        "pp_national_id": _identifier(practitioner, IDNAT_PP),
        "pp_id": rpps, "pp_id_type": "8" if rpps else "",
        "last_name": str(name.get("family", "")),
        "first_name": " ".join(name.get("given") or []),
        "civility": " ".join(name.get("prefix") or []),
    }


def _organisation(org: dict[str, Any] | None) -> dict[str, str]:
    if not org:
        return {}
    address = (org.get("address") or [{}])[0]
    return {
        "structure_id": _identifier(org, IDNAT_STRUCT),
        "org_name": str(org.get("name", "")),
        "addr_street_name": " ".join(address.get("line") or []),
        "addr_postcode": str(address.get("postalCode", "")),
        "addr_routing_line": " ".join(p for p in (address.get("postalCode"), address.get("city"))
                                      if p),
        "addr_country": str(address.get("country", "")),
    }


def _ref(resource: dict[str, Any], key: str) -> str:
    return str((resource.get(key) or {}).get("reference", ""))


def entries_of(resource: dict[str, Any], others: dict[str, dict[str, Any]]) -> list[DirectoryEntry]:
    """The BALs a resource carries, completed from the resources it references (pure)."""
    kind = resource.get("resourceType", "")
    owner = f"{kind}/{resource.get('id', '')}"
    base: dict[str, Any] = {}
    if kind == "Practitioner":
        base = _person(resource)
    elif kind == "PractitionerRole":
        base = {**_organisation(others.get(_ref(resource, "organization"))),
                **_person(others.get(_ref(resource, "practitioner")))}
        base["profession_code"], base["profession"] = _coding(resource.get("code"))
        base["speciality_code"], base["speciality"] = _coding(resource.get("specialty"))
    elif kind == "Organization":
        base = _organisation(resource)
    default = "ORG" if kind == "Organization" else "PER"
    return [
        DirectoryEntry(
            bal_type=_bal_type(meta, default), address=address, owner_ref=owner,
            service=_text(meta, "service"), dematerialisation=_flag(meta, "digitization"),
            liste_rouge=_flag(meta, "listeRouge", "publication"), **base,
        )
        for address, meta in mailbox_telecoms(resource)
    ]


class FhirSource:
    """Every BAL returned by the FHIR API since ``since`` (everything when None)."""

    scope: Scope = "national"

    def __init__(self, base_url: str, api_key: str, since: str | None = None,
                 client: httpx.Client | None = None, page_size: int = 500,
                 timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.since = since or None
        self.complete = self.since is None
        self.name = "fhir" + (f" since {self.since}" if self.since else " (full)")
        self.page_size = page_size
        self._client = client or httpx.Client(timeout=timeout)
        self._headers = {API_KEY_HEADER: api_key, "Accept": "application/fhir+json"}
        self._entries: list[tuple[int, DirectoryEntry | str]] | None = None
        self._owners: set[str] = set()
        self.watermark = ""

    def owners(self) -> frozenset[str]:
        self._fetch()
        return frozenset(self._owners)

    def scan(
        self, stats: ScanStats, wanted: frozenset[str] | None = None
    ) -> Iterator[DirectoryEntry]:
        for number, item in self._fetch():
            stats.read += 1
            if isinstance(item, str):
                stats.reject(number, item)
            else:
                stats.valid += 1
                yield item

    def _fetch(self) -> list[tuple[int, DirectoryEntry | str]]:
        """Download once (both sync passes reuse it)."""
        if self._entries is None:
            started = datetime.now(UTC)
            resources: dict[str, dict[str, Any]] = {}
            primary: list[str] = []
            for kind in RESOURCE_TYPES:
                for res, mode in self._search(kind):
                    key = f"{res.get('resourceType')}/{res.get('id')}"
                    if mode == "match" and res.get("resourceType") == kind:
                        resources[key] = res  # a match wins over an earlier include
                        if key not in primary:
                            primary.append(key)
                    else:
                        resources.setdefault(key, res)
            self._entries = self._build(primary, resources)
            self.watermark = (started - WATERMARK_MARGIN).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self._entries

    def _build(self, primary: list[str], resources: dict[str, dict[str, Any]]
               ) -> list[tuple[int, DirectoryEntry | str]]:
        out: list[tuple[int, DirectoryEntry | str]] = []
        for key in primary:
            res = resources[key]
            self._owners.add(key)
            if res.get("active") is False:
                continue
            try:
                entries = entries_of(res, resources)
            except (TypeError, AttributeError, KeyError, ValueError) as exc:
                # Outside the FHIR shapes we read: reject that resource, keep the rest.
                out.append((len(out) + 1, f"{key[:80]}: malformed resource ({exc})"[:200]))
                continue
            for entry in entries:
                problem = _problem(entry)
                out.append((len(out) + 1, problem or entry))
        return out

    def _search(self, kind: str) -> Iterator[tuple[dict[str, Any], str]]:
        params: dict[str, str] = {"mailbox-mss:missing": "false", "_count": str(self.page_size)}
        if self.since:
            params["_lastUpdated"] = f"ge{self.since}"
        if kind == "PractitionerRole":
            params["_include"] = "PractitionerRole:practitioner,PractitionerRole:organization"
        url: str | None = f"{self.base_url}/{kind}"
        query: dict[str, str] | None = params
        while url:
            bundle = self._get(url, query)
            query = None  # the next link carries its own query
            for item in _list(bundle.get("entry")):
                resource = item.get("resource") if isinstance(item, dict) else None
                if isinstance(resource, dict):
                    search = item.get("search")
                    mode = search.get("mode", "match") if isinstance(search, dict) else "match"
                    yield resource, mode
            url = next((link["url"] for link in _list(bundle.get("link"))
                        if isinstance(link, dict) and link.get("relation") == "next"
                        and isinstance(link.get("url"), str)), None)

    def _get(self, url: str, params: dict[str, str] | None) -> dict[str, Any]:
        try:
            response = self._client.get(url, params=params, headers=self._headers)
        except httpx.HTTPError as exc:
            raise DirectoryError(f"FHIR {url}: {exc}") from None
        if response.status_code != 200:
            raise DirectoryError(f"FHIR {url}: HTTP {response.status_code}")
        try:
            bundle = response.json()
        except ValueError:
            raise DirectoryError(f"FHIR {url}: the answer is not JSON") from None
        kind = bundle.get("resourceType") if isinstance(bundle, dict) else type(bundle).__name__
        if kind != "Bundle":
            raise DirectoryError(f"FHIR {url}: expected a Bundle, got {str(kind)[:40]}")
        return dict(bundle)


def _list(value: Any) -> list[Any]:
    """A JSON array as a list; anything else (absent, null, an object) as empty."""
    return value if isinstance(value, list) else []


def _problem(entry: DirectoryEntry) -> str | None:
    if entry.bal_type not in BAL_TYPES:
        return f"unknown BAL type {entry.bal_type[:10]!r} for {entry.address}"
    if not is_valid_address(entry.address):
        return f"invalid address {entry.address[:80]!r} ({entry.owner_ref})"
    return None
