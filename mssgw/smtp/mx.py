"""Where to deliver mail for a domain: static routes, then MX records (RFC 5321 §5.1).

``resolve(domain)`` returns the hops to try, in order, or raises
``RouteError`` whose status says whether the failure is permanent (bounce
now) or temporary (retry on the schedule):

=====================================  ==========  ===============================
situation                              status      why
=====================================  ==========  ===============================
static route in ``[relay] routes``     (hop)       tests and smart hosts; no DNS
MX records                             (hops)      by preference, equal ones shuffled
no MX, A/AAAA present                  (hop)       implicit MX, RFC 5321 §5.1
null MX ``0 .``                        5.1.10      RFC 7505 §3, §4.2
domain does not exist (NXDOMAIN)       5.1.2       RFC 3463 X.1.2 bad destination system
neither MX nor address                 5.4.4       RFC 3463 X.4.4 unable to route
MX hosts without any address           4.4.4       may be a transient zone error
SERVFAIL, timeout, no answer at all    4.4.3       RFC 3463 X.4.3 directory server failure
=====================================  ==========  ===============================

Host names are resolved here too (A, then AAAA), with the same resolver,
so that nothing on the relay path depends on the system resolver and the
tests can run against a local DNS server.  Which server is really the
recipient's operator is decided later by peer binding (TRUST-6), never by
DNS: a spoofed MX only leads to a refused peer.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

from mssgw.text import is_digits

#: RFC 5321 §5.1 lets clients bound the addresses tried; Postfix uses 5 too.
MAX_HOPS = 5


@dataclass(frozen=True, slots=True)
class Hop:
    """One server to try: ``name`` for people and DSNs, ``address`` to connect to."""

    name: str
    address: str
    port: int
    preference: int = 0

    def __str__(self) -> str:
        return f"{self.name}[{self.address}]:{self.port}"


class RouteError(Exception):
    """No hop for the domain; ``status`` (RFC 3463) says permanent (5.x.x) or not."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    @property
    def permanent(self) -> bool:
        return self.status.startswith("5")


def parse_route(value: str, default_port: int = 25) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6-address]:port`` → (host, port)."""
    text = value.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if not host or (port and not is_digits(port)) or not 0 < int(port or default_port) < 65536:
        raise ValueError(f"route {value!r}: expected host:port")
    return host, int(port) if port else default_port


class MxResolver:
    """Static routes first, then DNS, through one dnspython async resolver."""

    def __init__(
        self,
        routes: Mapping[str, str] | None = None,
        resolver: dns.asyncresolver.Resolver | None = None,
        *,
        port: int = 25,
        max_hops: int = MAX_HOPS,
        rng: random.Random | None = None,
    ) -> None:
        self.routes = {
            name.lower().rstrip("."): parse_route(value, port)
            for name, value in (routes or {}).items()
        }
        self._resolver = resolver
        self.port = port
        self.max_hops = max_hops
        self.rng = rng or random.Random()

    @property
    def resolver(self) -> dns.asyncresolver.Resolver:
        # Created on first use: reading /etc/resolv.conf is needless when routes are static.
        if self._resolver is None:
            self._resolver = dns.asyncresolver.Resolver()
        return self._resolver

    async def resolve(self, domain: str) -> list[Hop]:
        domain = domain.lower().rstrip(".")
        if domain in self.routes:
            host, port = self.routes[domain]
            return [Hop(host, host, port)]
        exchanges = await self._mx(domain)
        if exchanges is None:  # no MX at all: the domain is its own MX (RFC 5321 §5.1)
            addresses = await self._addresses(domain, implicit=True)
            if not addresses:
                raise RouteError("5.4.4", f"domain {domain} has neither MX nor address records")
            return [Hop(domain, a, self.port) for a in addresses][: self.max_hops]
        hops: list[Hop] = []
        temporary: RouteError | None = None
        for preference, host in exchanges:
            try:
                addresses = await self._addresses(host, implicit=False)
            except RouteError as exc:
                temporary = exc
                continue
            hops += [Hop(host, a, self.port, preference) for a in addresses]
            if len(hops) >= self.max_hops:
                break
        if hops:
            return hops[: self.max_hops]
        if temporary is not None:
            raise temporary
        raise RouteError("4.4.4", f"no MX host of {domain} has an address")

    async def _mx(self, domain: str) -> list[tuple[int, str]] | None:
        """MX targets by preference (equal ones shuffled, RFC 5321 §5.1); ``None``: no MX."""
        try:
            answer = await self.resolver.resolve(domain, "MX", search=False)
        except dns.resolver.NXDOMAIN:
            raise RouteError("5.1.2", f"domain {domain} does not exist (NXDOMAIN)") from None
        except dns.resolver.NoAnswer:
            return None
        except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.YXDOMAIN) as exc:
            raise RouteError("4.4.3", f"MX lookup of {domain} failed: {_brief(exc)}") from None
        records = [(int(r.preference), r.exchange) for r in answer]
        if any(exchange == dns.name.root for _, exchange in records):
            # RFC 7505 §3: "0 ." means the domain accepts no mail; §4.2: 556 5.1.10.
            raise RouteError("5.1.10", f"domain {domain} accepts no mail (null MX, RFC 7505)")
        keyed = [(p, self.rng.random(), e.to_text(omit_final_dot=True).lower()) for p, e in records]
        return [(p, host) for p, _, host in sorted(keyed)]

    async def _addresses(self, host: str, *, implicit: bool) -> list[str]:
        """A then AAAA addresses of ``host``; [] when it has none.

        For the implicit MX, NXDOMAIN of the domain is permanent (the domain
        does not exist); for an MX target it is only a hop without address.
        """
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self.resolver.resolve(host, rdtype, search=False)
            except dns.resolver.NXDOMAIN:
                if implicit:
                    raise RouteError("5.1.2", f"domain {host} does not exist (NXDOMAIN)") from None
                return found
            except dns.resolver.NoAnswer:
                continue
            except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
                if found:
                    return found
                raise RouteError(
                    "4.4.3", f"{rdtype} lookup of {host} failed: {_brief(exc)}"
                ) from None
            found += [r.to_text() for r in answer]
        return found


def _brief(exc: BaseException) -> str:
    if isinstance(exc, dns.exception.Timeout):
        return "timeout"
    if isinstance(exc, dns.resolver.NoNameservers):
        return "no server answered (SERVFAIL or refused)"
    return type(exc).__name__
