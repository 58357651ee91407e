"""The v2 pipeline (scripts/build_default_v2.py) through its GPU script (scripts/default_v2_gpu.sh), run on
CPU at the smoke budget: every step end to end on a tiny network, the outputs the device run brings back,
and a rerun that trains nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from anyrestore.models.checkpoint import load_model
from anyrestore.models.context_nafnet import DEGRADATIONS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "default_v2_gpu.sh"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    for split, names in (
        ("train", ("astronaut", "coffee")),
        ("validation", ("chelsea",)),
        ("test", ("rocket",)),
    ):
        (root / split).mkdir()
        for name in names:
            Image.fromarray(getattr(data, name)()[:160, :160]).save(root / split / f"{name}.png")
    return root


def _build(photos: Path, runs: Path, out: Path) -> subprocess.CompletedProcess:
    settings = {"BUDGET": "smoke", "DEVICE": "cpu", "PRECISION": "fp32", "WORKERS": "0", "SEEDS": "0"}
    env = {**os.environ, **settings, "STEPS": "model", "RUNS": str(runs), "OUT": str(out)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        ["bash", str(SCRIPT), str(photos)], capture_output=True, text=True, timeout=900, env=env
    )


def test_pipeline_builds_a_candidate_with_experts_and_estimator_then_skips_finished_runs(
    photos, tmp_path
) -> None:
    out, back = tmp_path / "v2", tmp_path / "back"
    result = _build(photos, out, back)
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]
    assert sorted(p.name for p in back.iterdir()) == [
        "ablation.json",
        "ablation.md",
        "decisions.json",
        "default_v2.safetensors",
        "run.log",
        "runs.tar.gz",
    ]
    with tarfile.open(back / "runs.tar.gz") as archive:
        names = archive.getnames()
    log = json.loads((out / "ablation.json").read_text())
    decisions = json.loads((out / "decisions.json").read_text())
    backbone = decisions["seed0/backbone"]["kept"]
    assert backbone in ("ram_mac", "scratch")
    assert set(decisions["seed0/backbone"]["validation_psnr"]) == {"ram_mac", "scratch"}
    prefix = "" if backbone == "ram_mac" else "scratch_"
    assert f"./seed0/{prefix}estimator/metrics.jsonl" in names and "./seed0/pretrain/recipe.yaml" in names
    runs = ["pretrain", "ram_mac", "scratch", f"{prefix}experts", f"{prefix}experts_even"]
    runs += [f"{prefix}estimator", f"{prefix}estimator_restore", f"{backbone}_long"]
    assert list(log) == [f"seed0/{name}" for name in runs]
    assert log["seed0/scratch"]["iterations"] == 4  # the same compute as pretrain + ram_mac
    assert log["seed0/pretrain"]["iterations"] == log["seed0/ram_mac"]["iterations"] == 2
    assert all(entry["val"]["psnr"] > 10 for entry in log.values())
    adapters = decisions["seed0/adapters"]
    assert log[f"seed0/{prefix}experts_even"]["iterations"] == 0
    assert set(adapters["validation_psnr"]) == {
        f"{prefix}experts_even",
        f"{prefix}estimator",
        f"{prefix}estimator_restore",
        f"{backbone}_long",
    }
    assert adapters["kept"] == max(adapters["validation_psnr"], key=adapters["validation_psnr"].get)
    assert "ram_finetune: mac ranking computed at start-up, top 30%" in result.stdout
    assert load_model(back / "default_v2.safetensors").descriptor.architecture == "context_nafnet"

    candidate = Path((out / "candidates.txt").read_text().strip())
    assert candidate == out / "seed0" / adapters["kept"] / "model.safetensors"
    pretrained = load_model(out / "seed0" / "pretrain" / "model.safetensors").module.state_dict()
    tuned = load_model(out / "seed0" / "ram_mac" / "model.safetensors").module.state_dict()
    changed = [k for k in pretrained if not torch.equal(pretrained[k], tuned[k])]
    assert 0 < len(changed) < len(pretrained)  # MAC fine-tuning moved some units only
    # The experts and estimator steps froze the backbone: it is the chosen one, bit for bit.
    estimator = load_model(out / "seed0" / f"{prefix}estimator" / "model.safetensors")
    assert estimator.module.classes == ("clean", *DEGRADATIONS)
    chosen = load_model(out / "seed0" / backbone / "model.safetensors").module.state_dict()
    final = estimator.module.state_dict()
    shared = [k for k in chosen if ".experts." not in k and not k.startswith("estimator.")]
    assert all(torch.equal(final[k], chosen[k]) for k in shared)
    # The blend taught by restoration moved the estimator of the same experts, and nothing else.
    experts = load_model(out / "seed0" / f"{prefix}experts" / "model.safetensors").module.state_dict()
    blend = load_model(out / "seed0" / f"{prefix}estimator_restore" / "model.safetensors").module.state_dict()
    moved = {k for k in experts if not torch.equal(experts[k], blend[k])}
    assert moved and all(k.startswith("estimator.") for k in moved)
    # The even blend is the experts with the estimator's last layer zeroed: 1/8 each for every image.
    even = load_model(out / "seed0" / f"{prefix}experts_even" / "model.safetensors").module
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(even.estimate(x).softmax(1), torch.full((2, 8), 1 / 8))
    assert all(
        torch.equal(even.state_dict()[k], experts[k]) for k in experts if not k.startswith("estimator.2")
    )
    assert not (out / "data" / "test").exists()  # the test split is never laid out for training

    again = _build(photos, out, back)
    assert again.returncode == 0, (again.stdout + again.stderr)[-2000:]
    assert "done:" not in again.stdout  # every run was finished: nothing trained again


def test_plain_backbone_only_skips_ram_and_the_ablation(photos, tmp_path) -> None:
    out = tmp_path / "v2"
    args = ["--photos", str(photos), "--out", str(out), "--budget", "smoke", "--backbone", "scratch"]
    script = ROOT / "scripts" / "build_default_v2.py"
    result = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-2000:]
    log = json.loads((out / "ablation.json").read_text())
    names = ["scratch", "scratch_experts", "scratch_experts_even", "scratch_estimator"]
    names += ["scratch_estimator_restore", "scratch_long"]
    assert list(log) == [f"seed0/{name}" for name in names]
    decisions = json.loads((out / "decisions.json").read_text())
    assert decisions["seed0/backbone"]["kept"] == "scratch"
    assert list(decisions["seed0/backbone"]["validation_psnr"]) == ["scratch"]
    assert not (out / "seed0" / "pretrain").exists()
    kept = decisions["seed0/adapters"]["kept"]
    assert (out / "candidates.txt").read_text().strip() == str(out / "seed0" / kept / "model.safetensors")
