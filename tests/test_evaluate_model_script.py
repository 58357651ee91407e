"""scripts/evaluate_model.py: the rows issue 18 asks for, and one quick run on a tiny crop."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "evaluate_model.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("evaluate_model", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_and_candidates(script) -> None:
    from anyrestore.classical import BASELINES
    from anyrestore.degrade import parse_op_spec

    assert len(script.ROWS) == 14
    for row, steps in script.ROWS.items():
        for step in steps:
            parse_op_spec(step)  # every spec parses
        blind, oracles = script.candidates_for(steps, set(BASELINES))
        assert blind, row
        assert all(name in BASELINES for c in blind for name in c.split(">")), row
        for oracle in oracles:
            name = oracle.removesuffix(script.ORACLE_SUFFIX)
            assert script.oracle_params(name, steps), row
    assert script.oracle_params("wiener_gaussian", ["blur:sigma=2.0"]) == {"sigma": 2.0, "kernel_size": 15}
    assert script.oracle_params("rl_motion", ["motion_blur:length=15,angle=30"]) == {
        "length": 15,
        "angle": 30,
    }
    # Without the bm3d extra a row keeps its other candidates.
    blind, _ = script.candidates_for(["noise:sigma=25"], set(BASELINES) - {"cbm3d"})
    assert "cbm3d" not in blind and "bilateral" in blind


def test_quick_run(script, tmp_path: Path) -> None:
    rows = ["blur σ1", "haze β1.5"]
    args = ["--photos", "skimage", "--crop", "48", "--limit", "1", "--no-model", "--out", str(tmp_path)]
    assert script.main([*args, "--rows", *rows, "--save-choice", str(tmp_path / "choice.json")]) == 0
    result = json.loads((tmp_path / "scores.json").read_text())
    assert list(result["rows"]) == rows
    blur = result["rows"]["blur σ1"]
    assert blur["strongest"] in ("wiener_gaussian", "rl_gaussian")
    assert "wiener_gaussian (true kernel)" in blur["scores"]
    for entry in blur["scores"].values():
        assert math.isfinite(entry["psnr"]) and list(entry["per_photo"]) == ["astronaut"]
    assert blur["scores"][blur["strongest"]]["psnr"] > blur["scores"]["input"]["psnr"]
    assert "| blur σ1 |" in (tmp_path / "table.md").read_text()
    # A saved choice is reused as it is.
    choice = json.loads((tmp_path / "choice.json").read_text())
    choice["choice"]["blur σ1"] = "rl_gaussian"
    (tmp_path / "choice.json").write_text(json.dumps(choice))
    assert script.main([*args, "--rows", "blur σ1", "--choice", str(tmp_path / "choice.json")]) == 0
    assert json.loads((tmp_path / "scores.json").read_text())["rows"]["blur σ1"]["strongest"] == "rl_gaussian"


def test_clean_rows_saved_baselines_and_model_only(script, tmp_path: Path) -> None:
    import torch

    photo = torch.rand(1, 3, 112, 144)
    crop = script.clean_view(photo, "crop")
    assert crop.shape[-2:] == (96, 128) and torch.equal(crop, photo[..., 8:104, 8:136])
    gray = script.clean_view(photo, "gray")
    assert torch.equal(gray[:, 0], gray[:, 2]) and torch.equal(gray * 255, torch.round(gray * 255))

    common = ["--photos", "skimage", "--crop", "48", "--limit", "1"]
    saved = tmp_path / "baselines"
    assert script.main([*common, "--no-model", "--rows", "blur σ1", "--out", str(saved)]) == 0
    before = json.loads((saved / "scores.json").read_text())["rows"]["blur σ1"]

    out = tmp_path / "model"
    rows = ["blur σ1", "clean", "clean grayscale"]
    args = [*common, "--model", "default-v1", "--rows", *rows, "--out", str(out)]  # runs with flips
    assert script.main([*args, "--baselines-from", str(saved / "scores.json")]) == 0
    result = json.loads((out / "scores.json").read_text())["rows"]
    blur = result["blur σ1"]
    assert blur["strongest"] == before["strongest"]
    for key in before["scores"]:
        if key != "input":
            assert blur["scores"][key] == before["scores"][key]  # reused, not rerun
    assert {"model", "model, one pass"} <= set(blur["scores"])
    for row in ("clean", "clean grayscale"):
        assert result[row]["strongest"] is None
        assert result[row]["scores"]["input"]["psnr"] == math.inf
        assert math.isfinite(result[row]["scores"]["model"]["psnr"])

    # Model only: no baseline runs at all.
    only = [*common, "--model", "default-v1", "--rows", "blur σ1", "--no-baselines", "--out", str(out)]
    assert script.main(only) == 0
    scores = json.loads((out / "scores.json").read_text())["rows"]["blur σ1"]["scores"]
    assert set(scores) == {"input", "model", "model, one pass"}
    # The two saved halves join into one table without running anything again.
    joined = tmp_path / "joined"
    halves = ["--model-from", str(out / "scores.json"), "--baselines-from", str(saved / "scores.json")]
    assert script.main([*common, "--rows", "blur σ1", *halves, "--out", str(joined)]) == 0
    together = json.loads((joined / "scores.json").read_text())
    assert together["rows"]["blur σ1"]["scores"] == {**before["scores"], **scores}
    assert together["meta"]["model"] == "default-v1"
    blur = together["rows"]["blur σ1"]
    assert together["means"] == {
        "rows": 1,
        "input": blur["scores"]["input"]["psnr"],
        "model, one pass": blur["scores"]["model, one pass"]["psnr"],
        "model": blur["scores"]["model"]["psnr"],
        "strongest": blur["scores"][blur["strongest"]]["psnr"],
    }
    assert "| mean of the 1 degradation rows |" in (joined / "table.md").read_text()
    # Saved baselines of other inputs are refused.
    other = ["--photos", "skimage", "--crop", "64", "--limit", "1", "--no-model", "--rows", "blur σ1"]
    with pytest.raises(SystemExit, match="other inputs"):
        script.main([*other, "--baselines-from", str(saved / "scores.json")])
