"""The layers backbones share are defined once, in anyrestore.models.layers, and used from there."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

from anyrestore.models import edt, ipt, layers, nafnet, promptir, restormer, swinir

SHARED = {"DropPath", "Mlp", "Upsample", "UpsampleOneStep", "ChannelLayerNorm", "Upsampler"}


def test_models_use_the_shared_layers() -> None:
    assert swinir.DropPath is layers.DropPath and edt.DropPath is layers.DropPath
    assert swinir.Mlp is layers.Mlp
    assert swinir.Upsample is layers.Upsample and edt.Upsample is layers.Upsample
    assert edt.UpsampleOneStep is layers.UpsampleOneStep
    assert issubclass(nafnet.LayerNorm2d, layers.ChannelLayerNorm)
    assert isinstance(restormer.LayerNorm(8).body, layers.ChannelLayerNorm)
    tail = ipt.IPT(scales=(2,), n_feats=8, patch_size=12, num_layers=1).tail[0][0]
    assert type(tail) is layers.Upsample
    assert promptir.Upsample is restormer.Upsample  # Restormer's own, channel-halving upsampler


def test_no_model_defines_its_own_copy() -> None:
    # EDT's Mlp (with a depthwise conv) and Restormer's Upsample are different layers under the same name.
    allowed = {("edt.py", "Mlp"), ("restormer.py", "Upsample")}
    folder = Path(layers.__file__).parent
    copies = [
        (path.name, node.name)
        for path in sorted(folder.glob("*.py"))
        if path.name != "layers.py"
        for node in ast.parse(path.read_text(encoding="utf-8")).body
        if isinstance(node, ast.ClassDef) and node.name in SHARED and (path.name, node.name) not in allowed
    ]
    assert copies == []


def test_upsample_shapes() -> None:
    x = torch.rand(1, 4, 5, 6)
    assert layers.Upsample(4, 4)(x).shape == (1, 4, 20, 24)
    assert layers.Upsample(3, 4)(x).shape == (1, 4, 15, 18)
    assert len(layers.Upsample(1, 4)) == 0  # IPT's denoising / deraining tails
    assert layers.UpsampleOneStep(2, 4, 3)(x).shape == (1, 3, 10, 12)
