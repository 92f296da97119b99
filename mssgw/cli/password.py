"""``mssgw password``: application passwords for mail clients (SPEC AUTH-3)."""

from __future__ import annotations

import argparse
from typing import Any

from mssgw.cli._common import group, print_json, print_table, with_store
from mssgw.store import Store
from mssgw.store.credentials import IssuedPassword
from mssgw.store.models import Credential


def register(sub: Any) -> None:
    pw = group(sub, "password", "application passwords for Thunderbird and other clients")
    issue = pw.add_parser(
        "issue",
        help="issue a new application password (shown once)",
        description="Issue a password bound to one mailbox. It is printed once and stored hashed "
        "(Argon2id). Issue one per device, so that one can be revoked alone.",
    )
    issue.add_argument("address")
    issue.add_argument(
        "--identity",
        metavar="NATIONAL_ID",
        help="for ORG/CAB mailboxes: the delegate the password is for",
    )
    issue.add_argument("--label", default="", help="what it is for, e.g. 'Thunderbird, office PC'")
    issue.add_argument("--json", action="store_true", help="machine-readable output")
    issue.set_defaults(handler=issue_password)
    lst = pw.add_parser("list", help="list a mailbox's application passwords (never the secrets)")
    lst.add_argument("address")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(handler=list_passwords)
    revoke = pw.add_parser("revoke", help="revoke an application password by id")
    revoke.add_argument("id", type=int)
    revoke.set_defaults(handler=revoke_password)


def issue_password(args: argparse.Namespace) -> int:
    async def work(store: Store) -> IssuedPassword:
        return await store.credentials.issue(args.address, identity=args.identity, label=args.label)

    issued = with_store(args, work)
    if args.json:
        print_json(issued.__dict__)
    else:
        print(
            f"application password {issued.credential_id} for {issued.address} "
            f"(identity {issued.identity}); it is shown only now:"
        )
        print(issued.password)
    return 0


def _row(c: Credential) -> dict[str, Any]:
    return {
        "id": c.id,
        "identity": c.identity,
        "label": c.label,
        "created_at": c.created_at,
        "last_used_at": c.last_used_at,
        "revoked_at": c.revoked_at,
    }


def list_passwords(args: argparse.Namespace) -> int:
    async def work(store: Store) -> list[Credential]:
        return list(await store.credentials.list(args.address))

    creds = with_store(args, work)
    if args.json:
        print_json([_row(c) for c in creds])
        return 0
    print_table(
        ("ID", "IDENTITY", "LABEL", "CREATED", "LAST USED", "REVOKED"),
        [
            (c.id, c.identity, c.label, _t(c.created_at), _t(c.last_used_at), _t(c.revoked_at))
            for c in creds
        ],
    )
    return 0


def _t(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value is not None else ""


def revoke_password(args: argparse.Namespace) -> int:
    async def work(store: Store) -> Credential:
        return await store.credentials.revoke(args.id)

    cred = with_store(args, work)
    print(f"application password {cred.id} revoked")
    return 0
