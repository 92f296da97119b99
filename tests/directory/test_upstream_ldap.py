"""An upstream LDAP directory as a source, read with a paged search from a real slapd."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import ldap3

from mssgw.directory import sample
from mssgw.directory.extraction import ExtractionSource
from mssgw.directory.ldap_replica import LdapReplica
from mssgw.directory.slapd import Slapd
from mssgw.directory.sql_replica import SqlReplica
from mssgw.directory.sync import Guards, run_sync
from mssgw.directory.upstream_ldap import UpstreamLdapSource, entry_from_attributes


async def test_mssgw_upstream_is_read_losslessly(ldap_replica: LdapReplica, slapd_server: Slapd,
                                                 sql_replica: SqlReplica,
                                                 make_zip: Callable[..., Path]) -> None:
    await run_sync(ExtractionSource(make_zip(sample.lines(range(23)))), ldap_replica)
    source = UpstreamLdapSource(slapd_server.url, ldap_replica.base, slapd_server.root_dn,
                                slapd_server.password, page_size=5)
    report = await run_sync(source, sql_replica)
    assert (report.added, report.invalid) == (23, 0)
    assert await sql_replica.load_index() == await ldap_replica.load_index()


async def test_plain_inetorgperson_entries(ldap_replica: LdapReplica, slapd_server: Slapd,
                                           sql_replica: SqlReplica) -> None:
    ldap_replica.ensure_base()
    conn = ldap3.Connection(slapd_server.url, slapd_server.root_dn, slapd_server.password,
                            auto_bind=True)
    people = [("jean.dupont@medecin.mssante.fr", "Dupont", "Jean"),
              ("accueil@clinique.mssante.fr", "Clinique du Parc", None),
              ("not an address", "X", "Y")]
    for mail, sn, given in people:
        attrs = {"mail": mail, "sn": sn, "cn": f"{given or ''} {sn}".strip()}
        if given:
            attrs["givenName"] = given
        assert conn.add(f"cn={attrs['cn']},{ldap_replica.base}", ["inetOrgPerson"], attrs)
    conn.unbind()
    url = f"{slapd_server.url}/{ldap_replica.base}"  # base given in the URL
    source = UpstreamLdapSource(url, "", slapd_server.root_dn, slapd_server.password)
    report = await run_sync(source, sql_replica, Guards(max_invalid_share=0.5))
    assert (report.added, report.invalid) == (2, 1)
    person = await sql_replica.get("jean.dupont@medecin.mssante.fr")
    org = await sql_replica.get("accueil@clinique.mssante.fr")
    assert person is not None and (person.bal_type, person.first_name) == ("PER", "Jean")
    assert org is not None and (org.bal_type, org.org_name) == ("ORG", "Clinique du Parc")


def test_mapping_rejects_unknown_types() -> None:
    found = entry_from_attributes({"mail": ["a@b.mssante.fr"], "mssgwBalType": ["XYZ"]})
    assert found == "unknown BAL type 'XYZ' for a@b.mssante.fr"
