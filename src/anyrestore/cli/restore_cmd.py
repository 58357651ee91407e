"""``anyrestore restore``: restore photos with the embedded default model or any supported checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from anyrestore.errors import AnyRestoreError

if TYPE_CHECKING:
    import torch

    from anyrestore.inference import Restorer
    from anyrestore.inference.restorer import InferenceError
    from anyrestore.io import ImageData

HELP = "restore images (files, folders, globs) with the default model or --model FILE|NAME"
# Largest image restored, as ``serve`` accepts (serve.app.DEFAULT_MAX_PIXELS): a 169-megapixel PNG
# reached 6.9 GB of memory before restoring started. Kept here so that --help imports nothing heavy.
MAX_MEGAPIXELS = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("-o", "--output", default="restored", metavar="OUTDIR", help="default: ./restored")
    parser.add_argument(
        "--model", default=None, help="checkpoint file or embedded model name (default model)"
    )
    parser.add_argument(
        "--adapter",
        default=None,
        metavar="FILE",
        help="adapter file (an adapter run's adapter.safetensors) to apply to --model, its base",
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile size in pixels, at least 64 and twice the overlap; 0 = never tile; default: auto",
    )
    parser.add_argument("--tile-overlap", type=int, default=32, help="overlap between tiles (default 32)")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="arithmetic of the forward pass; bf16/fp16 are faster on a GPU (default fp32)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--self-ensemble",
        nargs="?",
        const="x8",
        default=None,
        choices=["off", "flips", "x8"],
        help="average the outputs for flipped (flips: 4 passes) or flipped and transposed (x8) inputs; "
        "alone means x8; default: what the model recommends (default-v1: flips; the default model: off)",
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="channels-last memory format (GPU speed)"
    )
    parser.add_argument(
        "--compile", action="store_true", help="torch.compile the model (slow start, fast run)"
    )
    parser.add_argument(
        "--format",
        default="keep",
        choices=["keep", "png", "jpg", "tif", "webp"],
        help="output file format; keep: the input's own (default)",
    )
    parser.add_argument("--suffix", default="", help="text added to each output name, e.g. _restored")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace output files that exist already (default: refuse)"
    )
    parser.add_argument(
        "--max-megapixels",
        type=float,
        metavar="MP",
        default=MAX_MEGAPIXELS,
        help=f"larger images are reported and skipped (default {MAX_MEGAPIXELS:g}, as serve)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def output_path(outdir: Path, source: Path, fmt: str, suffix: str) -> Path:
    ext = source.suffix if fmt == "keep" else f".{fmt}"
    return outdir / f"{source.stem}{suffix}{ext}"


def batchable(restorer: Restorer, first: ImageData, image: ImageData) -> bool:
    """Whether ``image`` may join a batch that starts with ``first``: the same pixel shape, and for a model
    that reads JPEG side information the same tables (a batch takes one set)."""
    if first.pixels.shape != image.pixels.shape:
        return False
    if not restorer.takes_side:
        return True
    import torch

    a, b = first.jpeg_tables, image.jpeg_tables
    if a is None or b is None:
        return a is b
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def restore_batch(restorer: Restorer, images: list[ImageData]) -> list[torch.Tensor | InferenceError]:
    """Each image's restored pixels, from one call of ``restorer`` on them all (images that
    :func:`batchable` admits together); one by one if that fails, with each image's own error in its
    place."""
    import torch

    from anyrestore.inference.restorer import InferenceError

    if len(images) > 1:
        stacked = torch.stack([im.pixels for im in images])
        try:
            return list(restorer(stacked, jpeg_tables=images[0].jpeg_tables))
        except InferenceError:
            pass  # one by one, so that the error names its image
    out: list[torch.Tensor | InferenceError] = []
    for image in images:
        try:
            out.append(restorer(image.pixels, jpeg_tables=image.jpeg_tables))
        except InferenceError as exc:
            out.append(exc)
    return out


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    import anyrestore.models  # noqa: F401  (registers the architectures)
    from anyrestore.cli.outputs import check_output_folder, check_outputs
    from anyrestore.devices import resolve_device
    from anyrestore.inference import Restorer
    from anyrestore.inference.restorer import MIN_TILE, InferenceError, check_tiling
    from anyrestore.io import MAX_PIXELS, list_images, read_image, write_image
    from anyrestore.models.zoo import resolve_model

    # Everything that can be checked without the model is checked before it loads.
    check_tiling(args.tile, args.tile_overlap, minimum=MIN_TILE)
    if not args.max_megapixels > 0:
        raise AnyRestoreError(f"--max-megapixels {args.max_megapixels:g}: must be above 0")
    max_pixels = int(min(args.max_megapixels * 1e6, MAX_PIXELS))  # Pillow's own limit stays (inf: that)
    device = resolve_device(args.device)
    problems: list[AnyRestoreError] = []
    paths = list_images(args.inputs, problems=problems)
    for problem in problems:
        print(f"anyrestore restore: error: {problem}", file=sys.stderr)
    if not paths:
        if problems:
            return 1
        raise AnyRestoreError("no images found in the given inputs")
    outdir = Path(args.output)
    check_output_folder(outdir)
    targets = {path: output_path(outdir, path, args.format, args.suffix) for path in paths}
    check_outputs(targets, inputs=paths, overwrite=args.overwrite)

    if args.adapter is None:
        loaded = resolve_model(args.model)
    else:
        from anyrestore.inference.adapters import load_adapted

        loaded = load_adapted(args.model, args.adapter)
    restorer = Restorer(
        loaded,
        device=device,
        precision=args.precision,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        self_ensemble=args.self_ensemble,
        channels_last=args.channels_last,
        compile=args.compile,
    )
    failures = len(problems)
    progress = tqdm(total=len(paths), desc="restore", unit="img", disable=args.quiet)

    def save(path: Path, restored: ImageData) -> None:
        target = targets[path]
        bit_depth = restored.bit_depth if target.suffix.lower() in (".png", ".tif", ".tiff") else 8
        alpha = restored.alpha if target.suffix.lower() in (".png", ".tif", ".tiff", ".webp") else None
        write_image(
            target,
            restored.pixels,
            alpha=alpha,
            bit_depth=bit_depth,
            grayscale=restored.grayscale,
            icc_profile=restored.icc_profile,
        )

    def failed(exc: AnyRestoreError) -> None:
        nonlocal failures
        failures += 1
        tqdm.write(f"anyrestore restore: error: {exc}", file=sys.stderr)

    def flush(batch: list[tuple[Path, ImageData]]) -> None:
        restored = restore_batch(restorer, [image for _, image in batch])
        for (path, image), pixels in zip(batch, restored, strict=True):
            try:
                if isinstance(pixels, InferenceError):  # about the model, not the file: say which image
                    raise AnyRestoreError(f"{path}: {pixels}")
                save(path, image.with_pixels(pixels))
            except AnyRestoreError as exc:
                failed(exc)
            progress.update(1)

    # Consecutive images of one size (and JPEG tables, for a model that reads them) go through the model
    # together, as many as one pass has memory for (Restorer.batch_capacity).
    batch: list[tuple[Path, ImageData]] = []
    for path in paths:
        try:
            image = read_image(path, max_pixels=max_pixels)
        except AnyRestoreError as exc:
            failed(exc)
            progress.update(1)
            continue
        if batch and not batchable(restorer, batch[0][1], image):
            flush(batch)
            batch = []
        batch.append((path, image))
        if len(batch) >= restorer.batch_capacity(*image.pixels.shape[-2:]):
            flush(batch)
            batch = []
    flush(batch)
    progress.close()
    done = len(paths) - (failures - len(problems))
    if not args.quiet:
        total = len(paths) + len(problems)
        print(f"restored {done} of {total} input(s) into {outdir}", file=sys.stderr)
    return 1 if failures else 0
