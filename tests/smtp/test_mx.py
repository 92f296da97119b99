"""MX resolution (smtp/mx.py) against a local DNS server and static routes."""

from __future__ import annotations

import random

import pytest

from mssgw.smtp.mx import Hop, MxResolver, RouteError, parse_route
from tests.smtp.relay_support import LocalDns, resolver_for

ZONE = {
    # MX preference order: 5 before 10 before 20, whatever the order in the zone
    "op2.mssante.test": {"MX": ["20 mx3.op2.mssante.test.", "10 mx2.op2.mssante.test.",
                                "5 mx1.op2.mssante.test."]},
    "mx1.op2.mssante.test": {"A": ["127.0.0.11"]},
    "mx2.op2.mssante.test": {"A": ["127.0.0.12"], "AAAA": ["::1"]},
    "mx3.op2.mssante.test": {"A": ["127.0.0.13"]},
    # no MX: the domain's own address (RFC 5321 §5.1)
    "implicit.mssante.test": {"A": ["127.0.0.20"]},
    # null MX (RFC 7505)
    "nomail.mssante.test": {"MX": ["0 ."]},
    "servfail.mssante.test": "SERVFAIL",
    "silent.mssante.test": "DROP",
    # exists, but no MX and no address
    "empty.mssante.test": {"TXT": ['"v=none"']},
    # MX whose host does not resolve
    "dangling.mssante.test": {"MX": ["10 nowhere.mssante.test."]},
    # MX whose host's server fails, next one fine
    "halfbroken.mssante.test": {"MX": ["10 broken.mssante.test.", "20 ok.mssante.test."]},
    "broken.mssante.test": "SERVFAIL",
    "ok.mssante.test": {"A": ["127.0.0.30"]},
}  # fmt: skip


@pytest.fixture
def dns_server() -> LocalDns:
    with LocalDns(ZONE) as server:
        yield server


def _mx(server: LocalDns, **kw: object) -> MxResolver:
    return MxResolver(resolver=resolver_for(server, lifetime=1.0), rng=random.Random(1), **kw)  # type: ignore[arg-type]


async def test_mx_by_preference_then_addresses(dns_server: LocalDns) -> None:
    hops = await _mx(dns_server).resolve("OP2.mssante.test.")
    assert [(h.name, h.address, h.preference) for h in hops] == [
        ("mx1.op2.mssante.test", "127.0.0.11", 5),
        ("mx2.op2.mssante.test", "127.0.0.12", 10),
        ("mx2.op2.mssante.test", "::1", 10),
        ("mx3.op2.mssante.test", "127.0.0.13", 20),
    ]
    assert all(h.port == 25 for h in hops)
    assert str(hops[0]) == "mx1.op2.mssante.test[127.0.0.11]:25"


async def test_hops_are_bounded(dns_server: LocalDns) -> None:
    hops = await _mx(dns_server, max_hops=2).resolve("op2.mssante.test")
    assert [h.address for h in hops] == ["127.0.0.11", "127.0.0.12"]


async def test_equal_preferences_are_shuffled() -> None:
    zone = {
        "eq.mssante.test": {"MX": [f"10 mx{i}.eq.mssante.test." for i in range(6)]},
        **{f"mx{i}.eq.mssante.test": {"A": [f"127.0.1.{i}"]} for i in range(6)},
    }
    with LocalDns(zone) as server:
        orders = set()
        for seed in range(8):
            resolver = MxResolver(
                resolver=resolver_for(server), rng=random.Random(seed), max_hops=6
            )
            orders.add(tuple(h.address for h in await resolver.resolve("eq.mssante.test")))
    assert len(orders) > 1
    assert all(sorted(order) == [f"127.0.1.{i}" for i in range(6)] for order in orders)


async def test_no_mx_falls_back_to_the_domain_address(dns_server: LocalDns) -> None:
    assert await _mx(dns_server).resolve("implicit.mssante.test") == [
        Hop("implicit.mssante.test", "127.0.0.20", 25)
    ]


async def test_static_route_wins_without_dns(dns_server: LocalDns) -> None:
    resolver = _mx(dns_server, routes={"OP2.mssante.test": "127.0.0.1:2525"})
    assert await resolver.resolve("op2.mssante.test") == [Hop("127.0.0.1", "127.0.0.1", 2525)]
    assert dns_server.queries == []


async def test_one_failing_mx_host_is_skipped(dns_server: LocalDns) -> None:
    hops = await _mx(dns_server).resolve("halfbroken.mssante.test")
    assert [h.address for h in hops] == ["127.0.0.30"]


@pytest.mark.parametrize(
    ("domain", "status", "permanent", "words"),
    [
        ("nomail.mssante.test", "5.1.10", True, "null MX"),
        ("absent.mssante.test", "5.1.2", True, "NXDOMAIN"),
        ("empty.mssante.test", "5.4.4", True, "neither MX nor address"),
        ("servfail.mssante.test", "4.4.3", False, "SERVFAIL"),
        ("silent.mssante.test", "4.4.3", False, "timeout"),
        ("dangling.mssante.test", "4.4.4", False, "no MX host"),
    ],
)
async def test_route_errors(
    dns_server: LocalDns, domain: str, status: str, permanent: bool, words: str
) -> None:
    with pytest.raises(RouteError, match=words) as caught:
        await _mx(dns_server).resolve(domain)
    assert caught.value.status == status
    assert caught.value.permanent is permanent


@pytest.mark.parametrize(
    ("text", "expected"),
    [("mx.example:2525", ("mx.example", 2525)), ("mx.example", ("mx.example", 25)),
     ("[::1]:26", ("::1", 26)), ("127.0.0.1:25", ("127.0.0.1", 25))],
)  # fmt: skip
def test_parse_route(text: str, expected: tuple[str, int]) -> None:
    assert parse_route(text) == expected


@pytest.mark.parametrize("text", ["", ":25", "mx:port", "mx:0", "mx:70000"])
def test_bad_routes_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_route(text)
