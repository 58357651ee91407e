"""``anyrestore degrade``: write degraded copies of images (test sets, demos), never touching inputs."""

from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

from anyrestore.errors import AnyRestoreError

HELP = "write degraded copies of images with one or more operators (see README for the list)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the results")
    parser.add_argument(
        "--op",
        action="append",
        required=True,
        metavar="SPEC",
        help="operator and parameters, e.g. noise:sigma=25 or jpeg:quality=30; repeat to chain them",
    )
    parser.add_argument(
        "--regions",
        action="store_true",
        help="apply each --op in its own random rectangle (CutMix) instead of one after another",
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed; each file's seed derives from it")
    parser.add_argument("--save-labels", action="store_true", help="also write <name>_labels.png index maps")
    parser.add_argument(
        "--format", default="png", choices=["png", "keep"], help="output format (default lossless PNG)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def file_seed(base: int, path: Path) -> int:
    """A per-file seed that depends only on the base seed and the file name, not on its position."""
    return (base * 1_000_003 + zlib.crc32(path.name.encode())) % (2**63)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from anyrestore.degrade import apply_regions, apply_sequence, labels_to_index, parse_op_spec
    from anyrestore.io import list_images, read_image, write_image

    try:
        steps = [parse_op_spec(spec) for spec in args.op]
    except ValueError as exc:
        raise AnyRestoreError(str(exc)) from None
    paths = list_images(args.inputs)
    outdir = Path(args.output)
    inputs = {p.resolve() for p in paths}
    failures = 0
    for path in tqdm(paths, desc="degrade", unit="img", disable=args.quiet):
        suffix = ".png" if args.format == "png" else path.suffix
        target = outdir / f"{path.stem}{suffix}"
        try:
            if target.resolve() in inputs:
                raise AnyRestoreError(f"{target}: refusing to overwrite an input file")
            image = read_image(path)
            generator = torch.Generator().manual_seed(file_seed(args.seed, path))
            apply = apply_regions if args.regions else apply_sequence
            try:
                out, labels = apply(image.pixels[None], steps, generator=generator)
            except ValueError as exc:
                raise AnyRestoreError(f"{path}: {exc}") from None
            write_image(target, image.with_pixels(out))
            if args.save_labels:
                index = labels_to_index(labels).to(torch.float32) / 255.0  # (1, H, W): value = step number
                write_image(outdir / f"{path.stem}_labels.png", index)
        except AnyRestoreError as exc:
            failures += 1
            print(f"anyrestore degrade: error: {exc}", file=sys.stderr)
    if failures:
        print(f"anyrestore degrade: {failures} of {len(paths)} file(s) failed", file=sys.stderr)
        return 1
    return 0
