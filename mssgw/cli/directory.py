"""``mssgw directory``: sync the national directory into the replica, look up, publish.

Meant for cron (see docs/directory.md): one line per outcome on stdout, the
reason of a refusal on stderr with a non-zero exit, a progress bar only on
a terminal.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any

from mssgw.cli._common import group, print_json, print_table, settings_from, with_store
from mssgw.directory.base import DirectoryError, Replica, Source, SyncRefused
from mssgw.directory.entry import DirectoryEntry
from mssgw.directory.extraction import ExtractionSource
from mssgw.directory.fhir import FhirSource
from mssgw.directory.ldap_replica import LdapReplica
from mssgw.directory.local import LocalSource, entries_from_local
from mssgw.directory.lookup import DirectoryLookup, ThreadedBackend
from mssgw.directory.publish import publish
from mssgw.directory.settings import DirectorySettings, from_settings, read_secret
from mssgw.directory.sql_replica import SqlReplica, last_runs, last_watermark, record_run
from mssgw.directory.sync import Guards, SyncReport, run_sync
from mssgw.directory.upstream_ldap import UpstreamLdapSource
from mssgw.store import Store


def register(sub: Any) -> None:
    cmds = group(sub, "directory", "national directory replica: sync, lookup, stats, publish")
    sync = cmds.add_parser("sync", help="bring a source into the replica (cron)")
    sync.add_argument("--source", required=True,
                      help="extraction:FILE.zip | fhir | ldap:URL | local (our mailboxes)")
    sync.add_argument("--replica", choices=("sql", "ldap"), help="default: directory.replica")
    sync.add_argument("--max-removal-share", type=float, metavar="F",
                      help="refuse a full source removing more than this share (default 0.10)")
    sync.add_argument("--max-invalid-share", type=float, metavar="F",
                      help="refuse a source with more invalid lines than this (default 0.01)")
    sync.add_argument("--dry-run", action="store_true", help="report, change nothing")
    sync.add_argument("--json", action="store_true", help="print the report as JSON")
    sync.set_defaults(handler=cmd_sync)
    look = cmds.add_parser("lookup", help="what the replica says about an address")
    look.add_argument("address")
    look.add_argument("--replica", choices=("sql", "ldap"))
    look.add_argument("--json", action="store_true")
    look.set_defaults(handler=cmd_lookup)
    stats = cmds.add_parser("stats", help="entries per type and the last sync reports")
    stats.add_argument("--replica", choices=("sql", "ldap"))
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(handler=cmd_stats)
    pub = cmds.add_parser("publish", help="send our mailboxes' changes to the national directory")
    pub.add_argument("--replica", choices=("sql", "ldap"))
    pub.add_argument("--dry-run", action="store_true", help="print the PATCH requests only")
    pub.set_defaults(handler=cmd_publish)


# --------------------------------------------------------------------------- building


def make_replica(kind: str, ds: DirectorySettings, store: Store) -> Replica:
    if kind == "ldap":
        if not ds.ldap_url:
            raise DirectoryError("directory.ldap_url is not set; the LDAP replica needs it")
        password = read_secret(ds.ldap_password_file, "the LDAP replica password")
        return LdapReplica(ds.ldap_url, ds.ldap_bind_dn, password, ds.ldap_base,
                           timeout=max(ds.lookup_timeout, 10.0))
    return SqlReplica.from_store(store, ds.batch_size)


async def make_source(spec: str, ds: DirectorySettings, store: Store) -> Source:
    kind, _, arg = spec.partition(":")
    if kind == "extraction" and arg:
        return ExtractionSource(arg)
    if kind == "fhir":
        key = read_secret(ds.fhir_api_key_file, "the FHIR API key")
        since = await last_watermark(store.engine, "fhir")
        return FhirSource(arg or ds.fhir_url, key, since=since or None)
    if kind == "ldap" and arg:
        password = read_secret(ds.upstream_password_file, "the upstream LDAP password")
        return UpstreamLdapSource(arg, "", ds.upstream_bind_dn, password)
    if kind == "local":
        return LocalSource(entries_from_local(await store.mailboxes.list()))
    raise DirectoryError(
        f"--source {spec!r}: expected extraction:FILE.zip, fhir, ldap:URL or local"
    )


def _settings(args: argparse.Namespace) -> DirectorySettings:
    return from_settings(settings_from(args))


def _close(replica: Replica) -> None:
    if isinstance(replica, LdapReplica):
        replica.close()


# --------------------------------------------------------------------------- commands


def cmd_sync(args: argparse.Namespace) -> int:
    ds = _settings(args)
    guards = Guards(
        ds.max_removal_share if args.max_removal_share is None else args.max_removal_share,
        ds.max_invalid_share if args.max_invalid_share is None else args.max_invalid_share,
    )

    async def work(store: Store) -> SyncReport:
        source = await make_source(args.source, ds, store)
        replica = make_replica(args.replica or ds.replica, ds, store)
        try:
            report = await run_sync(source, replica, guards, dry_run=args.dry_run,
                                    progress=sys.stderr)
        except SyncRefused as refused:
            if isinstance(refused.report, SyncReport):
                await record_run(store.write_engine, refused.report)
                _print_invalid(refused.report)
            raise
        finally:
            _close(replica)
        if not args.dry_run:
            await record_run(store.write_engine, report, getattr(source, "watermark", ""))
        return report

    report = with_store(args, work)
    if args.json:
        print_json(report.as_dict())
    else:
        print(report.summary())
        _print_invalid(report)
    return 0


def _print_invalid(report: SyncReport, limit: int = 10) -> None:
    for line_no, reason in report.invalid_details[:limit]:
        print(f"  line {line_no}: {reason}", file=sys.stderr)
    if report.invalid > limit:
        print(f"  ... {report.invalid - limit} more invalid lines", file=sys.stderr)


def cmd_lookup(args: argparse.Namespace) -> int:
    ds = _settings(args)

    async def work(store: Store) -> DirectoryEntry | None:
        replica = make_replica(args.replica or ds.replica, ds, store)
        backend = ThreadedBackend(replica.get_blocking) if isinstance(replica, LdapReplica) \
            else replica
        try:
            return await DirectoryLookup.from_settings(backend, ds).find(args.address)
        finally:
            _close(replica)

    entry = with_store(args, work)
    if entry is None:
        print(f"{args.address}: not in the directory replica", file=sys.stderr)
        return 1
    values = {k: v for k, v in asdict(entry).items() if v not in ("", False)}
    if args.json:
        print_json(values)
    else:
        print_table(("field", "value"), values.items())
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    ds = _settings(args)

    async def work(store: Store) -> tuple[dict[str, int], list[dict[str, Any]]]:
        replica = make_replica(args.replica or ds.replica, ds, store)
        try:
            return await replica.counts(), await last_runs(store.engine)
        finally:
            _close(replica)

    counts, runs = with_store(args, work)
    if args.json:
        print_json({"counts": counts, "runs": runs})
        return 0
    print_table(("entries", "count"), sorted(counts.items()))
    print()
    print_table(
        ("started", "source", "replica", "status", "+", "~", "-", "invalid", "seconds"),
        [(r["started_at"], r["source"], r["replica"], r["status"], r["added"], r["changed"],
          r["removed"], r["invalid"], f"{r['duration']:.1f}") for r in runs],
    )
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    ds = _settings(args)
    if not ds.publish_url and not args.dry_run:
        raise DirectoryError("directory.publish_url is not set; use --dry-run to see requests")
    key = "" if args.dry_run else read_secret(ds.fhir_api_key_file, "the FHIR API key")

    async def work(store: Store) -> Any:
        replica = make_replica(args.replica or ds.replica, ds, store)
        try:
            entries = await replica.local_entries()
        finally:
            _close(replica)
        return await publish(store.engine, ds.publish_url or "https://publish.invalid/fhir/v2",
                             key, entries, dry_run=args.dry_run,
                             write_engine=store.write_engine)

    report = with_store(args, work)
    if args.dry_run:
        for req in report.requests:
            print(req.describe())
        print(f"{len(report.requests)} request(s), none sent (dry run)", file=sys.stderr)
        return 0
    print(f"published: {report.sent} sent, {len(report.failed)} failed")
    for address, reason in report.failed:
        print(f"  {address}: {reason}", file=sys.stderr)
    return 1 if report.failed else 0
