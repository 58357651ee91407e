"""``anyrestore evaluate``: paper-style PSNR/SSIM tables for a folder of results."""

from __future__ import annotations

import argparse
import sys

from anyrestore.evaluate import PRESETS

HELP = "PSNR/SSIM of restored images against ground truths, paired by file name"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, help="folder of restored (or degraded) images")
    parser.add_argument("--gt", required=True, help="folder of ground-truth images with the same names")
    parser.add_argument(
        "--preset",
        default="basicsr",
        choices=sorted(PRESETS),
        help="metric conventions (default basicsr): "
        + "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values()),
    )
    parser.add_argument("--crop-border", type=int, default=None, help="pixels dropped on each side")
    parser.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from anyrestore.evaluate import evaluate_folders

    table = evaluate_folders(args.pred, args.gt, args.preset, args.crop_border, progress=not args.quiet)
    for problem in table.problems:
        print(f"anyrestore evaluate: error: {problem}", file=sys.stderr)
    if table.images:
        print(table.format())
    if args.json:
        table.write_json(args.json)
    return 1 if table.problems else 0
