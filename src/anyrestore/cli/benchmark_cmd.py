"""``anyrestore benchmark``: run models on a paper's test sets; print its table, published beside measured."""

from __future__ import annotations

import argparse
import sys

from anyrestore.benchmark.suite import suite_titles

HELP = "reproduce a paper's table: run models on a suite's test sets, published numbers beside measured"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    titles = suite_titles()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "suites:\n" + "\n".join(f"  {name:<18} {title}" for name, title in titles.items())
    parser.add_argument(
        "--suite", required=True, metavar="NAME", help=f"{', '.join(titles)}, or a suite .yaml file"
    )
    parser.add_argument("--root", required=True, metavar="DIR", help="folder holding the test sets")
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="M",
        help="checkpoint file or embedded model name; repeat to compare several",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the tables and per-set means as JSON")
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="per-image scores (resumable); default: benchmark-results/<suite>",
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="GLOB", help="run only the sets matching (repeatable)"
    )
    parser.add_argument(
        "--reference", default=None, metavar="ROW", help="published row to take differences against"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="default fp32, as the papers"
    )
    parser.add_argument("--tile", type=int, default=None, help="tile size; default: the suite's (0 = whole)")
    parser.add_argument(
        "--self-ensemble", default="off", choices=["off", "flips", "x8"], help="default off, as the papers"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from anyrestore.benchmark.report import format_run, write_json
    from anyrestore.benchmark.runner import run_suite
    from anyrestore.benchmark.suite import load_suite

    suite = load_suite(args.suite)
    result = run_suite(
        suite,
        args.root,
        args.model,
        out_dir=args.out or Path("benchmark-results") / suite.name,
        only=args.only,
        device=args.device,
        precision=args.precision,
        tile=args.tile,
        self_ensemble=args.self_ensemble,
        progress=not args.quiet,
    )
    print(format_run(result, args.reference))
    if args.json:
        write_json(result, args.json, args.reference)
    if result.missing and len(result.missing) == len(result.selected):
        print("anyrestore benchmark: no test set found under the root", file=sys.stderr)
        return 1
    failed = any(r.status == "failed" for m in result.models for r in m.sets.values())
    return 1 if failed else 0
