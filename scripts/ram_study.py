"""A smoke-scale RAM study on one CPU thread (about 10 minutes): does the pipeline behave as the paper says?

    python scripts/ram_study.py [--out out/ram_study] [--pretrain 1200] [--finetune 400]

Clean photos from scikit-image (chelsea, coffee, rocket for training; astronaut held out for testing) are
degraded on the fly (the synthetic half of RAM's mixture: clean, noise, blur, JPEG). Steps, each one
``anyrestore`` command run in-process:

1. masked pre-training of a tiny NAFNet (``ram_tiny_pretrain``) for ``--pretrain`` iterations;
2. unit rankings of the pre-trained model (``anyrestore mac --method mac | ig | random``);
3. for each ranking (MAC, IG, and ``--random-seeds`` random ones), fine-tuning of the top ``--ratio`` of
   units (``ram_tiny_finetune``) for ``--finetune`` iterations, plus a full fine-tune (ratio 1);
4. plain supervised training (``ram_tiny_pretrain`` with ``method: restore`` and L1) for
   ``--pretrain + --finetune`` iterations, the same total budget, from the same initial weights.

PSNR on the held-out photo (noise sigma 25, blur sigma 2, JPEG quality 30) goes to ``<out>/results.md``
(with the commands and each ranking's chosen units) and ``<out>/results.json``. Finished runs are reused
when ``--reuse`` is given. CPU time is reported beside wall time: on a busy machine it is what a quiet one
would take.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import anyrestore.methods.ram.objectives  # noqa: F401  (registers ram_pretrain, ram_finetune)
from anyrestore.attribution import read_ranking
from anyrestore.cli.main import main as anyrestore
from anyrestore.data import build_dataset
from anyrestore.evaluate import psnr
from anyrestore.io import atomic_output
from anyrestore.methods.ram import twin_mask_inference
from anyrestore.models.checkpoint import load_model
from anyrestore.models.normalize import as_unit_range
from anyrestore.train import load_recipe

TRAIN_PHOTOS = ("chelsea", "coffee", "rocket")
TEST_PHOTO = "astronaut"
TRAIN_HEIGHT = 256  # training photos are downscaled to this height
TEST_SIZE = 192  # the held-out photo is downscaled to TEST_SIZE x TEST_SIZE and used whole
MAC_DATA = "ops=noise:sigma=25+blur:sigma=2+jpeg:quality=30"


def make_photos(root: Path) -> None:
    from skimage import data

    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "val").mkdir(parents=True, exist_ok=True)
    for name in TRAIN_PHOTOS:
        im = Image.fromarray(np.asarray(getattr(data, name)()))
        size = (round(im.width * TRAIN_HEIGHT / im.height), TRAIN_HEIGHT)
        im.resize(size, Image.Resampling.LANCZOS).save(root / "train" / f"{name}.png")
    im = Image.fromarray(np.asarray(getattr(data, TEST_PHOTO)()))
    im.resize((TEST_SIZE, TEST_SIZE), Image.Resampling.LANCZOS).save(root / "val" / f"{TEST_PHOTO}.png")


def run(argv: list[str], log: list[str]) -> None:
    """One anyrestore command, in this process; recorded in ``log`` as a shell line."""
    log.append("anyrestore " + shlex.join(argv))
    print(f"\n$ {log[-1]}", flush=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    code = anyrestore(argv)
    if code:
        raise SystemExit(f"command failed with exit code {code}: {log[-1]}")
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(f"({wall:.0f} s, {cpu:.0f} s of CPU time)", flush=True)


def last_validation(run_dir: Path) -> dict[str, float]:
    entries = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [e for e in entries if e["kind"] == "val"][-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/ram_study"))
    parser.add_argument("--pretrain", type=int, default=1200, help="masked pre-training iterations")
    parser.add_argument("--finetune", type=int, default=400, help="fine-tuning iterations")
    parser.add_argument("--random-seeds", type=int, default=3, help="random rankings to fine-tune")
    parser.add_argument("--ratio", type=float, default=0.1, help="share of units fine-tuned (paper: 0.1)")
    parser.add_argument("--steps", type=int, default=100, help="MAC / IG path steps")
    parser.add_argument("--per-task", type=int, default=5, help="attribution images per task")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reuse", action="store_true", help="keep runs that already finished")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out: Path = args.out
    photos = out / "photos"
    make_photos(photos)
    commands: list[str] = []
    started, cpu_started = time.perf_counter(), time.process_time()

    # Validation on the whole held-out photo, every task, only at the end of each run.
    val = [
        "data.val.sets.0.patch_size=null",
        "data.val.sets.1.patch_size=null",
        "data.val.sets.2.patch_size=null",
    ]
    common = [
        f"data_root={photos}",
        *val,
        "data.val.every=1000000",
        "log.every=100",
        "checkpoint.every=1000000",
    ]

    def train(recipe: str, name: str, *overrides: str) -> Path:
        run_dir = out / name
        if args.reuse and (run_dir / "model.safetensors").exists():
            commands.append(f"# reused {run_dir}")
            return run_dir
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run(["train", recipe, *common, *overrides, "--out", str(run_dir), "--quiet"], commands)
        return run_dir

    total = args.pretrain + args.finetune
    pre = train("ram_tiny_pretrain", "pretrain", f"schedule.iterations={args.pretrain}")
    weights = pre / "model.safetensors"

    names = ["mac", "ig", *(f"random{seed}" for seed in range(args.random_seeds))]
    rankings = {}
    for name in names:
        path = rankings[name] = out / f"{name}.tsv"
        if args.reuse and path.exists():
            continue
        if name.startswith("random"):
            how = ["--method", "random", "--seed", name.removeprefix("random")]
        else:
            how = ["--method", name, "--data", f"clean={photos / 'train'},{MAC_DATA}"]
            how += ["--per-task", str(args.per_task), "--crop", "48", "--steps", str(args.steps)]
        run(
            ["mac", "--model", str(weights), *how, "--ratio", str(args.ratio), "-o", str(path), "--quiet"],
            commands,
        )

    finetuned = {}
    tune = [f"model.pretrained={weights}", f"schedule.iterations={args.finetune}", "data.val.at_start=false"]
    for name, path in rankings.items():
        options = f"method.options={{ranking: {path}, ratio: {args.ratio}}}"
        finetuned[name] = train("ram_tiny_finetune", f"finetune_{name}", *tune, options)
    everything = f"method.options={{ranking: {rankings['mac']}, ratio: 1}}"
    finetuned["all"] = train("ram_tiny_finetune", "finetune_all", *tune, everything)
    supervised = train(
        "ram_tiny_pretrain",
        "supervised",
        f"schedule.iterations={total}",
        "method={name: restore}",
        "loss=[{name: l1}]",
    )

    # Reference rows: the degraded input, and the pre-trained model with twin masks (Fig. 4).
    recipe = load_recipe("ram_tiny_pretrain", common)
    sets = [
        build_dataset(s, data_root=recipe.data_root, train=False, seed=recipe.seed)
        for s in recipe.data.val.sets
    ]
    tasks = [d.task for d in sets]
    loaded = load_model(weights)
    model = as_unit_range(loaded.module, loaded.descriptor).eval()
    degraded: dict[str, float] = {}
    twin: dict[str, float] = {}
    for dataset in sets:
        sample = dataset[0]
        lq, gt = sample["lq"][None], sample["gt"][None]
        degraded[dataset.task] = float(psnr(lq, gt, "rgb"))
        output = twin_mask_inference(model, lq, generator=torch.Generator().manual_seed(0)).output
        twin[dataset.task] = float(psnr(output.clamp(0, 1), gt, "rgb"))

    def from_run(run_dir: Path) -> dict[str, float]:
        v = last_validation(run_dir)
        return {task: v[f"psnr/{task}"] for task in tasks}

    pct = f"{args.ratio:.0%}"
    both = f"{args.pretrain}+{args.finetune}"
    random_runs = [from_run(finetuned[n]) for n in names if n.startswith("random")]
    table = [
        ("degraded input", "-", "-", degraded),
        ("masked pre-training only, whole input", str(args.pretrain), "-", from_run(pre)),
        ("masked pre-training only, twin masks", str(args.pretrain), "-", twin),
        (f"pre-train + MAC top {pct}", both, pct, from_run(finetuned["mac"])),
        (f"pre-train + IG top {pct}", both, pct, from_run(finetuned["ig"])),
        *(
            (f"pre-train + random {pct} (seed {i})", both, pct, values)
            for i, values in enumerate(random_runs)
        ),
        (
            f"pre-train + random {pct} (mean of {len(random_runs)} seeds)",
            both,
            pct,
            {t: float(np.mean([r[t] for r in random_runs])) for t in tasks},
        ),
        ("pre-train + full fine-tune", both, "100%", from_run(finetuned["all"])),
        ("supervised (no pre-training)", str(total), "100%", from_run(supervised)),
    ]
    lines = [
        "| setting | iterations | units trained | " + " | ".join(tasks) + " | mean |",
        "|---|---|---|" + "---|" * (len(tasks) + 1),
    ]
    for name, iters, share, values in table:
        cells = [f"{values[t]:.2f}" for t in tasks] + [f"{np.mean([values[t] for t in tasks]):.2f}"]
        lines.append(f"| {name} | {iters} | {share} | " + " | ".join(cells) + " |")
    lines.append("")
    for name, path in rankings.items():
        ranking = read_ranking(path)
        lines.append(f"- {name}: " + ", ".join(f"`{u}`" for u in ranking.top(args.ratio)))
    markdown = "\n".join(lines)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    with atomic_output(out / "results.md") as tmp:
        tmp.write_text(markdown + "\n\nCommands:\n\n" + "\n".join(commands) + "\n")
    results = {name: values for name, _, _, values in table}
    with atomic_output(out / "results.json") as tmp:
        summary = {"psnr": results, "seconds": round(elapsed), "cpu_seconds": round(cpu)}
        tmp.write_text(json.dumps(summary, indent=1) + "\n")
    print("\n" + markdown)
    print(f"\n{elapsed:.0f} s in all ({cpu:.0f} s of CPU time); {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
