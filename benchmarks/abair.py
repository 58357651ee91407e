"""ABAIR's inference costs: the estimator's time per image, and soft blending against a merged adapter.

An ABAIR model with K random rank-4 adapters (q, k, v of every block) is built on a PromptIR; then, timed
in alternation with a plain backbone that has one adapter merged into its weights (the zero-overhead
reference), and reporting the median per-round ratio so that a drifting machine load affects both sides:

- ``onehot (banks)``: one adapter applied through the banks (its delta computed every pass);
- ``soft (banks)``: all K adapters blended (K deltas per pass);
- ``soft + estimator``: the full forward as ``anyrestore restore`` runs it (estimator, then soft blend);
- ``estimator``: the estimator alone, per image, at the input size and on a large image (judged on a 3x3
  grid of 256-pixel crops).

Weights are random: only the times mean anything. Defaults are a small PromptIR on the CPU;
``--config paper`` is the released PromptIR size (a GPU job: ``--device cuda``).

    python benchmarks/abair.py
    python benchmarks/abair.py --config paper --device cuda --size 512
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from anyrestore.adapters import adapter_state_dict, inject
from anyrestore.methods.abair import ABAIRModel, DegradationEstimator
from anyrestore.models.descriptor import ModelDescriptor

CONFIGS = {
    "small": {
        "dim": 16,
        "num_blocks": [2, 2, 2, 2],
        "num_refinement_blocks": 1,
        "heads": [1, 2, 4, 8],
        "prompt_dims": [16, 32, 64],
        "prompt_sizes": [16, 8, 4],
    },
    "paper": {},
}
NAMES = ("rain", "haze", "noise", "blur", "low_light", "jpeg", "snow", "quantize")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    with torch.no_grad():
        fn()
    _sync(device)
    return time.perf_counter() - start


def _paired(fn: Callable[[], object], reference: Callable[[], object], rounds: int, device: torch.device):
    """(median seconds of ``fn``, median per-round ratio to ``reference``), the two timed in turn."""
    _timed(reference, device)
    _timed(fn, device)
    times, ratios = [], []
    for _ in range(rounds):
        ref = _timed(reference, device)
        t = _timed(fn, device)
        times.append(t)
        ratios.append(t / ref)
    return statistics.median(times), statistics.median(ratios)


def _random_adapter(backbone: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    plain = copy.deepcopy(backbone)
    inject(plain, "lora", rank=4, alpha=4.0, targets=("q", "k", "v"))
    g = torch.Generator().manual_seed(seed)
    return {k: 0.05 * torch.randn(v.shape, generator=g) for k, v in adapter_state_dict(plain).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--adapters", type=int, default=5, help="number of adapters (up to 8)")
    parser.add_argument("--size", type=int, default=256, help="input height and width")
    parser.add_argument("--big", type=int, default=1024, help="side of the large image for the estimator")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (medians reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    descriptor = ModelDescriptor.for_architecture("promptir", CONFIGS[args.config])
    torch.manual_seed(0)
    backbone = descriptor.build().eval()
    names = NAMES[: args.adapters]
    tensors = {n: _random_adapter(backbone, i) for i, n in enumerate(names)}
    estimator = DegradationEstimator(1 + len(names))
    model = ABAIRModel(backbone, descriptor, estimator=estimator)
    for n in names:
        model.add_adapter(n, tensors[n])
    model.to(device).eval()
    merged = model.merged({names[0]: 1.0})
    x = torch.rand(1, 3, args.size, args.size, device=device)
    big = torch.rand(1, 3, args.big, args.big, device=device)

    params = sum(p.numel() for p in merged.parameters())
    per_adapter = sum(v.numel() for v in tensors[names[0]].values())
    print(
        f"PromptIR ({args.config}, {params:,} parameters), {len(names)} rank-4 adapters of {per_adapter:,} "
        f"parameters, estimator {sum(p.numel() for p in estimator.parameters()):,} parameters; "
        f"1x3x{args.size}x{args.size}, {device}, {args.threads} thread(s), medians of {args.rounds} rounds"
    )
    reference = lambda: merged(x)  # noqa: E731
    soft = {n: 1.0 / len(names) for n in names}
    rows = [
        ("merged adapter", reference),
        ("onehot (banks)", lambda: model.run(x, [1.0] + [0.0] * (len(names) - 1))),
        ("soft (banks)", lambda: model.run(x, [soft[n] for n in names])),
        ("soft + estimator", lambda: model(x)),
    ]
    header = f"{'forward':<18} {'ms/image':>9} {'vs merged':>10}"
    print(header)
    print("-" * len(header))
    for label, fn in rows:
        t, ratio = _paired(fn, reference, args.rounds, device)
        print(f"{label:<18} {1000 * t:>9.1f} {ratio:>9.3f}x")
    for label, image in ((f"{args.size}x{args.size}", x), (f"{args.big}x{args.big} (crops)", big)):
        t, ratio = _paired(lambda image=image: estimator.probabilities(image), reference, args.rounds, device)
        print(f"{'estimator ' + label:<30} {1000 * t:>9.2f} ms/image ({ratio:.3f}x a merged forward)")


if __name__ == "__main__":
    main()
