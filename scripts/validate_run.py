"""Score finished training runs on their own validation sets, with their EMA and their raw final weights.

    python scripts/validate_run.py RUN [RUN ...] [--device cpu] [--json FILE]

A run folder holds ``recipe.yaml`` and ``model.safetensors`` (both written by ``anyrestore train``). Each
run's weights are scored by :func:`anyrestore.train.validate_recipe`: the recipe's validation sets, seed,
preset and size multiple, so the EMA figure equals the run's last logged validation. The raw figure tells
whether the average is fair to the run: a short run that starts from other weights and keeps a fixed EMA
decay ends with an average still partly its start (docs/default-model-v2.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from anyrestore.devices import resolve_device
from anyrestore.io import write_atomically
from anyrestore.models.checkpoint import load_model
from anyrestore.train import FINAL_WEIGHTS, RECIPE_FILE, recipe_from_dict, validate_recipe


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (recipe.yaml, model.safetensors)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the scores here")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    results: dict[str, dict[str, float]] = {}
    for run in args.runs:
        for needed in (RECIPE_FILE, FINAL_WEIGHTS):
            if not (run / needed).exists():
                raise SystemExit(f"{run}: no {needed} (not a finished run of anyrestore train)")
        recipe_path = run / RECIPE_FILE
        recipe = recipe_from_dict(yaml.safe_load(recipe_path.read_text()), str(recipe_path))
        scores: dict[str, float] = {}
        for label, prefer_ema in (("ema", True), ("raw", False)):
            loaded = load_model(run / FINAL_WEIGHTS, prefer_ema=prefer_ema)
            scores[label] = validate_recipe(loaded.module, loaded.descriptor, recipe, device=device)["psnr"]
            print(f"{run}: {loaded.source} {scores[label]:.2f} dB", flush=True)
        results[str(run)] = scores
    if args.json is not None:
        write_atomically(args.json, json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
