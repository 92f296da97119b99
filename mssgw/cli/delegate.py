"""``mssgw delegate``: who may use an ORG or CAB mailbox (SPEC BAL-3)."""

from __future__ import annotations

import argparse
from typing import Any

from mssgw.cli._common import group, with_store
from mssgw.store import Store


def register(sub: Any) -> None:
    dg = group(sub, "delegate", "delegations of organisational (ORG/CAB) mailboxes")
    for name, text in (
        ("add", "let a professional use the mailbox"),
        ("remove", "withdraw a delegation"),
    ):
        p = dg.add_parser(name, help=text, description=text)
        p.add_argument("address", help="the ORG or CAB mailbox")
        p.add_argument("identity", help="the professional's national id (8+RPPS or 0+ADELI)")
        p.set_defaults(handler=change, action=name)
    lst = dg.add_parser("list", help="list the delegates of a mailbox")
    lst.add_argument("address")
    lst.set_defaults(handler=list_delegates)


def change(args: argparse.Namespace) -> int:
    async def work(store: Store) -> None:
        if args.action == "add":
            await store.mailboxes.delegate(args.address, args.identity)
        else:
            await store.mailboxes.undelegate(args.address, args.identity)

    with_store(args, work)
    verb = "may now use" if args.action == "add" else "may no longer use"
    print(f"{args.identity} {verb} {args.address.lower()}")
    return 0


def list_delegates(args: argparse.Namespace) -> int:
    async def work(store: Store) -> list[str]:
        return await store.mailboxes.delegates(args.address)

    for identity in with_store(args, work):
        print(identity)
    return 0
