"""``anyrestore mac``: rank a model's layers (units) for RAM's selective fine-tuning."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "rank a model's layers by mask attribute conductance (MAC), integrated gradients or at random"

DATA_HELP = (
    "images to attribute; repeatable. 'clean=DIR,ops=OP+OP+...' degrades clean photos, each OP "
    "(a degradation spec as for 'anyrestore degrade', e.g. noise:sigma=25+blur:sigma=2+jpeg:quality=30) "
    "being one task; 'lq=DIR' (or DIR) uses degraded images as they are, one task per folder"
)

# RAM fine-tunes 10% of SwinIR's units and 30% of PromptIR's; the plot marks that share.
DEFAULT_RATIOS = {"ram_swinir": 0.1, "swinir": 0.1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        metavar="FILE|NAME",
        help="checkpoint file (ours or a released one) or embedded model name, e.g. default",
    )
    parser.add_argument("--data", action="append", default=[], metavar="SPEC", help=DATA_HELP)
    parser.add_argument("--method", choices=("mac", "ig", "random"), default="mac", help="ranking method")
    parser.add_argument("--steps", type=int, default=200, help="path steps per image (default 200)")
    parser.add_argument("--per-task", type=int, default=10, help="images per task (default 10)")
    parser.add_argument(
        "--crop", type=int, default=64, help="centre crop size, 0 for whole images (default 64)"
    )
    parser.add_argument("--batch", type=int, default=16, help="path points per forward pass (memory bound)")
    parser.add_argument("-o", "--output", required=True, metavar="TSV", help="ranking file to write")
    parser.add_argument("--plot", metavar="PNG", help="also plot the scores by depth")
    parser.add_argument("--ratio", type=float, help="share of units to mark/report (RAM: 0.3, SwinIR 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of image choice, degradations and masks")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from anyrestore.attribution import (
        AttributionError,
        freeze_plan,
        integrated_gradients,
        load_attribution_images,
        mac,
        plot_ranking,
        random_ranking,
        write_ranking,
    )
    from anyrestore.devices import resolve_device
    from anyrestore.models.normalize import as_unit_range
    from anyrestore.models.zoo import resolve_model

    for name in ("steps", "per_task", "batch"):
        if getattr(args, name) < 1:
            raise AttributionError(f"--{name.replace('_', '-')} must be at least 1")
    device = resolve_device(args.device)
    loaded = resolve_model(args.model, device=device)
    model = as_unit_range(loaded.module.float(), loaded.descriptor)
    ratio = args.ratio if args.ratio is not None else DEFAULT_RATIOS.get(loaded.descriptor.architecture, 0.3)
    meta = {"model": Path(args.model).name, "architecture": loaded.descriptor.architecture}

    if args.method == "random":
        ranking = random_ranking(model, args.seed)
        ranking.meta.update(meta)
    else:
        if not args.data:
            raise AttributionError(f"--method {args.method} needs --data (see --help)")
        samples = load_attribution_images(args.data, per_task=args.per_task, crop=args.crop, seed=args.seed)
        tasks = sorted({s.task for s in samples})
        print(f"{len(samples)} images from {len(tasks)} task(s): {', '.join(tasks)}")
        images = [s.image for s in samples]
        if args.method == "mac":
            result = mac(
                model,
                images,
                steps=args.steps,
                seed=args.seed,
                batch_size=args.batch,
                progress=not args.quiet,
            )
        else:
            result = integrated_gradients(
                model, images, steps=args.steps, batch_size=args.batch, progress=not args.quiet
            )
        ranking = result.ranking({**meta, "seed": str(args.seed), "tasks": " ".join(tasks)})

    write_ranking(args.output, ranking)
    plan = freeze_plan(model, ranking, ratio)
    print(f"ranked {len(ranking)} units ({args.method}) -> {args.output}")
    print(f"top {ratio:.0%}: {plan.summary(model)}")
    for unit, score in list(zip(ranking.units, ranking.scores, strict=True))[:5]:
        print(f"  {score:.4g}  {unit}")
    if args.plot:
        plot_ranking(args.plot, ranking, ratio)
        print(f"plot -> {args.plot}")
    return 0
