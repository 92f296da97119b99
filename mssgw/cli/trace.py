"""``mssgw trace``: read the audit traces (SPEC TRACE-1) and apply their retention."""

from __future__ import annotations

import argparse
from typing import Any

from mssgw.cli._common import group, print_json, print_table, settings_from, with_store
from mssgw.errors import MssgwError
from mssgw.store import Store
from mssgw.store.models import Trace

CATEGORIES = ("transport", "client", "admin")


def register(sub: Any) -> None:
    tr = group(sub, "trace", "audit traces: who did what, when, with which result (never content)")
    lst = tr.add_parser(
        "list",
        help="show the most recent traces, newest first",
        description="Show recent traces, newest first. Filters combine.",
    )
    lst.add_argument("--category", choices=CATEGORIES, help="only this category")
    lst.add_argument(
        "--address",
        metavar="ADDRESS",
        help="only traces whose sender or recipients mention this address",
    )
    lst.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (default 50)")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(handler=list_traces)
    purge = tr.add_parser(
        "purge",
        help="delete traces past their retention now ([traces] settings)",
        description="Delete traces older than [traces] transport_retention_days (transport "
        "and admin) and client_retention_days (client). The daemon does this daily.",
    )
    purge.set_defaults(handler=purge_traces)


def _row(t: Trace) -> dict[str, Any]:
    return {
        "at": t.at.isoformat(timespec="seconds"),
        "category": t.category,
        "action": t.action,
        "result": t.result,
        "code": t.code,
        "actor": t.actor,
        "peer_ip": t.peer_ip,
        "tls": t.tls,
        "sender": t.sender,
        "recipients": t.recipients,
        "message_id": t.message_id,
        "size": t.size,
        "reason": t.reason,
    }


def list_traces(args: argparse.Namespace) -> int:
    if args.limit <= 0:
        raise MssgwError(f"--limit {args.limit}: expected a positive number")
    wanted = (args.address or "").strip().lower()

    async def work(store: Store) -> list[Trace]:
        # Filter by address in Python over a bounded window: traces are read by people.
        window = args.limit * 20 if wanted else args.limit
        rows = await store.traces.recent(window, category=args.category)
        if wanted:
            rows = [
                t
                for t in rows
                if wanted in (t.sender or "").lower() or wanted in (t.recipients or "").lower()
            ]
        return list(rows[: args.limit])

    rows = with_store(args, work)
    if args.json:
        print_json([_row(t) for t in rows])
        return 0
    print_table(
        ("AT", "CATEGORY", "ACTION", "RESULT", "CODE", "ACTOR", "SENDER", "RECIPIENTS"),
        [
            (
                t.at.isoformat(timespec="seconds"),
                t.category,
                t.action,
                t.result,
                t.code or "",
                (t.actor or "")[:40],
                t.sender or "",
                (t.recipients or "")[:60],
            )
            for t in rows
        ],
    )
    return 0


def purge_traces(args: argparse.Namespace) -> int:
    keep = settings_from(args).traces

    async def work(store: Store) -> dict[str, int]:
        return await store.traces.purge_past_retention(
            transport_days=keep.transport_retention_days, client_days=keep.client_retention_days
        )

    removed = with_store(args, work)
    print(", ".join(f"{c}: {n} removed" for c, n in removed.items()))
    return 0
