"""``mssgw queue``: look at and act on the outbound queue (SPEC FLOW-3, issue 6).

Every action is traced (category ``admin``) and kept in the queue history.
A row being delivered at this instant (leased by a worker) cannot be
bounced or dropped: the message may be on the wire; try again a moment
later.  See ``docs/relay.md``.
"""

from __future__ import annotations

import argparse
import getpass
from datetime import datetime
from typing import Any

from mssgw.cli._common import group, print_json, print_table, settings_from, with_store
from mssgw.config import Settings
from mssgw.smtp.dsn import RecipientReport, wants_notice
from mssgw.store import Store
from mssgw.store.models import QueueEntry, QueueEvent, QueueState
from mssgw.store.timeutil import now
from mssgw.store.traces import TraceRecord
from mssgw.text import is_digits


def register(sub: Any) -> None:
    q = group(sub, "queue", "outbound queue: list, retry, hold, release, fail, drop, history")

    lst = q.add_parser(
        "list",
        help="list queued and held messages",
        description="One line per remote recipient waiting for delivery (queued or held): "
        "id, recipient, state, attempts, next attempt, last error.",
    )
    lst.add_argument("--all", action="store_true", help="include delivered and failed entries")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(handler=list_cmd)

    retry = q.add_parser(
        "retry",
        help="try an entry again now",
        description="Make a queued entry due now and attempt its delivery at once from this "
        "process (needs the [tls] certificates); --later leaves the attempt to the daemon.",
    )
    retry.add_argument("id", type=int, metavar="ID")
    retry.add_argument("--later", action="store_true", help="only make it due now")
    retry.set_defaults(handler=retry_cmd)

    for name, text in (
        ("hold", "stop delivery attempts for an entry until it is released"),
        ("release", "put a held entry back in the queue, due now"),
    ):
        p = q.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("id", type=int, metavar="ID")
        p.set_defaults(handler=simple_cmd, action=name)

    fail = q.add_parser(
        "fail",
        help="give up on an entry now and notify its sender",
        description="Fail a queued or held entry now; the sender gets a failure DSN "
        "(RFC 3464) unless its NOTIFY excluded failures.",
    )
    fail.add_argument("id", type=int, metavar="ID")
    fail.add_argument(
        "--reason", default="delivery cancelled by the operator", help="shown in the DSN"
    )
    fail.set_defaults(handler=fail_cmd)

    drop = q.add_parser(
        "drop",
        help="remove an entry without notifying anyone",
        description="Delete an entry without any DSN (traced; its history stays).",
    )
    drop.add_argument("id", type=int, metavar="ID")
    drop.set_defaults(handler=drop_cmd)

    hist = q.add_parser(
        "history",
        help="recent attempts and operator actions",
        description="The most recent queue events, newest first: attempts (delivered, "
        "deferred, failed), DSNs sent, and operator actions.",
    )
    hist.add_argument(
        "--limit", type=_positive, default=50, metavar="N", help="events (default 50)"
    )
    hist.add_argument("--id", type=int, metavar="ID", help="only this entry")
    hist.add_argument("--json", action="store_true", help="machine-readable output")
    hist.set_defaults(handler=history_cmd)


def _positive(text: str) -> int:
    if not is_digits(text) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return int(text)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _entry(e: QueueEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "sender": e.sender,
        "recipient": e.recipient,
        "state": e.state,
        "attempts": e.attempts,
        "next_attempt_at": e.next_attempt_at if e.state == QueueState.QUEUED.value else None,
        "last_attempt_at": e.last_attempt_at,
        "last_status": e.last_status,
        "last_error": e.last_error,
        "remote_mta": e.remote_mta,
        "created_at": e.created_at,
    }


def _actor() -> str:
    try:
        return f"operator {getpass.getuser()}"
    except (KeyError, OSError):
        return "operator"


async def _trace(store: Store, verb: str, entry: QueueEntry, reason: str | None = None) -> None:
    await store.traces.add(
        TraceRecord(
            category="admin",
            action=f"queue.{verb}",
            result="ok",
            actor=_actor(),
            sender=entry.sender,
            recipients=entry.recipient,
            reason=reason or f"queue entry {entry.id}",
        )
    )


def list_cmd(args: argparse.Namespace) -> int:
    states = None if args.all else [QueueState.QUEUED, QueueState.HELD]

    async def work(store: Store) -> list[QueueEntry]:
        return list(await store.queue.list(states=states))

    rows = with_store(args, work)
    if args.json:
        print_json([_entry(e) for e in rows])
        return 0
    print_table(
        ("ID", "RECIPIENT", "STATE", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR"),
        [
            (
                e.id,
                e.recipient,
                e.state,
                e.attempts,
                _when(e.next_attempt_at) if e.state == QueueState.QUEUED.value else "-",
                e.last_error or "",
            )
            for e in rows
        ],
    )
    return 0


def simple_cmd(args: argparse.Namespace) -> int:
    async def work(store: Store) -> QueueEntry:
        action = store.queue.hold if args.action == "hold" else store.queue.release
        entry = await action(args.id, actor=_actor())
        await _trace(store, args.action, entry)
        return entry

    entry = with_store(args, work)
    print(f"queue entry {entry.id} ({entry.recipient}) is now {entry.state}")
    return 0


def retry_cmd(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def work(store: Store) -> str:
        entry = await store.queue.retry(args.id, actor=_actor())
        await _trace(store, "retry", entry)
        if args.later:
            return f"queue entry {entry.id} is due now; the relay will try it"
        return await _attempt_now(settings, store, entry.id)

    print(with_store(args, work))
    return 0


async def _attempt_now(settings: Settings, store: Store, entry_id: int) -> str:
    from mssgw import runtime
    from mssgw.smtp.relay import RelayWorker

    trust = runtime.build(settings)
    worker = RelayWorker(settings, store, trust, name=f"cli:{_actor()}")
    report = await worker.run_once(ids=[entry_id])
    entry = await store.queue.get(entry_id)
    if not report.groups:
        return f"queue entry {entry_id} is being delivered by another node right now"
    if entry.state == QueueState.QUEUED.value:
        return (
            f"queue entry {entry_id}: deferred ({entry.last_error}); "
            f"next attempt {_when(entry.next_attempt_at)}"
        )
    if entry.state == QueueState.DELIVERED.value:
        return f"queue entry {entry_id}: delivered to {entry.remote_mta} ({entry.last_reply})"
    detail = entry.last_error or entry.last_status or ""
    return f"queue entry {entry_id}: {entry.state}" + (f" ({detail})" if detail else "")


def fail_cmd(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def work(store: Store) -> str:
        from mssgw.smtp.relay import Notifier

        entry = await store.queue.bounce(args.id, args.reason, actor=_actor())
        await _trace(store, "fail", entry, args.reason)
        if not wants_notice(entry.notify, "failed", sender=entry.sender):
            return f"queue entry {entry.id} failed; no notice (sender or NOTIFY excludes it)"
        at = now()
        report = RecipientReport(
            final_recipient=entry.recipient,
            action="failed",
            status="5.0.0",
            reason=args.reason,
            original_recipient=entry.orcpt,
            diagnostic=args.reason,
            diagnostic_type="X-Mssgw",
            last_attempt=entry.last_attempt_at,
        )
        sent = await Notifier(settings, store, actor=_actor()).send(
            [entry], "failed", [report], at=at
        )
        notice = f"failure notice sent to {entry.sender}" if sent else "failure notice dropped"
        return f"queue entry {entry.id} failed; {notice}"

    print(with_store(args, work))
    return 0


def drop_cmd(args: argparse.Namespace) -> int:
    async def work(store: Store) -> QueueEntry:
        entry = await store.queue.drop(args.id, actor=_actor())
        await _trace(store, "drop", entry, f"queue entry {entry.id} dropped, no DSN")
        return entry

    entry = with_store(args, work)
    print(f"queue entry {entry.id} ({entry.recipient}) dropped; no notice sent")
    return 0


def history_cmd(args: argparse.Namespace) -> int:
    async def work(store: Store) -> list[QueueEvent]:
        return await store.queue.history(limit=args.limit, entry_id=args.id)

    events = with_store(args, work)
    rows: list[dict[str, Any]] = [
        {
            "at": e.at,
            "id": e.queue_id,
            "event": e.event,
            "recipient": e.recipient,
            "status": e.status,
            "actor": e.actor,
            "detail": e.detail,
        }
        for e in events
    ]
    if args.json:
        print_json(rows)
        return 0
    print_table(
        ("AT", "ID", "EVENT", "RECIPIENT", "STATUS", "DETAIL"),
        [
            (_when(r["at"]), r["id"], r["event"], r["recipient"], r["status"] or "", r["detail"])
            for r in rows
        ],
    )
    return 0
