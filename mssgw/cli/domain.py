"""``mssgw domain``: the mail domains this gateway hosts."""

from __future__ import annotations

import argparse
from typing import Any

from mssgw.cli._common import group, print_json, print_table, with_store
from mssgw.store import Store


def register(sub: Any) -> None:
    domain = group(sub, "domain", "hosted mail domains")
    add = domain.add_parser("add", help="host a new domain", description="Host a new mail domain.")
    add.add_argument("name", help="domain name, e.g. hopital-x.mssante.fr")
    add.set_defaults(handler=add_domain)
    lst = domain.add_parser("list", help="list hosted domains")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(handler=list_domains)


def add_domain(args: argparse.Namespace) -> int:
    async def work(store: Store) -> str:
        return (await store.mailboxes.add_domain(args.name)).name

    print(f"domain {with_store(args, work)} added")
    return 0


def list_domains(args: argparse.Namespace) -> int:
    async def work(store: Store) -> list[tuple[str, int, str]]:
        rows = await store.mailboxes.list_domains()
        return [(d.name, n, d.created_at.isoformat(timespec="seconds")) for d, n in rows]

    rows = with_store(args, work)
    if args.json:
        print_json([{"name": n, "mailboxes": c, "created_at": t} for n, c, t in rows])
    else:
        print_table(("DOMAIN", "MAILBOXES", "CREATED"), rows)
    return 0
