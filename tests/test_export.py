"""``anyrestore export``: ONNX graphs that map [0, 1] RGB to [0, 1] RGB like the PyTorch restorer.

Needs the ``export`` extra (onnx, onnxruntime): skipped without it, failed instead when
``ANYRESTORE_EXPORT_TESTS=1``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from anyrestore.cli import export_cmd
from anyrestore.export import ExportError, export_onnx
from anyrestore.inference import Restorer
from anyrestore.models.checkpoint import LoadedModel, load_model, save_model
from anyrestore.models.descriptor import ModelDescriptor

TOLERANCE = 1e-4
TINY = {
    "nafnet": {"width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]},
    "curve_nafnet": {
        "width": 8,
        "enc_blk_nums": [1, 1],
        "middle_blk_num": 1,
        "dec_blk_nums": [1, 1],
        "curve_width": 8,
        "deblur_sigmas": [1.0, 2.0, 3.0],
        "deblur_size": 9,
        "deblock_qualities": [20, 50],
        "deblock_size": 5,
    },
    "restormer": {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "heads": [1, 2, 2, 4]},
    "context_nafnet": {"width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]},
}


def _require_onnx() -> None:
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        reason = f"{', '.join(missing)} not installed (pip install 'anyrestore[export]')"
        if os.environ.get("ANYRESTORE_EXPORT_TESTS") == "1":
            pytest.fail(f"ANYRESTORE_EXPORT_TESTS=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def onnx_available() -> None:
    _require_onnx()


def tiny_model(arch: str, path: Path, seed: int = 0, **config) -> Path:
    descriptor = ModelDescriptor.for_architecture(arch, {**TINY[arch], **config})
    torch.manual_seed(seed)
    model = descriptor.build()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return save_model(path, descriptor, model)


def run_onnx(path: Path, x: torch.Tensor, side: torch.Tensor | None = None) -> torch.Tensor:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {"image": x.numpy()} if side is None else {"image": x.numpy(), "side": side.numpy()}
    return torch.from_numpy(session.run(None, feed)[0])


def export_cli(*argv: str) -> None:
    parser = argparse.ArgumentParser()
    export_cmd.add_arguments(parser)
    assert export_cmd.run(parser.parse_args(list(argv))) == 0


def test_nafnet_dynamic_export_matches_the_restorer(tmp_path: Path, photos: torch.Tensor, capsys) -> None:
    checkpoint = tiny_model("nafnet", tmp_path / "nafnet.safetensors")
    out = tmp_path / "nafnet.onnx"
    export_cli("--model", str(checkpoint), "--onnx", str(out), "--size", "32", "--dynamic")
    printed = capsys.readouterr().out
    assert "max |difference|" in printed and "on the photo and JPEG q20 at 2x3x27x21" in printed
    assert out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    # Real photos at a size that is not a multiple of the model's 4, in a batch of 2: the padding is
    # in the graph, and the result is what the PyTorch restorer makes of them.
    x = photos[:, :, :45, :61].contiguous()
    expected = Restorer(load_model(checkpoint), device="cpu", tile=0)(x)
    got = run_onnx(out, x)
    assert got.shape == x.shape
    assert (got - expected).abs().max() <= TOLERANCE
    assert (got - x).abs().mean() > 1e-3  # the model does change the photos


def test_curve_nafnet_dynamic_export(tmp_path: Path, photos: torch.Tensor) -> None:
    """The default model's design: the thumbnail and its curves are resized inside the graph, so one
    graph serves every input size; the deblur and deblock stages' per-image blends survive a dynamic
    batch."""
    checkpoint = tiny_model("curve_nafnet", tmp_path / "curve.safetensors")
    out = tmp_path / "curve.onnx"
    export_cli("--model", str(checkpoint), "--onnx", str(out), "--size", "32", "--dynamic")
    for x in (photos[:1, :, :45, :61].contiguous(), photos[:, :, :96, :80].contiguous()):
        expected = Restorer(load_model(checkpoint), device="cpu", tile=0)(x)
        got = run_onnx(out, x)
        assert got.shape == x.shape
        assert (got - expected).abs().max() <= TOLERANCE


def test_context_nafnet_exports_with_a_side_input(tmp_path: Path, photo_uint8, capsys) -> None:
    """Default model v2: a second input ``side`` (N, 129) with a dynamic batch, verified on the real photo
    and its JPEG; the graph reproduces the PyTorch restorer on a real JPEG with the file's tables."""
    import onnx
    from PIL import Image

    from anyrestore.io import read_image
    from anyrestore.models.side import encode_side, side_for

    checkpoint = tiny_model("context_nafnet", tmp_path / "v2.safetensors")
    out = tmp_path / "v2.onnx"
    export_cli("--model", str(checkpoint), "--onnx", str(out), "--size", "32", "--dynamic")
    printed = capsys.readouterr().out
    assert "inputs image and side" in printed
    assert "on the photo at 1x3x32x32" in printed and "on the JPEG q20 at 1x3x32x32" in printed
    assert "on the photo and JPEG q20 at 2x3x27x21" in printed

    graph = onnx.load(str(out))
    side_input = next(i for i in graph.graph.input if i.name == "side")
    dims = [d.dim_param or d.dim_value for d in side_input.type.tensor_type.shape.dim]
    assert dims[1] == 129 and isinstance(dims[0], str)  # dynamic batch
    meta = {p.key: p.value for p in graph.metadata_props}
    assert "log2 of the JPEG file's 64 luma" in meta["anyrestore.side"] and meta["anyrestore.min_side"] == "8"

    Image.fromarray(photo_uint8[:45, :61]).save(tmp_path / "crop.jpg", quality=30)
    jpeg = read_image(tmp_path / "crop.jpg")
    photo = torch.from_numpy(photo_uint8[:48, :64].copy()).permute(2, 0, 1).float() / 255
    restorer = Restorer(load_model(checkpoint), device="cpu", tile=0, self_ensemble="off")
    jpeg_side = encode_side(jpeg.jpeg_tables)[None]
    got = run_onnx(out, jpeg.pixels[None], jpeg_side)
    assert (got[0] - restorer(jpeg.pixels, jpeg_tables=jpeg.jpeg_tables)).abs().max() <= TOLERANCE
    assert (run_onnx(out, jpeg.pixels[None], torch.zeros(1, 129)) - got).abs().max() > 1e-4  # side matters
    batch, sides = torch.stack([photo, photo.flip(-1)]), torch.cat([side_for(photo, None), jpeg_side])
    expected = torch.stack([restorer(image, side) for image, side in zip(batch, sides, strict=True)])
    assert (run_onnx(out, batch, sides) - expected).abs().max() <= TOLERANCE


def test_curve_nafnet_with_its_jpeg_path_is_refused(tmp_path: Path, monkeypatch) -> None:
    """Default model v1 reads each JPEG's table outside the graph: refused in one line, and were it not,
    the verification on the real JPEG would catch it (the photo alone would not)."""
    from anyrestore.export import onnx as onnx_export

    checkpoint = tiny_model("curve_nafnet", tmp_path / "v1.safetensors", dequant_width=8, dequant_blocks=1)
    out = tmp_path / "v1.onnx"
    with pytest.raises(
        ExportError, match=r"^curve_nafnet with a dequantisation stage .* cannot be exported"
    ) as e:
        export_cli("--model", str(checkpoint), "--onnx", str(out), "--size", "64")
    assert "\n" not in str(e.value) and not out.exists()

    monkeypatch.setattr(onnx_export, "NOT_EXPORTABLE", {})
    with pytest.raises(ExportError, match=r"differs from PyTorch by .* on the JPEG q20 at 1x3x64x64"):
        export_onnx(load_model(checkpoint), out, size=64, tolerance=TOLERANCE)
    assert not out.exists()


def test_restormer_fixed_size_export(tmp_path: Path) -> None:
    import onnx

    loaded = load_model(tiny_model("restormer", tmp_path / "restormer.safetensors"))
    report = export_onnx(loaded, tmp_path / "restormer.onnx", size=16, tolerance=TOLERANCE)
    assert report.opset == 17 and not report.dynamic
    assert [(what, shape) for what, shape, _ in report.checks] == [
        ("photo", (1, 3, 16, 16)),
        ("JPEG q20", (1, 3, 16, 16)),
    ]
    assert report.max_difference <= TOLERANCE

    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    expected = Restorer(loaded, device="cpu", tile=0)(x)
    assert (run_onnx(report.path, x) - expected).abs().max() <= TOLERANCE
    meta = {p.key: p.value for p in onnx.load(str(report.path)).metadata_props}
    assert ModelDescriptor.from_json(meta["anyrestore.descriptor"]) == loaded.descriptor
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        run_onnx(report.path, torch.rand(1, 3, 24, 16))  # a fixed-size graph refuses other sizes


def test_unsupported_models_are_clear_errors(tmp_path: Path) -> None:
    out = tmp_path / "x.onnx"
    unknown = LoadedModel(nn.Identity(), ModelDescriptor("ipt"))
    with pytest.raises(
        ExportError, match=r"^ipt models cannot be exported to ONNX \(exportable: nafnet, "
    ) as e:
        export_onnx(unknown, out)
    assert "\n" not in str(e.value)

    gray = tiny_model("nafnet", tmp_path / "gray.safetensors", img_channel=1)
    with pytest.raises(ExportError, match="1 input channels is not an RGB restorer"):
        export_cli("--model", str(gray), "--onnx", str(out))
    rgb = tiny_model("nafnet", tmp_path / "rgb.safetensors")
    with pytest.raises(ExportError, match="smaller than the model's size multiple 4"):
        export_cli("--model", str(rgb), "--onnx", str(out), "--size", "2")
    with pytest.raises(ExportError, match="refusing to overwrite the model's own checkpoint"):
        export_cli("--model", str(rgb), "--onnx", str(rgb))
    assert not out.exists()


def test_a_graph_that_disagrees_with_pytorch_is_not_written(tmp_path: Path, monkeypatch) -> None:
    from anyrestore.export import onnx as onnx_export

    loaded = load_model(tiny_model("nafnet", tmp_path / "nafnet.safetensors"))
    real_verify = onnx_export.verify

    def verify_against_other_weights(path, graph, inputs, tolerance):
        with torch.no_grad():
            graph.inner.ending.bias.add_(0.5)  # PyTorch now disagrees with the exported graph
        return real_verify(path, graph, inputs, tolerance)

    monkeypatch.setattr(onnx_export, "verify", verify_against_other_weights)
    out = tmp_path / "bad.onnx"
    with pytest.raises(
        ExportError,
        match=r"differs from PyTorch by .* on the photo at 1x3x16x16 \(tolerance 1e-04\); nothing",
    ):
        export_onnx(loaded, out, size=16)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_dynamo_exporter_needs_opset_18(tmp_path: Path) -> None:
    loaded = load_model(tiny_model("nafnet", tmp_path / "nafnet.safetensors"))
    with pytest.raises(ExportError, match="dynamo exporter writes opset 18 or later, not 17"):
        export_onnx(loaded, tmp_path / "x.onnx", exporter="dynamo", opset=17)


@pytest.mark.slow
def test_dynamo_exporter(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript", reason="--exporter dynamo needs onnxscript")
    loaded = load_model(tiny_model("nafnet", tmp_path / "nafnet.safetensors"))
    report = export_onnx(loaded, tmp_path / "n.onnx", size=16, opset=18, dynamic=True, exporter="dynamo")
    assert report.opset == 18 and len(report.checks) == 2 and report.max_difference <= TOLERANCE
