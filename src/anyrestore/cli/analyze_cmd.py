"""``anyrestore analyze``: which degradations an image carries, per image (ABAIR's estimator) and per
pixel (its segmentation head, drawn as a coloured overlay with a legend)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from anyrestore.errors import AnyRestoreError

HELP = "print each image's degradation mix (ABAIR estimator) and write per-pixel maps (-o)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns")
    parser.add_argument("--model", required=True, metavar="BUNDLE", help="an ABAIR bundle (abair build)")
    parser.add_argument(
        "-o", "--output", default=None, metavar="DIR", help="write <name>_degradations.png overlays here"
    )
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the mixes as JSON")
    parser.add_argument("--tile", type=int, default=512, help="tile size for the per-pixel map (default 512)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")


def run(args: argparse.Namespace) -> int:
    import torch

    from anyrestore.inference import crop_to, pad_to_multiple, resolve_device, tiled_forward
    from anyrestore.io import atomic_output, list_images, read_image, write_image
    from anyrestore.methods.abair import load_bundle
    from anyrestore.methods.abair.overlay import render_overlay

    model = load_bundle(args.model, device=resolve_device(args.device))
    if model.estimator is None:
        raise AnyRestoreError(f"{args.model}: the bundle has no estimator yet (finish abair build)")
    if args.output is not None and model.seg_head is None:
        raise AnyRestoreError(f"{args.model}: the bundle has no segmentation head for per-pixel maps")
    paths = list_images(args.inputs)
    if not paths:
        raise AnyRestoreError("no images found in the given inputs")
    device = next(model.parameters()).device
    multiple = max(1, model.descriptor.size_multiple)
    mixes: dict[str, dict[str, float]] = {}
    failures = 0
    for path in paths:
        try:
            x = read_image(path).pixels[None].to(device)
            with torch.no_grad():
                mix = model.analyze(x)
            mixes[str(path)] = mix
            shown = ", ".join(f"{k} {v:.2f}" for k, v in sorted(mix.items(), key=lambda kv: -kv[1]))
            print(f"{path}: {shown}")
            if args.output is not None:
                padded, size = pad_to_multiple(x, multiple)
                with torch.no_grad():
                    logits = tiled_forward(model.segment_logits, padded, tile=args.tile, multiple=multiple)
                index = crop_to(logits, size).argmax(1)[0]
                overlay = render_overlay(x[0], index, model.seg_classes)
                write_image(Path(args.output) / f"{path.stem}_degradations.png", overlay)
        except AnyRestoreError as exc:
            failures += 1
            print(f"anyrestore analyze: error: {exc}", file=sys.stderr)
    if args.json is not None:
        with atomic_output(Path(args.json)) as tmp:
            tmp.write_text(json.dumps(mixes, indent=2) + "\n")
    return 1 if failures else 0
