"""``anyrestore analyze``: which degradations an image carries, per image (ABAIR's estimator, or the stage
estimates of the embedded ``default-v1``) and per pixel (an ABAIR segmentation head, drawn as a coloured
overlay with a legend). ``--model`` takes what every command takes (a file or an embedded name); a model
without the hook it needs is refused in one line before any image is read. Without ``--model`` it uses
``default-v1``: the default model (v2) has an estimator, but one that tells only JPEG, haze and low light
apart (41% of validation crops right, docs/default-model-v2.md), so it offers no analysis."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from anyrestore.errors import AnyRestoreError

HELP = "print each image's degradation mix (ABAIR estimator) and write per-pixel maps (-o)"
# The embedded model that analyses when no --model is given: the one whose estimates can be trusted.
ANALYZE_MODEL = "default-v1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns")
    parser.add_argument(
        "--model",
        default=None,
        metavar="FILE|NAME",
        help="a model with a degradation estimator: an ABAIR bundle (abair build), or an embedded model "
        f"name (default: {ANALYZE_MODEL}, which reports JPEG and blur; -o needs a bundle's "
        "segmentation head)",
    )
    parser.add_argument(
        "-o", "--output", default=None, metavar="DIR", help="write <name>_degradations.png overlays here"
    )
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the mixes as JSON")
    parser.add_argument(
        "--tile",
        type=int,
        default=512,
        help="tile size for the per-pixel map, at least 64 (default 512; 0: whole image)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace output files that exist already (default: refuse)"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from anyrestore.cli.outputs import check_output_folder, check_outputs
    from anyrestore.devices import resolve_device
    from anyrestore.inference import crop_to, find_analyzer, find_segmenter, pad_to_multiple, tiled_forward
    from anyrestore.inference.restorer import MIN_TILE, check_tiling
    from anyrestore.io import atomic_output, list_images, read_image, write_image
    from anyrestore.methods.abair.overlay import render_overlay
    from anyrestore.models.zoo import resolve_model

    # Everything that can be checked without the model is checked before it loads.
    overlap = 32  # tiled_forward's default
    check_tiling(args.tile, overlap, minimum=MIN_TILE)
    target_device = resolve_device(args.device)
    problems: list[AnyRestoreError] = []
    paths = list_images(args.inputs, problems=problems)
    for problem in problems:
        print(f"anyrestore analyze: error: {problem}", file=sys.stderr)
    if problems and not paths:
        return 1
    targets: dict[Path, Path] = {}
    if args.output is not None:
        check_output_folder(Path(args.output))
        targets = {p: Path(args.output) / f"{p.stem}_degradations.png" for p in paths}
    if args.json is not None:
        check_output_folder(Path(args.json).parent)
        targets[Path("--json")] = Path(args.json)
    check_outputs(targets, inputs=paths, overwrite=args.overwrite)

    name = args.model or ANALYZE_MODEL
    loaded = resolve_model(name, device=target_device)
    analyze = find_analyzer(loaded)
    if analyze is None:
        raise AnyRestoreError(
            f"{name}: this model has no degradation estimator (analyze needs an ABAIR bundle with "
            f"its estimator trained, or {ANALYZE_MODEL})"
        )
    segmenter = find_segmenter(loaded) if args.output is not None else None
    if args.output is not None and segmenter is None:
        raise AnyRestoreError(f"{name}: this model has no segmentation head for per-pixel maps (-o)")
    if not paths:
        raise AnyRestoreError("no images found in the given inputs")
    device = next(loaded.module.parameters()).device
    multiple = max(1, loaded.descriptor.size_multiple)
    mixes: dict[str, dict[str, float]] = {}
    failures = len(problems)
    for path in paths:
        try:
            x = read_image(path).pixels[None].to(device)
            with torch.no_grad():
                mix = {k: float(v) for k, v in analyze(x).items()}
            mixes[str(path)] = mix
            shown = ", ".join(f"{k} {v:.2f}" for k, v in sorted(mix.items(), key=lambda kv: -kv[1]))
            print(f"{path}: {shown}")
            if segmenter is not None:
                segment_logits, classes = segmenter
                padded, size = pad_to_multiple(x, multiple)
                with torch.no_grad():
                    if args.tile:
                        logits = tiled_forward(
                            segment_logits, padded, tile=args.tile, overlap=overlap, multiple=multiple
                        )
                    else:
                        logits = segment_logits(padded)
                index = crop_to(logits, size).argmax(1)[0]
                overlay = render_overlay(x[0], index, classes)
                write_image(targets[path], overlay)
        except AnyRestoreError as exc:
            failures += 1
            print(f"anyrestore analyze: error: {exc}", file=sys.stderr)
    if args.json is not None:
        with atomic_output(Path(args.json)) as tmp:
            tmp.write_text(json.dumps(mixes, indent=2) + "\n")
    return 1 if failures else 0
