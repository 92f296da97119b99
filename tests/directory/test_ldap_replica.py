"""The LDAP replica on a real slapd: sync scenarios, schema, Thunderbird searches."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import ldap3
import pytest

from mssgw.directory import sample
from mssgw.directory.base import DirectoryError
from mssgw.directory.entry import DirectoryEntry
from mssgw.directory.extraction import ExtractionSource
from mssgw.directory.ldap_replica import LdapReplica, entry_attributes
from mssgw.directory.local import LocalSource
from mssgw.directory.slapd import Slapd
from mssgw.directory.sync import run_sync
from tests.directory import scenarios

MakeZip = Callable[..., Path]


@pytest.mark.parametrize("scenario", scenarios.SCENARIOS, ids=lambda s: s.__name__)
async def test_scenario(scenario: Callable[[LdapReplica, MakeZip], Awaitable[None]],
                        ldap_replica: LdapReplica, make_zip: MakeZip) -> None:
    await scenario(ldap_replica, make_zip)


async def test_interrupted_sync_keeps_every_entry_whole(ldap_replica: LdapReplica,
                                                        make_zip: MakeZip) -> None:
    await scenarios.interrupted_sync(ldap_replica, make_zip, atomic=False)
    assert "applied_at" in ldap_replica.read_state()


def _anonymous_search(server: Slapd, base: str, query: str) -> list[dict[str, list[str]]]:
    conn = ldap3.Connection(server.url, auto_bind=True)
    conn.search(base, query, ldap3.SUBTREE, attributes=["mail", "cn", "sn", "givenName", "o"])
    found = [dict(e["attributes"]) for e in conn.response if e["type"] == "searchResEntry"]
    conn.unbind()
    return found


async def test_thunderbird_style_search(ldap_replica: LdapReplica, slapd_server: Slapd) -> None:
    """Thunderbird's address book: anonymous substring search on mail/cn/sn/givenName."""
    doctor = DirectoryEntry("PER", "h.lefevre@medecin.mssante.fr", last_name="LEFÈVRE",
                            first_name="Hélène", profession="Médecin", org_name="CHU d'Ici")
    hidden = DirectoryEntry("PER", "secret@medecin.mssante.fr", last_name="LEFÈVRE",
                            first_name="Zoé", liste_rouge=True)
    await run_sync(LocalSource([doctor, hidden]), ldap_replica)
    query = "(|(mail=*lefèvre*)(cn=*lefèvre*)(sn=*lefèvre*)(givenName=*lefèvre*))"
    found = _anonymous_search(slapd_server, ldap_replica.base, query)
    assert [f["mail"] for f in found] == [["h.lefevre@medecin.mssante.fr"]]
    assert found[0]["cn"] == ["Hélène LEFÈVRE"] and found[0]["o"] == ["CHU d'Ici"]
    # the gateway (bound) still finds the unlisted BAL: it receives mail (BAL-2)
    assert await ldap_replica.get("secret@medecin.mssante.fr") == hidden


def test_attributes_of_an_organisation_mailbox() -> None:
    org = DirectoryEntry("ORG", "accueil@ch.mssante.fr", service="Accueil",
                         org_name="CH de l'Étang", addr_street_number="3",
                         addr_street_type="rue", addr_street_name="des $ et \\",
                         addr_routing_line="75001 PARIS")
    attrs = entry_attributes(org, "national")
    assert attrs["cn"] == "CH de l'Étang - Accueil"
    assert attrs["sn"] == "CH de l'Étang"
    assert "givenName" not in attrs
    assert attrs["street"] == "3 rue des $ et \\"
    assert attrs["postalAddress"] == "3 rue des \\24 et \\5C$75001 PARIS"
    assert attrs["mssgwListeRouge"] == "FALSE"


async def test_special_characters_in_addresses(ldap_replica: LdapReplica) -> None:
    odd = DirectoryEntry("PER", "o'neil+test=1@medecin.mssante.fr", last_name="O'Neil")
    await run_sync(LocalSource([odd]), ldap_replica)
    assert await ldap_replica.get(odd.address) == odd
    assert (await ldap_replica.load_index()).keys() == {odd.address}


async def test_full_sample_round_trips(ldap_replica: LdapReplica, make_zip: MakeZip) -> None:
    path = make_zip(sample.lines(range(25)))
    await run_sync(ExtractionSource(path), ldap_replica)
    assert (await ldap_replica.counts())["total"] == 25


async def test_searches_span_several_pages(ldap_replica: LdapReplica, make_zip: MakeZip) -> None:
    """Index, counts and local entries are read page by page (``ldap_wire.paged_search``)."""
    ldap_replica.page_size = 4
    path = make_zip(sample.lines(range(11)))
    ours = [DirectoryEntry("PER", f"moi{i}@ours.mssante.fr", last_name="Été") for i in range(5)]
    await run_sync(ExtractionSource(path), ldap_replica)
    await run_sync(LocalSource(ours), ldap_replica)
    index = await ldap_replica.load_index()
    assert len(index) == 16
    assert {a for a, i in index.items() if i.scope == "local"} == {e.address for e in ours}
    assert all(len(i.content_hash) == 16 for i in index.values())
    assert await ldap_replica.local_entries() == ours
    counts = await ldap_replica.counts()
    assert counts["total"] == 16 and counts["local/PER"] == 5


async def test_searching_a_missing_base_finds_nothing(slapd_server: Slapd) -> None:
    replica = LdapReplica(slapd_server.url, slapd_server.root_dn, slapd_server.password,
                          f"ou=absent,{slapd_server.suffix}", timeout=5)
    try:
        assert await replica.counts() == {"total": 0}
        assert await replica.local_entries() == []
    finally:
        replica.close()


async def test_a_response_that_cannot_be_decoded_is_a_clear_error() -> None:
    """The replica's answers are decoded by ``ldap_wire``: a truncated or damaged
    message is a ``DirectoryError`` naming the server, and the connection is dropped."""
    ours, server = socket.socketpair()
    server.sendall(bytes([0x30, 0x03, 0x02, 0x01, 0x02]))  # a message id and nothing else

    class Connection:
        bound = True
        socket = ours
        unbound = False

        def unbind(self) -> None:
            self.unbound = True

    fake = Connection()
    replica = LdapReplica("ldap://127.0.0.1:1", "", "", "ou=x,dc=example,dc=org")
    replica._conn = fake  # type: ignore[assignment]
    try:
        with pytest.raises(DirectoryError, match=r"ldap://127\.0\.0\.1:1.*malformed response"):
            await replica.counts()
        assert fake.unbound and replica._conn is None
    finally:
        ours.close()
        server.close()
