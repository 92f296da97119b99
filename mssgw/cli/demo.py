"""``mssgw demo``: two operators on loopback, a message relayed from one to the other."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run two operators on loopback and relay one message between them",
        description="In one process: create (once) a development PKI and liste blanche, start "
        "operator A (op1.mssante.test) and operator B (op2.mssante.test) on ephemeral loopback "
        "ports, submit a message as A's user (STARTTLS + AUTH PLAIN), let A relay it to B over "
        "mutual TLS, read it back from B's INBOX over IMAPS, check it arrived byte-identical "
        "(trace fields the gateways prepend aside), show one refusal (a domain outside the "
        "trust space), stop both. Exit status 0 only if every step succeeded. Needs no "
        "configuration file.",
    )
    p.add_argument(
        "--state",
        metavar="DIR",
        help="state folder (PKI, both gateways' data); reused and kept. Default: a temporary "
        "folder, removed at the end unless --keep",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the temporary state folder and print its path"
    )
    p.set_defaults(handler=demo)


def demo(args: argparse.Namespace) -> int:
    from mssgw import demo as runner

    return runner.main(Path(args.state) if args.state else None, args.keep)
