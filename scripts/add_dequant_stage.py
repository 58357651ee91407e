"""Put a fresh JPEG dequantisation stage in front of a trained default model (CurveNAFNet).

    python scripts/add_dequant_stage.py MODEL OUT [--width 96] [--blocks 4]

The stage starts as the identity (its last layer is zero), so OUT restores exactly as MODEL does; recipe
``default_model_dequant`` then trains the stage alone.
"""

from __future__ import annotations

import argparse

from stage_surgery import save_if_close, with_new_stage

from anyrestore.models import count_parameters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument(
        "model", help="a curve_nafnet checkpoint or path (e.g. src/anyrestore/weights/default-v1.safetensors)"
    )
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--blocks", type=int, default=4)
    args = parser.parse_args()
    loaded, descriptor, model = with_new_stage(
        args.model, "dequant", {"dequant_width": args.width, "dequant_blocks": args.blocks}
    )
    gap = save_if_close(args.out, descriptor, model, loaded.module, 0.0, args.model)
    size = count_parameters(model.dequant)
    print(f"{args.out}: {args.model} + dequantisation stage ({size:,} parameters), gap {gap:.1e}")


if __name__ == "__main__":
    main()
