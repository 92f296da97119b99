"""Helpers shared by the command modules: settings, store, output."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from mssgw import config
from mssgw.errors import ConfigError, StoreUnavailable, brief
from mssgw.store import Store

T = TypeVar("T")


def group(sub: Any, name: str, help: str) -> Any:
    """Add a command group whose bare invocation prints its help."""
    parser = sub.add_parser(name, help=help, description=help)
    parser.set_defaults(_parser=parser)
    return parser.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")


def settings_from(args: argparse.Namespace) -> config.Settings:
    path = config.find_config(getattr(args, "config", None))
    if path is None:
        raise ConfigError(
            "no configuration: pass --config FILE or set MSSGW_CONFIG "
            "(development: 'mssgw serve --dev' writes var/dev/mssgw.toml)"
        )
    return config.load(path)


def with_store(
    args: argparse.Namespace, work: Callable[[Store], Awaitable[T]], *, check_schema: bool = True
) -> T:
    """Open the store named by the configuration, run ``work``, close it."""
    settings = settings_from(args)

    async def run() -> T:
        store = await Store.open(settings, check_schema=check_schema)
        try:
            return await work(store)
        except DBAPIError as exc:  # the database went away or refused mid-command
            raise StoreUnavailable(f"database {store.display_url}: {brief(exc)}") from None
        finally:
            await store.close()

    return asyncio.run(run())


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Plain aligned columns, for people; scripts use ``--json``."""
    rows = [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line.rstrip())
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")
