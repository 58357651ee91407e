"""``anyrestore evaluate``: paper-style PSNR/SSIM tables for a folder of results."""

from __future__ import annotations

import argparse

from anyrestore.evaluate import PRESETS, evaluate_folders

HELP = "PSNR/SSIM of restored images against ground truths, paired by file name"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, help="folder of restored (or degraded) images")
    parser.add_argument("--gt", required=True, help="folder of ground-truth images with the same names")
    parser.add_argument("--preset", default="basicsr", choices=sorted(PRESETS), help="metric conventions")
    parser.add_argument("--crop-border", type=int, default=None, help="pixels dropped on each side")
    parser.add_argument("--json", metavar="FILE", help="also write the table as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    table = evaluate_folders(args.pred, args.gt, args.preset, args.crop_border, progress=not args.quiet)
    print(table.format())
    if args.json:
        table.write_json(args.json)
    return 0
