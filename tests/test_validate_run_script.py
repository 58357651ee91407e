"""scripts/validate_run.py: a finished run's EMA and raw weights scored on its own validation sets."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
from PIL import Image

from anyrestore.train import Trainer, load_recipe

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "validate_run.py"


def test_scores_ema_and_raw_weights_and_refuses_an_unfinished_run(tmp_path: Path) -> None:
    from skimage import data

    for split, size in (("train", 96), ("val", 48)):
        (tmp_path / split).mkdir()
        Image.fromarray(data.astronaut()).resize((size, size)).save(tmp_path / split / "astronaut.png")
    overrides = [f"data_root={tmp_path}", "schedule.iterations=6", "schedule.warmup=1", "data.val.every=6"]
    overrides += ["data.train.batch_size=2", "data.train.sets.0.patch_size=32", "ema.decay=0.99"]
    run = tmp_path / "run"
    result = Trainer(load_recipe("tiny_denoise", overrides), run, progress=False).run()

    spec = importlib.util.spec_from_file_location("validate_run", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    scores = script.main([str(run), "--json", str(tmp_path / "scores.json")])[str(run)]
    assert scores["ema"] == pytest.approx(result.validation["psnr"], abs=1e-6)
    assert math.isfinite(scores["raw"]) and scores["raw"] != scores["ema"]
    assert json.loads((tmp_path / "scores.json").read_text()) == {str(run): scores}
    with pytest.raises(SystemExit, match="train: no recipe.yaml"):
        script.main([str(tmp_path / "train")])
