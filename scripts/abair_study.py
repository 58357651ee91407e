"""A smoke-scale ABAIR study on one CPU thread (about 10 minutes): blending modes against the backbone,
the baselines and an oracle, on a held-out photo.

    python scripts/abair_study.py [--out runs/abair_study] [--recipe abair_tiny3] [--pretrain 250]
                                  [--adapt 100] [--estimate 400] [--fresh]

Clean photos from scikit-image (chelsea, coffee, rocket and the left stereo_motorcycle view, long side
256) train a tiny PromptIR through the three phases of the packaged recipe (``abair_tiny3``: rain, haze,
noise; ``abair_tiny`` adds blur and low light), run in-process with :func:`anyrestore.methods.abair.build`
exactly as ``anyrestore abair build`` runs them. The held-out astronaut (256 x 256) is then cut into
96 x 96 crops, degraded with fixed parameters (each degradation alone and two mixtures), and restored by:

- ``backbone``: the Phase I model alone; ``sum`` / ``average``: every adapter at weight 1 / 1/K (the
  paper's baselines); ``onehot`` / ``soft``: the estimator's choice / weights; ``oracle``: the best single
  adapter per crop (an upper bound for one-hot).

PSNR on RGB (``rgb`` preset, no border crop), mean over crops; the estimator's top-1 is a hit when its
most probable class is one of the degradations actually applied. Results go to ``<out>/results.md`` and
``<out>/results.json``. Finished phases are reused when the script runs again with the same settings.

The paper-scale study is the same evaluation on the packaged ``abair_5deg`` / ``abair_3deg`` recipes
(``anyrestore abair build abair_5deg data_root=/data --out runs/abair5``), on Rain100L, SOTS outdoor,
BSD68, GoPro and LOL (``anyrestore evaluate``), and for extensibility
``anyrestore abair add-degradation runs/abair5/bundle.safetensors --name jpeg --op jpeg:quality=10..60``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from anyrestore.degrade import apply_sequence
from anyrestore.evaluate import psnr
from anyrestore.io import atomic_output
from anyrestore.methods.abair import build, load_bundle
from anyrestore.train import load_recipe

TRAIN_PHOTOS = ("chelsea", "coffee", "rocket", "stereo_motorcycle")
TEST_PHOTO = "astronaut"
MAX_SIDE = 256
CROP = 96
# Fixed test degradations (ours), alone and in two mixtures; cases the model has no classes for are skipped.
CASES: dict[str, tuple[str, ...]] = {
    "rain": ("rain:density=0.006,length=25,angle=10",),
    "haze": ("haze:beta=1.5",),
    "noise": ("noise:sigma=25",),
    "blur": ("blur:sigma=2",),
    "low_light": ("low_light:gamma=2,gain=0.3",),
    "haze+noise": ("haze:beta=1", "noise:sigma=15"),
    "rain+noise": ("rain:density=0.004", "noise:sigma=15"),
}
METHODS = ("input", "backbone", "sum", "average", "onehot", "soft", "oracle")


def _photo(name: str) -> Image.Image:
    from skimage import data

    array = getattr(data, name)()
    if name == "stereo_motorcycle":
        array = array[0]
    im = Image.fromarray(array).convert("RGB")
    scale = MAX_SIDE / max(im.size)
    return im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)


def write_photos(root: Path) -> Path:
    """Training photos in ``root/train``; the held-out photo as ``root/test.png`` (256 x 256)."""
    (root / "train").mkdir(parents=True, exist_ok=True)
    for name in TRAIN_PHOTOS:
        _photo(name).save(root / "train" / f"{name}.png")
    from skimage import data

    Image.fromarray(data.astronaut()).resize((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS).save(
        root / "test.png"
    )
    return root


def overrides(args: argparse.Namespace, photos: Path) -> list[str]:
    def warm(n: int) -> int:
        return min(20, n // 10)

    return [
        f"data_root={photos}",
        "data.val=null",
        f"data.train.batch_size={args.batch}",
        f"data.train.sets.0.patch_size={args.patch}",
        f"schedule.iterations={args.pretrain}",
        f"schedule.warmup={warm(args.pretrain)}",
        f"checkpoint.every={args.pretrain}",
        "log.every=50",
        f"seed={args.seed}",
        f"method.options.adapters.iterations={args.adapt}",
        f"method.options.adapters.warmup={warm(args.adapt)}",
        f"method.options.estimator.iterations={args.estimate}",
        f"method.options.estimator.warmup={warm(args.estimate)}",
        "method.options.estimator.batch_size=16",
    ]


def crops(image: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` fixed CROP x CROP crops spread over the image (N, 3, CROP, CROP)."""
    h, w = image.shape[-2:]
    ys = np.linspace(0, h - CROP, n).round().astype(int)
    xs = np.linspace(0, w - CROP, n).round().astype(int)[::-1]
    return torch.stack([image[:, y : y + CROP, x : x + CROP] for y, x in zip(ys, xs, strict=True)])


def evaluate(bundle: Path, test: Path, n_crops: int, seed: int) -> dict[str, Any]:
    model = load_bundle(bundle)
    names = model.adapters
    image = torch.from_numpy(np.array(Image.open(test).convert("RGB"))).permute(2, 0, 1).float() / 255.0
    clean = crops(image, n_crops)
    results: dict[str, Any] = {"cases": {}, "adapters": list(names)}
    for case, specs in CASES.items():
        if any(c not in names for c in case.split("+")):
            continue
        g = torch.Generator().manual_seed(seed)
        degraded = torch.cat([apply_sequence(c[None], specs, generator=g)[0] for c in clean])
        scores: dict[str, list[float]] = {m: [] for m in METHODS}
        hits, mass = [], []
        with torch.no_grad():
            p = model.probabilities(degraded)
            truth = [model.classes.index(c) for c in case.split("+")]
            hits = [float(int(row.argmax()) in truth) for row in p]
            mass = [float(row[truth].sum()) for row in p]
            scores["input"] = psnr(degraded, clean, "rgb").tolist()
            outputs = {"backbone": model.run(degraded, [0.0] * len(names))}
            for mode in ("sum", "average", "onehot", "soft"):
                model.blend = mode
                outputs[mode] = model(degraded)
            for mode, out in outputs.items():
                scores[mode] = psnr(out.clamp(0, 1), clean, "rgb").tolist()
            singles = []
            for k in range(len(names)):
                onehot = [0.0] * len(names)
                onehot[k] = 1.0
                singles.append(psnr(model.run(degraded, onehot).clamp(0, 1), clean, "rgb"))
            scores["oracle"] = torch.stack(singles).amax(0).tolist()
        results["cases"][case] = {
            "specs": list(specs),
            "psnr": {m: statistics.mean(v) for m, v in scores.items()},
            "estimator_top1": statistics.mean(hits),
            "estimator_mass_on_truth": statistics.mean(mass),
        }
    return results


def table(results: dict[str, Any], header: str) -> str:
    lines = [header, "", "| case | " + " | ".join(METHODS) + " | estimator top-1 | p(truth) |"]
    lines.append("|---" * (len(METHODS) + 3) + "|")
    rows = results["cases"]
    for case, r in rows.items():
        cells = " | ".join(f"{r['psnr'][m]:.2f}" for m in METHODS)
        lines.append(f"| {case} | {cells} | {r['estimator_top1']:.2f} | {r['estimator_mass_on_truth']:.2f} |")
    means = " | ".join(f"{statistics.mean(r['psnr'][m] for r in rows.values()):.2f}" for m in METHODS)
    top1 = statistics.mean(r["estimator_top1"] for r in rows.values())
    mass = statistics.mean(r["estimator_mass_on_truth"] for r in rows.values())
    lines.append(f"| **mean** | {means} | {top1:.2f} | {mass:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/abair_study")
    parser.add_argument(
        "--recipe", default="abair_tiny3", help="packaged or file recipe (abair_tiny3, abair_tiny)"
    )
    parser.add_argument("--pretrain", type=int, default=250, help="Phase I iterations")
    parser.add_argument("--adapt", type=int, default=100, help="Phase II iterations per adapter")
    parser.add_argument("--estimate", type=int, default=400, help="Phase III iterations")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--crops", type=int, default=4, help="held-out crops per case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--fresh", action="store_true", help="delete <out> first")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    photos = write_photos(out / "photos")
    recipe = load_recipe(args.recipe, overrides(args, photos))
    start = time.perf_counter()
    bundle = build(recipe, out / "run", progress=False)
    trained = time.perf_counter() - start
    results = evaluate(bundle, photos / "test.png", args.crops, args.seed)
    results.update(
        recipe=args.recipe,
        iterations={"pretrain": args.pretrain, "adapter": args.adapt, "estimator": args.estimate},
        batch=args.batch,
        patch=args.patch,
        train_seconds=round(trained, 1),
        eval_seconds=round(time.perf_counter() - start - trained, 1),
    )
    header = (
        f"ABAIR smoke-scale study ({args.recipe}: tiny PromptIR, {len(TRAIN_PHOTOS)} training photos, "
        f"Phase I {args.pretrain} it, {args.adapt} it per adapter, estimator {args.estimate} it, batch "
        f"{args.batch} x {args.patch}px; {results['train_seconds']:.0f} s training on {args.threads} CPU "
        f"thread(s)). PSNR (dB, rgb preset) on {args.crops} {CROP}x{CROP} crops of the held-out astronaut."
    )
    text = table(results, header)
    print(text)
    with atomic_output(out / "results.md") as tmp:
        tmp.write_text(text)
    with atomic_output(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
