"""Training throughput of PromptIR and SwinIR at their recipes' patch sizes, fp32 against bf16.

Times the engine's training step (autocast forward, L1, backward, Adam step, EMA update; the same parts
``anyrestore train`` uses) on random patches, so data loading is left out, and prints iterations/s,
patches/s and peak GPU memory per model and precision. The batch per process is the recipe's global batch
divided by ``--gpus`` (RAM trained both on 8 GPUs: 4 x 128 px for PromptIR, 12 x 64 px for SwinIR).

    python benchmarks/train_throughput.py [--recipes promptir_allinone swinir_allinone]
        [--precisions fp32 bf16] [--gpus 8] [--steps 20] [--warmup 5] [--device auto]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch

from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.normalize import as_unit_range
from anyrestore.train import ModelEMA, Precision, WeightedLoss, load_recipe
from anyrestore.train.distributed import pick_device
from anyrestore.train.trainer import build_optimizer

WIDTHS = (5, 5, 9, 8, 10, 9)  # columns after the model name


def measure(
    recipe_name: str,
    precision: str,
    gpus: int,
    steps: int,
    warmup: int,
    device: torch.device,
    overrides: Sequence[str] = (),
) -> dict:
    """Iterations/s, patches/s and peak GPU memory of the recipe's training step (``overrides``:
    recipe overrides, e.g. a smaller model)."""
    recipe = load_recipe(recipe_name, list(overrides))
    patch = recipe.data.train.sets[0].patch_size
    batch = max(1, recipe.data.train.batch_size // gpus)
    descriptor = ModelDescriptor.for_architecture(recipe.model.architecture, recipe.model.config)
    torch.manual_seed(0)
    model = descriptor.build().to(device).train()
    net = as_unit_range(model, descriptor)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(recipe, params)
    ema = ModelEMA(model, recipe.ema.decay) if recipe.ema is not None else None
    mode = Precision.create(precision, device)
    loss_fn = WeightedLoss.from_terms(recipe.loss)
    lq = torch.rand(batch, 3, patch, patch, device=device)
    gt = torch.rand(batch, 3, patch, patch, device=device)

    def step(i: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        with mode.autocast():
            loss, _ = loss_fn(net(lq), gt)
        mode.backward(loss)
        mode.step(optimizer)
        if ema is not None:
            ema.update(model, i)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for i in range(warmup):
        step(i)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    sync()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {
        "model": recipe.model.architecture,
        "patch": patch,
        "batch": batch,
        "precision": precision,
        "it_s": steps / elapsed,
        "patches_s": steps * batch / elapsed,
        "peak_gib": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipes", nargs="+", default=["promptir_allinone", "swinir_allinone"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--gpus", type=int, default=8, help="GPUs the recipe's global batch is shared by")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()

    device = pick_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}, torch {torch.__version__}, {args.steps} timed steps after {args.warmup}")
    header = ("model", "patch", "batch", "precision", "it/s", "patches/s", "peak GiB")
    print(f"{header[0]:<10} " + " ".join(f"{h:>{w}}" for h, w in zip(header[1:], WIDTHS, strict=True)))
    rows = {}
    for recipe in args.recipes:
        for precision in args.precisions:
            r = measure(recipe, precision, args.gpus, args.steps, args.warmup, device)
            rows[(recipe, precision)] = r
            cells = (r["patch"], r["batch"], precision, f"{r['it_s']:.2f}", f"{r['patches_s']:.1f}")
            cells += (f"{r['peak_gib']:.2f}" if device.type == "cuda" else "n/a",)
            print(f"{r['model']:<10} " + " ".join(f"{c:>{w}}" for c, w in zip(cells, WIDTHS, strict=True)))
    for recipe in args.recipes:
        if (recipe, "fp32") in rows and (recipe, "bf16") in rows:
            fp32, bf16 = rows[(recipe, "fp32")], rows[(recipe, "bf16")]
            memory = (
                f", {bf16['peak_gib'] / fp32['peak_gib']:.2f}x its peak memory"
                if device.type == "cuda"
                else ""
            )
            print(f"{fp32['model']}: bf16 is {bf16['it_s'] / fp32['it_s']:.2f}x the speed of fp32{memory}")


if __name__ == "__main__":
    main()
