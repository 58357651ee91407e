"""A smoke-scale AdaptIR study on one CPU thread (about 10 minutes): AdaptIR against the PETL baselines on
the hybrid LR4+Noise30 task, at one trainable-parameter budget.

    python scripts/adaptir_study.py [--out runs/adaptir_study] [--pretrain 600] [--adapt 200] [--seeds 1]

Clean photos from scikit-image (chelsea, coffee, rocket, hubble_deep_field, immunohistochemistry and the
left stereo_motorcycle view for training; astronaut held out) are degraded on the fly. Steps:

1. pre-training of a tiny multi-task EDT (width 32, 2 groups of 2 CSwin blocks; an x4 SR head/tail and a
   sigma-30 denoising head/tail around one shared body), alternating the two tasks batch by batch, like
   the multi-task pre-training of IPT and EDT (this loop is the only part outside the engine: the engine
   batches one image size per run);
2. the body and heads frozen, every adapter method trained on LR4+Noise30 (bicubic x4, then Gaussian
   noise sigma 30) through the x4 SR head, as AdaptIR maps hybrid tasks to IPT's x4 head, with
   ``anyrestore train <out>/recipes/<method>.yaml`` run in-process; widths chosen so every method has
   about AdaptIR's trainable-parameter count; plus a full fine-tune for reference;
3. PSNR/SSIM on the held-out photo (whole 512 x 512, LR 128 x 128; ``basicsr`` preset: Y channel, 4-pixel
   border crop), the adapted model rebuilt from the base file and the adapter file.

Results go to ``<out>/results.md`` and ``<out>/results.json``; finished runs are reused with ``--reuse``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

import anyrestore.methods.adaptir  # noqa: F401  (registers the "adapter" objective)
from anyrestore.adapters import inject, remove, trainable_parameters
from anyrestore.cli.main import main as anyrestore
from anyrestore.data import SyntheticSetSpec, build_dataset, collate
from anyrestore.evaluate import psnr, ssim
from anyrestore.inference import Restorer
from anyrestore.inference.adapters import ADAPTER_FILE, export_adapter, load_adapted
from anyrestore.io import atomic_output
from anyrestore.models.checkpoint import LoadedModel, load_model, save_model
from anyrestore.models.descriptor import ModelDescriptor

TRAIN_PHOTOS = (
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "stereo_motorcycle",
)
TEST_PHOTO = "astronaut"
MAX_SIDE = 512  # training photos are downscaled to at most this long side
PRESET, CROP = "basicsr", 4  # the paper's metric for hybrid degradations (Y channel)
TINY_EDT: dict[str, Any] = {
    "scales": [4],
    "noise_levels": [30],
    "num_feat": 8,
    "embed_dim": 32,
    "depths": [2, 2],
    "num_heads": [2, 2],
    "window_size": [4, 16],
    "depth": 1,
    "img_size": 16,
    "drop_path_rate": 0.0,
    "upsampler": "pixelshuffledirect",
}
# Widths that put every method near AdaptIR's count on this body (width 32, 4 blocks); see the table.
METHODS: dict[str, dict[str, Any]] = {
    "adaptir": {"reduction": 4},
    "lora": {"rank": 6},
    "adapter": {"hidden": 6},
    "adaptformer": {"hidden": 12},
    "ssf": {},
    "vpt": {"num_prompts": 24},
    "fact": {"rank": 9},
    "moe": {"hidden": 4},
}
LR_PATCH = 16  # a multiple of the stripe length (16); GT patch 64
BATCH = 8
ADAPTER_LR = 1e-2  # every PETL method; a few hundred steps from zero-initialised adapters
FULL_LR = 2e-3  # full fine-tuning: the peak rate of the pre-training


def make_photos(root: Path) -> None:
    from skimage import data

    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "val").mkdir(parents=True, exist_ok=True)
    for name in TRAIN_PHOTOS:
        array = getattr(data, name)()
        im = Image.fromarray(np.asarray(array[0] if isinstance(array, tuple) else array))
        scale = min(1.0, MAX_SIDE / max(im.size))
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
        im.save(root / "train" / f"{name}.png")
    Image.fromarray(np.asarray(getattr(data, TEST_PHOTO)())).save(root / "val" / f"{TEST_PHOTO}.png")


def pretrain(photos: Path, out: Path, iterations: int, seed: int) -> Path:
    """Multi-task pre-training of the tiny EDT (x4 SR, sigma-30 denoising, alternating); returns the base."""
    torch.manual_seed(seed)
    descriptor = ModelDescriptor.for_architecture("edt", {**TINY_EDT, "task": "sr_x4"})
    model = descriptor.build().train()
    tasks = {
        "sr_x4": ["downsample:scale=4"],
        "dn_g30": ["noise:sigma=30"],
    }
    sets = {
        task: build_dataset(
            SyntheticSetSpec(
                type="synthetic",
                task=task,
                clean="train",
                degrade=steps,
                patch_size=LR_PATCH * 4 if task == "sr_x4" else LR_PATCH * 2,
                rotate=True,
                cache=True,
            ),
            data_root=photos,
            train=True,
            seed=seed,
        )
        for task, steps in tasks.items()
    }
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.9, 0.99))
    generator = torch.Generator().manual_seed(seed)
    names = list(tasks)
    for i in range(iterations):
        for group in optimizer.param_groups:  # cosine 2e-3 -> 1e-5
            group["lr"] = 1e-5 + (2e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * i / iterations))
        task = names[i % len(names)]
        dataset = sets[task]
        picks = torch.randint(len(dataset), (BATCH,), generator=generator).tolist()
        batch = collate([dataset.sample(j, generator) for j in picks])
        loss = F.l1_loss(model(batch["lq"], task=task), batch["gt"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (i + 1) % 100 == 0:
            print(f"pretrain {i + 1}/{iterations} {task} L1 {loss.item():.4f}", flush=True)
    path = out / "base.safetensors"
    save_model(path, descriptor, model.eval())
    return path


def adapt_recipe(base: Path, photos: Path, method: str, iterations: int, seed: int) -> dict[str, Any]:
    """The recipe of one adaptation run: the paper's recipe shape (AdamW, L1, multistep halving at
    50/80/90/95% of the run), smoke-scale sizes and learning rates fit for a few hundred steps."""
    if method == "full":
        name, options = "restore", {}
    else:
        name, options = "adapter", {"method": method, **METHODS[method]}
    return {
        "name": f"adaptir_study_{method}",
        "description": f"Smoke-scale LR4+Noise30 adaptation of a tiny pre-trained EDT: {method}.",
        "seed": seed,
        "data_root": str(photos),
        "device": "cpu",
        "model": {"architecture": "edt", "config": {**TINY_EDT, "task": "sr_x4"}, "pretrained": str(base)},
        "data": {
            "train": {
                "batch_size": BATCH,
                "sets": [
                    {
                        "type": "synthetic",
                        "task": "lr4_noise30",
                        "clean": "train",
                        "degrade": ["pipeline:lr4_noise30"],
                        "patch_size": LR_PATCH * 4,
                        "rotate": True,
                        "cache": True,
                    }
                ],
            }
        },
        "optim": {"name": "adamw", "lr": FULL_LR if method == "full" else ADAPTER_LR, "weight_decay": 0.01},
        "schedule": {
            "iterations": iterations,
            "kind": "multistep",
            "milestones": [round(iterations * f) for f in (0.5, 0.8, 0.9, 0.95)],
            "gamma": 0.5,
        },
        "loss": [{"name": "l1"}],
        "method": {"name": name, "options": options},
        "checkpoint": {"every": iterations, "keep": 1},
        "log": {"every": max(1, iterations // 4), "tensorboard": False},
    }


def evaluate(loaded: LoadedModel, photos: Path) -> dict[str, float]:
    """PSNR/SSIM on the held-out photo degraded with LR4+Noise30 (the same noise for every model)."""
    spec = SyntheticSetSpec(
        type="synthetic", task="lr4_noise30", clean="val", degrade=["pipeline:lr4_noise30"]
    )
    dataset = build_dataset(spec, data_root=photos, train=False, seed=0)
    restorer = Restorer(loaded, tile=0)
    p = s = 0.0
    for i in range(len(dataset)):
        sample = dataset[i]
        pred = restorer(sample["lq"][None])
        p += float(psnr(pred, sample["gt"][None], PRESET, CROP)[0])
        s += float(ssim(pred, sample["gt"][None], PRESET, CROP)[0])
    return {"psnr": p / len(dataset), "ssim": s / len(dataset)}


def bicubic(photos: Path) -> dict[str, float]:
    """Bicubic x4 upsampling of the noisy input: what doing nothing clever gives."""
    spec = SyntheticSetSpec(
        type="synthetic", task="lr4_noise30", clean="val", degrade=["pipeline:lr4_noise30"]
    )
    sample = build_dataset(spec, data_root=photos, train=False, seed=0)[0]
    up = F.interpolate(sample["lq"][None], scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    gt = sample["gt"][None]
    return {"psnr": float(psnr(up, gt, PRESET, CROP)[0]), "ssim": float(ssim(up, gt, PRESET, CROP)[0])}


def count(base: Path, method: str) -> int:
    module = load_model(base).module
    if method == "full":
        return sum(p.numel() for p in module.parameters())
    inject(module, method, **METHODS[method])
    n = trainable_parameters(module)
    remove(module)
    return n


def run_method(base: Path, photos: Path, out: Path, method: str, args: argparse.Namespace, seed: int) -> dict:
    run = out / "runs" / f"{method}_s{seed}"
    recipe = out / "recipes" / f"{method}_s{seed}.yaml"
    recipe.parent.mkdir(parents=True, exist_ok=True)
    recipe.write_text(yaml.safe_dump(adapt_recipe(base, photos, method, args.adapt, seed), sort_keys=False))
    started = time.process_time()  # one thread: CPU time is what a quiet machine's clock would show
    if not (args.reuse and (run / "model.safetensors").exists()):
        shutil.rmtree(run, ignore_errors=True)
        code = anyrestore(["train", str(recipe), "--out", str(run), "--quiet"])
        if code:
            raise SystemExit(f"training {method} failed ({code})")
    seconds = time.process_time() - started
    if method == "full":
        loaded = load_model(run / "model.safetensors")
    else:
        adapter = run / ADAPTER_FILE
        if not adapter.exists():  # engines without the end hook: export it from the final weights
            export_adapter(run / "model.safetensors")
        loaded = load_adapted(base, adapter)
    return {"method": method, "seed": seed, "seconds": seconds, **evaluate(loaded, photos)}


def write_results(out: Path, rows: list[dict], counts: dict[str, int], reference: dict, args) -> None:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = [
        f"LR4+Noise30 on the held-out astronaut (512 x 512), PSNR/SSIM preset {PRESET} (Y), crop {CROP}; "
        f"pre-training {args.pretrain} iterations, adaptation {args.adapt} iterations, "
        f"{args.seeds} seed(s) (mean, and min..max over seeds).",
        "",
        "| method | trainable | PSNR (dB) | SSIM | CPU s |",
        "|---|---:|---:|---:|---:|",
        f"| bicubic x4 of the noisy input | - | {reference['bicubic']['psnr']:.2f} | "
        f"{reference['bicubic']['ssim']:.4f} | - |",
        f"| pre-trained, no adaptation (x4 head) | 0 | {reference['pretrain']['psnr']:.2f} | "
        f"{reference['pretrain']['ssim']:.4f} | - |",
    ]
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        ps, ss = [r["psnr"] for r in mine], [r["ssim"] for r in mine]
        spread = f" ({min(ps):.2f}..{max(ps):.2f})" if len(ps) > 1 else ""
        lines.append(
            f"| {method} | {counts[method]:,} | {np.mean(ps):.2f}{spread} | {np.mean(ss):.4f} | "
            f"{np.mean([r['seconds'] for r in mine]):.0f} |"
        )
    with atomic_output(out / "results.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    with atomic_output(out / "results.json") as tmp:
        tmp.write_text(json.dumps({"rows": rows, "counts": counts, "reference": reference}, indent=2))
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/adaptir_study"))
    parser.add_argument("--pretrain", type=int, default=600, help="pre-training iterations (both tasks)")
    parser.add_argument("--adapt", type=int, default=200, help="adaptation iterations per method")
    parser.add_argument("--seeds", type=int, default=1, help="adaptation seeds per method")
    parser.add_argument("--methods", nargs="+", default=[*METHODS, "full"], choices=[*METHODS, "full"])
    parser.add_argument("--reuse", action="store_true", help="reuse finished runs in --out")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out: Path = args.out
    photos = out / "photos"
    if not (photos / "val" / f"{TEST_PHOTO}.png").exists():
        make_photos(photos)
    base = out / "base.safetensors"
    if not (args.reuse and base.exists()):
        started = time.process_time()
        base = pretrain(photos, out, args.pretrain, seed=0)
        print(f"pre-training: {time.process_time() - started:.0f} s of CPU", flush=True)
    reference = {"bicubic": bicubic(photos), "pretrain": evaluate(load_model(base), photos)}
    counts = {m: count(base, m) for m in args.methods}
    rows = [run_method(base, photos, out, m, args, seed) for seed in range(args.seeds) for m in args.methods]
    write_results(out, rows, counts, reference, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
