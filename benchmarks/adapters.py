"""Cost of each adapter method on a frozen backbone: trainable parameters, training step and inference time.

For every method (and the two references: full fine-tuning of the base, and the frozen base itself) the
script injects the adapter into a freshly built backbone, then times an L1 training step (forward,
backward, AdamW step over the trainable parameters) and a no-grad forward on random images. Ratios are
against full fine-tuning of the same base (training) and the frozen base (inference); each method is
timed in alternation with its reference and the median per-round ratio is reported, so a drifting machine
load (a shared CPU) affects both sides alike.

Defaults are a small EDT (SR x2, 12 blocks of width 60, as EDT-T) on CPU; ``--backbone paper`` times the
AdaptIR paper's EDT-B on its 48x48 training patch (a GPU job: ``--device cuda``).

    python benchmarks/adapters.py
    python benchmarks/adapters.py --backbone swinir --size 32 --batch 4
    python benchmarks/adapters.py --backbone paper --device cuda --batch 16
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from anyrestore.adapters import METHODS, inject, trainable_parameters
from anyrestore.models.edt import EDT
from anyrestore.models.ipt import IPT
from anyrestore.models.restormer import Restormer
from anyrestore.models.swinir import SwinIR

BACKBONES: dict[str, Callable[[], nn.Module]] = {
    "edt": lambda: EDT(scales=(2,), num_feat=8, embed_dim=60, depths=(6, 6), num_heads=(6, 6)),
    "swinir": lambda: SwinIR(embed_dim=60, depths=(6, 6), num_heads=(6, 6), img_size=64),
    "ipt": lambda: IPT(scales=(2,), n_feats=16, patch_size=24, num_heads=12, num_layers=3),
    "restormer": lambda: Restormer(dim=16, num_blocks=(1, 2, 2, 2), num_refinement_blocks=1),
    "paper": lambda: EDT(scales=(4,)),  # EDT-B SR x4, the AdaptIR paper's Table 4 base model
}
VPT_UNSUPPORTED = {"restormer"}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _paired_ratio(
    fn: Callable[[], None], reference: Callable[[], None], args: argparse.Namespace, device: torch.device
) -> tuple[float, float]:
    """(median seconds of ``fn``, median of its per-round ratios to ``reference``), timing the two in
    alternation so that a drifting machine load affects both alike."""
    for _ in range(args.warmup):
        reference()
        fn()
    times, ratios = [], []
    for _ in range(args.steps):
        ref = _timed(reference, device)
        t = _timed(fn, device)
        times.append(t)
        ratios.append(t / ref)
    return statistics.median(times), statistics.median(ratios)


def _train_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    """An L1 step: forward, backward, AdamW over the trainable parameters."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        model.train()
        loss = (model(x) - target).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _inference(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="edt")
    parser.add_argument("--size", type=int, default=48, help="input height and width")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed repetitions (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (small models dislike many)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return BACKBONES[args.backbone]().to(device)

    full = fresh()
    frozen = fresh().requires_grad_(False)
    with torch.no_grad():
        target = torch.rand_like(frozen.eval()(x))
    total = sum(p.numel() for p in full.parameters())
    full_step, frozen_run = _train_step(full, x, target), _inference(frozen, x)
    print(
        f"{args.backbone}: {total:,} parameters, input {args.batch}x3x{args.size}x{args.size}, {device}, "
        f"{args.threads} thread(s); medians of {args.steps} rounds after {args.warmup} warm-up, each "
        "method timed in alternation with its reference"
    )
    header = (
        f"{'method':<12} {'trainable':>10} {'% of base':>9} {'train ms':>9} {'vs full-ft':>10} "
        f"{'infer ms':>9} {'vs frozen':>9}"
    )
    print(header)
    print("-" * len(header))
    for method in args.methods:
        if method == "vpt" and args.backbone in VPT_UNSUPPORTED:
            print(f"{method:<12} (not defined for channel attention)")
            continue
        model = fresh()
        inject(model, method)
        n = trainable_parameters(model)
        train, train_ratio = _paired_ratio(_train_step(model, x, target), full_step, args, device)
        infer, infer_ratio = _paired_ratio(_inference(model, x), frozen_run, args, device)
        print(
            f"{method:<12} {n:>10,} {100 * n / total:>8.2f}% {train * 1e3:>9.1f} {train_ratio:>9.2f}x "
            f"{infer * 1e3:>9.1f} {infer_ratio:>8.2f}x"
        )


if __name__ == "__main__":
    main()
