"""Start a CurveNAFNet from a trained NAFNet: the NAFNet becomes its ``restorer``, the curve stage is new.

    python scripts/curve_from_nafnet.py NAFNET_WEIGHTS OUT.safetensors

The curve head starts at zero, so the written model restores exactly as the NAFNet does (checked here);
``model.pretrained: OUT.safetensors`` in a ``curve_nafnet`` recipe then fine-tunes both stages. This is
how the default model's second stage starts (docs/default-model.md).
"""

from __future__ import annotations

import sys

from stage_surgery import save_if_close

from anyrestore.models.checkpoint import load_model
from anyrestore.models.descriptor import ModelDescriptor


def main(source: str, out: str) -> None:
    nafnet = load_model(source)
    if nafnet.descriptor.architecture != "nafnet":
        raise SystemExit(f"{source}: holds a {nafnet.descriptor.architecture}, not a nafnet")
    config = {k: v for k, v in nafnet.descriptor.config.items() if k != "drop_out_rate"}
    descriptor = ModelDescriptor.for_architecture("curve_nafnet", config)
    model = descriptor.build().eval()
    model.restorer.load_state_dict(nafnet.module.state_dict())
    gap = save_if_close(out, descriptor, model, nafnet.module, 1e-5, "the NAFNet")
    print(f"{out}: curve_nafnet from {source} (max |difference| to the NAFNet {gap:.1e})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    main(sys.argv[1], sys.argv[2])
