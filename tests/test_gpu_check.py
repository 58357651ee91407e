"""benchmarks/gpu_check.py: its loader of the authors' code (fast), and the whole check reduced (slow)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_official_nafnet(root: Path) -> Path:
    """A stand-in for megvii-research/NAFNet laid out as the real one, importing as it does: its arch file
    imports basicsr.models.archs.arch_util, which imports basicsr.utils (the framework the loader must
    not run). The network itself is ours, so outputs must agree exactly."""
    archs = root / "NAFNet" / "basicsr" / "models" / "archs"
    archs.mkdir(parents=True)
    (root / "NAFNet" / "basicsr" / "__init__.py").write_text("raise ImportError('the training framework')\n")
    (archs / "__init__.py").write_text("raise ImportError('every architecture at once')\n")
    (archs / "arch_util.py").write_text("from basicsr.utils import get_root_logger\nLayerNorm2d = None\n")
    (archs / "NAFNet_arch.py").write_text(
        "from basicsr.models.archs.arch_util import LayerNorm2d\n"
        "from anyrestore.models.nafnet import NAFNet as _Ours\n\n\n"
        "class NAFNet(_Ours):\n"
        "    def __init__(self, img_channel=3, width=16, middle_blk_num=1, enc_blk_nums=(),\n"
        "                 dec_blk_nums=()):\n"
        "        super().__init__(img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums)\n"
    )
    return root


def test_official_comparison_loads_the_authors_module_or_says_why_not(tmp_path: Path) -> None:
    gc = _gpu_check()
    model, descriptor = gc._build("nafnet", reduced=True)
    x = torch.rand(1, 3, 32, 32)
    cpu = torch.device("cpu")
    result = gc.compare_official(
        "nafnet", model, descriptor.config, _fake_official_nafnet(tmp_path), x, cpu, 1
    )
    assert result["max_abs_difference_fp32"] == 0.0, result
    assert result["ours_fp32_images_per_s"] > 0 and result["official_bf16_images_per_s"] > 0
    missing = gc.compare_official(
        "restormer", *gc._build("restormer", reduced=True)[:1], {}, tmp_path, x, cpu, 1
    )
    assert missing == {
        "skipped": f"Restormer/basicsr/models/archs/restormer_arch.py not under --official {tmp_path}"
    }
    (tmp_path / "PromptIR" / "net").mkdir(parents=True)
    (tmp_path / "PromptIR" / "net" / "model.py").write_text("")
    promptir, d = gc._build("promptir", reduced=True)
    assert (
        "fixes dim 48" in gc.compare_official("promptir", promptir, d.config, tmp_path, x, cpu, 1)["skipped"]
    )


@pytest.mark.slow
def test_reduced_gpu_check_runs_end_to_end_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "out"
    official = _fake_official_nafnet(tmp_path / "official")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--reduced", "--out", str(out), "--official", str(official)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert (out / "gpu_check.log").read_text().count("\n") > 10
    sections = report["sections"]
    assert list(sections) == ["tests", "train", "mac", "inference"]
    assert not [name for name, entry in sections.items() if "error" in entry]
    assert sections["tests"]["exit_code"] in (0, 5)  # no CUDA: the gpu tests skip (5: none selected)
    assert sections["train"]["rows"]["bf16"]["it_s"] > 0 and sections["train"]["rows"]["fp32"]["it_s"] > 0
    mac = sections["mac"]
    assert mac["spearman"] > 0.99 and mac["max_relative_score_difference"] < 1e-4
    models = sections["inference"]["models"]
    assert set(models) == {"promptir", "swinir", "restormer", "nafnet", "default"}
    for name, entry in models.items():
        ran = [row for row in entry["variants"] if "images_per_s" in row]
        assert len(ran) >= 4, (name, entry["variants"])  # fp32/bf16 x channels-last on/off at least
    assert any(row.get("compile") for row in models["nafnet"]["variants"])
    assert models["nafnet"]["official"]["max_abs_difference_fp32"] == 0.0
    assert "not under --official" in models["restormer"]["official"]["skipped"]
