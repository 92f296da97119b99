"""The LDAP replica: one ``inetOrgPerson`` + ``mssgwMailbox`` entry per BAL in OpenLDAP.

What a sync guarantees here (LDAP has no multi-entry transaction):

* every entry is written by one LDAP operation, so a reader never sees a
  half-written entry;
* additions and changes are applied before removals, so an interrupted run
  never loses an entry the new source still lists; the replica is then a
  mix of the previous and the new state, every entry whole, and a rerun
  converges (the diff is recomputed from what is really there);
* the state entry ``cn=mssgw-sync-state`` is written last: its watermark
  says which run completed, so monitoring can tell an unfinished sync.

Why the ``mssgwRecord`` attribute: the standard attributes Thunderbird reads
cannot hold every column losslessly, so the full entry is kept as JSON next
to them and lookups read only that.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from mssgw.directory import ldap_wire
from mssgw.directory.base import DirectoryError, IndexItem, Progress, chunks
from mssgw.directory.entry import DirectoryEntry, entry_from_record
from mssgw.directory.ldap_wire import PipelinedWriter

OBJECT_CLASSES = ["inetOrgPerson", "mssgwMailbox"]
STATE_RDN = "cn=mssgw-sync-state"
#: Attributes a sync manages (replaced as a whole on change).
MANAGED = (
    "cn", "sn", "givenName", "o", "ou", "title", "street", "postalCode",
    "l", "postalAddress", "mssgwBalType", "mssgwNationalId", "mssgwStructureId",
    "mssgwProfessionCode", "mssgwSpecialityCode", "mssgwSpeciality", "mssgwListeRouge",
    "mssgwDematerialisation", "mssgwSource", "mssgwOwnerRef", "mssgwContentHash",
    "mssgwRecord",
)
_ALREADY_EXISTS = 68
_NO_SUCH_OBJECT = 32
_ONE_LEVEL = 1  # SearchRequest scope singleLevel (ldap3.LEVEL)
_MAILBOXES = ldap_wire.equality_filter("objectClass", "mssgwMailbox")
_LOCAL_MAILBOXES = ldap_wire.and_filter(
    _MAILBOXES, ldap_wire.equality_filter("mssgwSource", "local")
)


def _bool(value: bool) -> str:
    return "TRUE" if value else "FALSE"


def _postal(*lines: str) -> str:
    """RFC 4517 PostalAddress: lines joined by ``$``, with ``\\`` and ``$`` escaped."""
    kept = [ln.replace("\\", "\\5C").replace("$", "\\24") for ln in lines if ln]
    return "$".join(kept)


def entry_attributes(entry: DirectoryEntry, scope: str) -> dict[str, str]:
    """The LDAP attributes of an entry; empty values are left out (pure)."""
    e = entry
    street = " ".join(
        p for p in (e.addr_street_number, e.addr_street_number_complement,
                    e.addr_street_type, e.addr_street_name) if p
    )
    surname = e.last_name or e.org_name or e.org_trade_name or e.service
    values = {
        "mail": e.address,
        "cn": e.display_name,
        "sn": surname or e.address.split("@")[0],
        "givenName": e.first_name,
        "o": e.org_name or e.org_trade_name,
        "ou": e.service,
        "title": e.profession,
        "street": street,
        "postalCode": e.addr_postcode,
        "l": e.addr_routing_line,
        "postalAddress": _postal(
            e.addr_complement_location, e.addr_complement_distribution, street,
            e.addr_lieu_dit, e.addr_routing_line, e.addr_country,
        ),
        "mssgwBalType": e.bal_type,
        "mssgwNationalId": e.pp_national_id,
        "mssgwStructureId": e.structure_id,
        "mssgwProfessionCode": e.profession_code,
        "mssgwSpecialityCode": e.speciality_code,
        "mssgwSpeciality": e.speciality,
        "mssgwListeRouge": _bool(e.liste_rouge),
        "mssgwDematerialisation": _bool(e.dematerialisation),
        "mssgwSource": scope,
        "mssgwOwnerRef": e.owner_ref,
        "mssgwContentHash": e.content_hash,
        "mssgwRecord": json.dumps(e.record(), ensure_ascii=False, separators=(",", ":")),
    }
    return {k: v for k, v in values.items() if v}


class LdapReplica:
    """Entries below ``base`` (an ``ou`` created on first use) on an LDAP server."""

    kind = "ldap"

    def __init__(self, url: str, bind_dn: str, password: str, base: str,
                 timeout: float = 10.0, page_size: int = 1000, window: int = 256) -> None:
        self.url, self.bind_dn, self.password, self.base = url, bind_dn, password, base
        self.timeout, self.page_size, self.window = timeout, page_size, window
        self._conn: ldap3.Connection | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- plumbing

    def connection(self) -> ldap3.Connection:
        """The bound connection, (re)opened on demand."""
        if self._conn is None or not self._conn.bound:
            server = ldap3.Server(self.url, connect_timeout=self.timeout, get_info=ldap3.NONE)
            try:
                self._conn = ldap3.Connection(
                    server, self.bind_dn or None, self.password or None, auto_bind=True,
                    receive_timeout=max(1, round(self.timeout)), raise_exceptions=False,
                )
            except LDAPException as exc:
                raise DirectoryError(f"LDAP replica {self.url}: {exc}") from None
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.unbind()
            self._conn = None

    def dn(self, address: str) -> str:
        return f"mail={escape_rdn(address)},{self.base}"

    def _check(self, ok: bool, what: str) -> None:
        if not ok:
            result = self.connection().result
            raise DirectoryError(
                f"LDAP replica {self.url}: {what}: {result.get('description')} "
                f"{result.get('message', '')}".rstrip()
            )

    def ensure_base(self) -> None:
        """Create the base ``ou`` when missing (first sync on a fresh server)."""
        conn = self.connection()
        if conn.search(self.base, "(objectClass=*)", ldap3.BASE, attributes=["1.1"]):
            return
        if conn.result["result"] != _NO_SUCH_OBJECT:
            self._check(False, f"reading {self.base}")
        name = self.base.split(",")[0].split("=", 1)[1]
        self._check(conn.add(self.base, ["organizationalUnit"], {"ou": name}),
                    f"creating {self.base}")

    # ----------------------------------------------------------------- Replica protocol

    async def load_index(self) -> dict[str, IndexItem]:
        self.ensure_base()
        index: dict[str, IndexItem] = {}
        for attrs in self._paged(_MAILBOXES,
                                 ["mail", "mssgwContentHash", "mssgwSource", "mssgwOwnerRef"]):
            index[_one(attrs, "mail").lower()] = IndexItem(
                _one(attrs, "mssgwContentHash"), _one(attrs, "mssgwSource") or "national",
                _one(attrs, "mssgwOwnerRef"),
            )
        return index

    def _paged(self, filter_: bytes, attributes: list[str]) -> Iterator[dict[str, Any]]:
        """The entries below the base matching ``filter_`` (``ldap_wire`` encoding).

        Searched and decoded by ``ldap_wire.paged_search``; a missing base is
        an empty result, any other failure a ``DirectoryError``.
        """
        conn = self.connection()
        try:
            for _, attrs in ldap_wire.paged_search(conn, self.base, _ONE_LEVEL, filter_,
                                                   attributes, self.page_size):
                yield attrs
        except ldap_wire.SearchFailed as exc:
            if exc.code != _NO_SUCH_OBJECT:
                raise DirectoryError(f"LDAP replica {self.url}: searching: {exc}") from None
        except OSError as exc:  # ConnectionError, socket timeout
            self._drop()
            raise DirectoryError(f"LDAP replica {self.url}: searching: {exc}") from None
        except (IndexError, ValueError) as exc:  # a response ldap_wire cannot decode
            self._drop()
            raise DirectoryError(
                f"LDAP replica {self.url}: searching: malformed response ({exc})"
            ) from None
        except GeneratorExit:  # abandoned mid-search: responses may still arrive
            self._drop()
            raise

    def _drop(self) -> None:
        """Forget a connection left in an unknown state (never reused)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.unbind()
            except (LDAPException, OSError):
                pass

    async def apply(
        self,
        removed: Iterable[str],
        written: Iterable[tuple[DirectoryEntry, str]],
        progress: Progress,
    ) -> None:
        self.ensure_base()
        writer = PipelinedWriter(self.connection())
        count = 0
        for window in chunks(written, self.window):
            self._write_window(writer, window)
            count += len(window)
            progress(len(window))
        for names in chunks(sorted(removed), self.window):
            outcomes = writer.run(ldap_wire.delete_request(self.dn(a)) for a in names)
            for outcome in outcomes:
                if outcome.code not in (0, _NO_SUCH_OBJECT):
                    self._fail(f"deleting {names[outcome.position]}", outcome)
            progress(len(names))
        self._write_state({"applied_at": datetime.now(UTC).isoformat(), "written": count})

    def _write_window(self, writer: PipelinedWriter,
                      window: list[tuple[DirectoryEntry, str]]) -> None:
        """Add every entry; replace the managed attributes of those that exist."""
        attrs = [entry_attributes(e, scope) for e, scope in window]
        adds = (
            ldap_wire.add_request(self.dn(e.address), {"objectClass": OBJECT_CLASSES,
                                                       **{k: [v] for k, v in a.items()}})
            for (e, _), a in zip(window, attrs, strict=True)
        )
        existing = []
        for outcome in writer.run(adds):
            if outcome.code == _ALREADY_EXISTS:
                existing.append(outcome.position)
            elif outcome.code:
                self._fail(f"adding {window[outcome.position][0].address}", outcome)
        mods = (
            ldap_wire.modify_request(
                self.dn(window[i][0].address),
                {k: [attrs[i][k]] if k in attrs[i] else [] for k in MANAGED},
            )
            for i in existing
        )
        for outcome in writer.run(mods):
            if outcome.code:
                self._fail(f"updating {window[existing[outcome.position]][0].address}", outcome)

    def _fail(self, what: str, outcome: ldap_wire.Outcome) -> None:
        raise DirectoryError(
            f"LDAP replica {self.url}: {what}: result {outcome.code} {outcome.diagnostic}".rstrip()
        )

    def _write_state(self, state: dict[str, Any]) -> None:
        conn = self.connection()
        dn = f"{STATE_RDN},{self.base}"
        value = json.dumps(state)
        if conn.add(dn, ["mssgwSyncState"], {"mssgwWatermark": value}):
            return
        self._check(conn.modify(dn, {"mssgwWatermark": [(ldap3.MODIFY_REPLACE, [value])]}),
                    "writing the sync state")

    def read_state(self) -> dict[str, Any]:
        conn = self.connection()
        if not conn.search(f"{STATE_RDN},{self.base}", "(objectClass=*)", ldap3.BASE,
                           attributes=["mssgwWatermark"]):
            return {}
        value = _one(conn.response[0]["attributes"], "mssgwWatermark")
        return dict(json.loads(value)) if value else {}

    async def get(self, address: str) -> DirectoryEntry | None:
        return self.get_blocking(address)

    def get_blocking(self, address: str) -> DirectoryEntry | None:
        """One search by ``mail``; thread-safe (lookups run it in a worker thread)."""
        with self._lock:
            conn = self.connection()
            query = f"(&(objectClass=mssgwMailbox)(mail={escape_filter_chars(address)}))"
            if not conn.search(self.base, query, ldap3.LEVEL, attributes=["mssgwRecord"]):
                if conn.result["result"] in (0, _NO_SUCH_OBJECT):
                    return None
                self._conn = None
                raise DirectoryError(f"LDAP replica {self.url}: {conn.result['description']}")
            record = _one(conn.response[0]["attributes"], "mssgwRecord")
        return entry_from_record(json.loads(record))

    async def local_entries(self) -> list[DirectoryEntry]:
        found = [
            entry_from_record(json.loads(_one(a, "mssgwRecord")))
            for a in self._paged(_LOCAL_MAILBOXES, ["mssgwRecord"])
        ]
        return sorted(found, key=lambda e: e.address)

    async def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for attrs in self._paged(_MAILBOXES, ["mssgwBalType", "mssgwSource"]):
            key = f"{_one(attrs, 'mssgwSource') or 'national'}/{_one(attrs, 'mssgwBalType')}"
            counts[key] = counts.get(key, 0) + 1
        counts["total"] = sum(counts.values())
        return counts


def _one(attrs: dict[str, Any], name: str) -> str:
    value = attrs.get(name)
    if isinstance(value, list):
        return str(value[0]) if value else ""
    return "" if value is None else str(value)
