"""The ``anyrestore`` command: one explicit table of subcommands, each in its own module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from anyrestore import __version__
from anyrestore.cli import (
    abair_cmd,
    analyze_cmd,
    benchmark_cmd,
    degrade_cmd,
    evaluate_cmd,
    export_cmd,
    info_cmd,
    mac_cmd,
    recipes_cmd,
    restore_cmd,
    serve_cmd,
    train_cmd,
)
from anyrestore.errors import AnyRestoreError

# name -> module with ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
COMMANDS = {
    "restore": restore_cmd,
    "info": info_cmd,
    "degrade": degrade_cmd,
    "evaluate": evaluate_cmd,
    "benchmark": benchmark_cmd,
    "train": train_cmd,
    "recipes": recipes_cmd,
    "mac": mac_cmd,
    "serve": serve_cmd,
    "export": export_cmd,
    "abair": abair_cmd,
    "analyze": analyze_cmd,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anyrestore",
        description="Blind all-in-one image restoration: restore, degrade, evaluate, train.",
    )
    parser.add_argument("--version", action="version", version=f"anyrestore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, module in COMMANDS.items():
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except AnyRestoreError as exc:
        print(f"anyrestore {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("anyrestore: interrupted", file=sys.stderr)
        return 130
