"""Checkpoints of architectures we do not implement load through the optional spandrel package, after all of
ours, weights-only; without spandrel the error says how to get it.

The spandrel tests skip where spandrel does not import: it is not in the `test` extra, because its
torchvision dependency does not install cleanly beside the CPU torch CI pins (see pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anyrestore.cli.main import main
from anyrestore.models import foreign
from anyrestore.models.checkpoint import CheckpointError
from anyrestore.models.zoo import resolve_model

needs_spandrel = pytest.mark.skipif(
    not foreign.spandrel_available(), reason="spandrel not importable (optional extra: anyrestore[spandrel])"
)


def _compact_checkpoint(path: Path) -> torch.nn.Module:
    """A randomly initialised Real-ESRGAN Compact (SRVGGNetCompact) x2, saved as Real-ESRGAN releases it."""
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    model = Compact(num_feat=8, num_conv=2, upscale=2).eval()
    torch.save({"params": model.state_dict()}, path)
    return model


def test_unrecognised_checkpoint_without_spandrel_says_how_to_get_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(foreign, "unavailable_reason", lambda: foreign.INSTALL_HINT)
    path = tmp_path / "unknown.pth"
    torch.save({"params": {"body.0.weight": torch.zeros(8, 3, 3, 3), "body.0.bias": torch.zeros(8)}}, path)
    with pytest.raises(CheckpointError, match=r"unrecognised architecture.*anyrestore\[spandrel\]"):
        resolve_model(path)


def test_our_architectures_keep_precedence(tmp_path: Path) -> None:
    from anyrestore.models.nafnet import NAFNet

    path = tmp_path / "nafnet.pth"  # spandrel knows NAFNet too: ours must win
    torch.save(NAFNet(width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1]).state_dict(), path)
    assert resolve_model(path).descriptor.architecture == "nafnet"


@needs_spandrel
def test_spandrel_descriptor_carries_scale_size_and_channels(tmp_path: Path, monkeypatch) -> None:
    import spandrel

    def refuse(*_args, **_kwargs):
        raise AssertionError("spandrel must get a state_dict read weights-only, never the file")

    monkeypatch.setattr(spandrel.ModelLoader, "load_from_file", refuse)
    _compact_checkpoint(tmp_path / "compact.pth")
    loaded = resolve_model(tmp_path / "compact.pth")
    d = loaded.descriptor
    assert d.architecture == "spandrel:Compact" and foreign.is_foreign(d)
    assert (d.scale, d.size_multiple, d.config["in_channels"], d.config["out_channels"]) == (2, 1, 3, 3)
    assert "fp32" in d.precisions and loaded.source == "spandrel"


@needs_spandrel
def test_spandrel_only_architecture_restores_through_the_cli(tmp_path: Path) -> None:
    model = _compact_checkpoint(tmp_path / "compact.pth")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    assert (
        main(
            [
                "restore",
                str(tmp_path / "in.png"),
                "-o",
                str(tmp_path / "out"),
                "--model",
                str(tmp_path / "compact.pth"),
                "--quiet",
            ]
        )
        == 0
    )
    out = np.asarray(Image.open(tmp_path / "out" / "in.png"))
    assert out.shape == (40, 48, 3)
    x = torch.from_numpy(np.array(Image.open(tmp_path / "in.png"))).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        direct = model(x).clamp(0, 1)
    expected = torch.round(direct[0] * 255).permute(1, 2, 0).numpy().astype(np.uint8)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1


@needs_spandrel
def test_spandrel_model_benchmarks_and_exports(tmp_path: Path) -> None:
    import json

    from anyrestore.benchmark import load_suite
    from test_benchmark import make_fixture

    _compact_checkpoint(tmp_path / "compact.pth")
    make_fixture(load_suite("adaptir-sr"), tmp_path / "data")
    argv = ["benchmark", "--suite", "adaptir-sr", "--root", str(tmp_path / "data"), "--model"]
    argv += [
        str(tmp_path / "compact.pth"),
        "--out",
        str(tmp_path / "scores"),
        "--json",
        str(tmp_path / "r.json"),
    ]
    assert main([*argv, "--quiet", "--device", "cpu"]) == 0
    sets = json.loads((tmp_path / "r.json").read_text())["models"][0]["sets"]
    assert sets["set5_x2"]["status"] == "ok" and sets["set5_x4"]["status"] == "skipped"
    pytest.importorskip("onnxruntime")
    onnx = tmp_path / "compact.onnx"
    assert (
        main(["export", "--model", str(tmp_path / "compact.pth"), "--onnx", str(onnx), "--size", "32"]) == 0
    )
    assert onnx.stat().st_size > 0
