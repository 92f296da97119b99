"""The ``mssgw`` command: one entry point, one module per command group.

Each group module exposes ``register(subparsers)`` and sets ``handler`` on its
parsers: a function ``(args) -> int``.  ``main`` turns every ``MssgwError``
into one line on stderr and a non-zero exit; nothing prints a traceback to a
user (a bug still does, on purpose, so it gets reported).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mssgw import __version__
from mssgw.errors import MssgwError

#: Command groups, in the order ``mssgw --help`` lists them.
GROUPS = (
    "serve",
    "domain",
    "mailbox",
    "password",
    "delegate",
    "pki",
    "trust",
    "queue",
    "directory",
    "trace",
    "db",
    "demo",
)


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line, like every other refusal."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mssgw",
        description="MSSanté operator gateway. Every command has --help.",
    )
    parser.add_argument("--version", action="version", version=f"mssgw {__version__}")
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="configuration file (default: $MSSGW_CONFIG, then /etc/mssgw/mssgw.toml)",
    )
    sub = parser.add_subparsers(dest="group", metavar="COMMAND", parser_class=_Parser)
    for name in GROUPS:
        try:
            module = importlib.import_module(f"mssgw.cli.{name}")
        except ModuleNotFoundError as exc:  # a group whose package is not installed
            if exc.name != f"mssgw.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        target = getattr(args, "_parser", parser)
        target.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args) or 0)
    except MssgwError as exc:
        print(f"mssgw: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mssgw: interrupted", file=sys.stderr)
        return 130
