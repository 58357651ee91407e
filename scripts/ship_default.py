"""Write a trained run's weights as the embedded default model: the EMA weights only, as ``params``.

    python scripts/ship_default.py runs/default_curve/model.safetensors   # or a checkpoint of the run

Keeps the shipped file at half the size of a training file (which holds raw and EMA weights) and checks
that the written model restores exactly as the run's EMA model does. The descriptor also records how the
model is best run (``SHIPPED_EXTRA``): with the flips self-ensemble, which the inference layer then uses
unless told otherwise (``--self-ensemble off``). Rerunning it on the shipped file itself only rewrites
that record.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from anyrestore.models.checkpoint import load_model, save_model

# Averaging the NAFNet over the 4 flips of its input (the global stages run once) adds 0.26 dB on
# held-out noise sigma 25 and 0.29 dB on rain, about 0.05 dB on blur and JPEG; the 8 flips and
# transpositions add more on noise (0.46 dB) but lose 3 dB on rain (transposed streaks lie across the
# direction it was trained on). docs/default-model.md.
SHIPPED_EXTRA = {"self_ensemble": "flips"}
TARGET = Path(__file__).resolve().parents[1] / "src" / "anyrestore" / "weights" / "default.safetensors"


def main(source: str) -> None:
    run = load_model(source, prefer_ema=True)
    descriptor = dataclasses.replace(run.descriptor, extra={**run.descriptor.extra, **SHIPPED_EXTRA})
    save_model(TARGET, descriptor, run.module)
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
