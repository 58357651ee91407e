"""Start a CurveNAFNet from a trained NAFNet: the NAFNet becomes its ``restorer``, the curve stage is new.

    python scripts/curve_from_nafnet.py NAFNET_WEIGHTS OUT.safetensors

The curve head starts at zero, so the written model restores exactly as the NAFNet does (checked here);
``model.pretrained: OUT.safetensors`` in a ``curve_nafnet`` recipe then fine-tunes both stages. This is
how the default model's second stage starts (docs/default-model.md).
"""

from __future__ import annotations

import sys

import torch

from anyrestore.models.checkpoint import load_model, save_model
from anyrestore.models.descriptor import ModelDescriptor


def main(source: str, out: str) -> None:
    nafnet = load_model(source)
    if nafnet.descriptor.architecture != "nafnet":
        raise SystemExit(f"{source}: holds a {nafnet.descriptor.architecture}, not a nafnet")
    config = {k: v for k, v in nafnet.descriptor.config.items() if k != "drop_out_rate"}
    descriptor = ModelDescriptor.for_architecture("curve_nafnet", config)
    model = descriptor.build().eval()
    model.restorer.load_state_dict(nafnet.module.state_dict())
    x = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        gap = float((model(x) - nafnet.module(x)).abs().max())
    if gap > 1e-5:
        raise SystemExit(f"the new model differs from the NAFNet by {gap:.2e}")
    save_model(out, descriptor, model, model)
    print(f"{out}: curve_nafnet from {source} (max |difference| to the NAFNet {gap:.1e})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    main(sys.argv[1], sys.argv[2])
