"""``mssgw mailbox``: create and manage MSSanté BALs (SPEC BAL-1…4)."""

from __future__ import annotations

import argparse
from typing import Any

from mssgw.cli._common import group, print_json, print_table, with_store
from mssgw.store import Store
from mssgw.store.mailboxes import NewMailbox, parse_type
from mssgw.store.models import Mailbox, MailboxState


def register(sub: Any) -> None:
    mb = group(sub, "mailbox", "MSSanté mailboxes (BAL)")
    add = mb.add_parser(
        "add",
        help="create a mailbox",
        description="Create a BAL. Its address and type can never change afterwards (BAL-1).",
    )
    add.add_argument("address", help="e.g. jean.dupont@hopital-x.mssante.fr")
    add.add_argument("--type", required=True, metavar="TYPE", help="PER, ORG, APP or CAB")
    add.add_argument(
        "--owner",
        required=True,
        metavar="ID",
        help="PER: national id (8+RPPS or 0+ADELI); ORG/APP/CAB: structure id (FINESS/SIRET)",
    )
    add.add_argument("--name", default="", help="display name")
    add.add_argument(
        "--structure", default=None, metavar="ID", help="structure a PER mailbox belongs to"
    )
    add.add_argument(
        "--liste-rouge", action="store_true", help="do not publish in the directory (BAL-2)"
    )
    add.set_defaults(handler=add_mailbox)

    lst = mb.add_parser("list", help="list mailboxes")
    lst.add_argument("--domain", help="only this domain")
    lst.add_argument("--all", action="store_true", help="include deleted mailboxes")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(handler=list_mailboxes)

    show = mb.add_parser("show", help="show one mailbox")
    show.add_argument("address")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(handler=show_mailbox)

    for name, state, text in (
        ("suspend", MailboxState.SUSPENDED, "suspend a mailbox (mail to it is refused with 5.2.1)"),
        ("activate", MailboxState.ACTIVE, "reactivate a suspended mailbox"),
        ("delete", MailboxState.DELETED, "delete a mailbox (final; the address is never reused)"),
    ):
        p = mb.add_parser(name, help=text, description=text)
        p.add_argument("address")
        p.set_defaults(handler=change_state, state=state)


def _as_dict(m: Mailbox) -> dict[str, Any]:
    return {
        "address": m.address,
        "type": m.type,
        "owner": m.owner_id,
        "structure": m.structure_id,
        "name": m.display_name,
        "state": m.state,
        "liste_rouge": m.liste_rouge,
        "last_auth_at": m.last_auth_at,
        "created_at": m.created_at,
        "updated_at": m.updated_at,
    }


def add_mailbox(args: argparse.Namespace) -> int:
    new = NewMailbox(
        address=args.address,
        type=parse_type(args.type),
        owner_id=args.owner,
        display_name=args.name,
        structure_id=args.structure,
        liste_rouge=args.liste_rouge,
    )

    async def work(store: Store) -> Mailbox:
        return await store.mailboxes.add(new)

    mailbox = with_store(args, work)
    print(f"mailbox {mailbox.address} ({mailbox.type}) created")
    return 0


def list_mailboxes(args: argparse.Namespace) -> int:
    async def work(store: Store) -> list[Mailbox]:
        return list(await store.mailboxes.list(domain=args.domain, include_deleted=args.all))

    rows = with_store(args, work)
    if args.json:
        print_json([_as_dict(m) for m in rows])
        return 0
    print_table(
        ("ADDRESS", "TYPE", "OWNER", "STATE", "LISTE ROUGE"),
        [(m.address, m.type, m.owner_id, m.state, "yes" if m.liste_rouge else "") for m in rows],
    )
    return 0


def show_mailbox(args: argparse.Namespace) -> int:
    async def work(store: Store) -> tuple[Mailbox, list[str], int]:
        mailbox = await store.mailboxes.get(args.address)
        delegates = await store.mailboxes.delegates(mailbox.address)
        creds = await store.credentials.list(mailbox.address)
        return mailbox, delegates, sum(1 for c in creds if c.revoked_at is None)

    mailbox, delegates, passwords = with_store(args, work)
    data = {**_as_dict(mailbox), "delegates": delegates, "active_passwords": passwords}
    if args.json:
        print_json(data)
        return 0
    for key, value in data.items():
        if isinstance(value, list):
            value = ", ".join(value) or "-"
        print(f"{key + ':':<17} {'-' if value is None else value}")
    return 0


def change_state(args: argparse.Namespace) -> int:
    async def work(store: Store) -> Mailbox:
        return await store.mailboxes.set_state(args.address, args.state)

    mailbox = with_store(args, work)
    print(f"mailbox {mailbox.address} is now {mailbox.state}")
    return 0
