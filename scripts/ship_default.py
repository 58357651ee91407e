"""Write a trained run's weights as the embedded default model: the EMA weights only, as ``params``.

    python scripts/ship_default.py runs/default_curve/model.safetensors   # or a checkpoint of the run

Keeps the shipped file at half the size of a training file (which holds raw and EMA weights) and checks
that the written model restores exactly as the run's EMA model does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from anyrestore.models.checkpoint import load_model, save_model

TARGET = Path(__file__).resolve().parents[1] / "src" / "anyrestore" / "weights" / "default.safetensors"


def main(source: str) -> None:
    run = load_model(source, prefer_ema=True)
    save_model(TARGET, run.descriptor, run.module)
    shipped = load_model(TARGET)
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        gap = float((shipped.module(x) - run.module(x)).abs().max())
    if gap != 0.0:
        raise SystemExit(f"{TARGET}: differs from {source} ({run.source}) by {gap:.2e}")
    size = TARGET.stat().st_size
    print(f"{TARGET}: {run.descriptor.architecture} from {source} ({run.source}), {size:,} bytes")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    main(sys.argv[1])
