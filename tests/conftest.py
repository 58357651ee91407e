"""Shared fixtures: real photographs from scikit-image (shipped in its wheel, no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(2)


def _photo(name: str, size: int) -> np.ndarray:
    from PIL import Image
    from skimage import data

    array = getattr(data, name)()
    im = Image.fromarray(array)
    scale = size / min(im.size)
    im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
    return np.asarray(im)


@pytest.fixture(scope="session")
def photo_uint8() -> np.ndarray:
    """astronaut, 96x96 RGB uint8 (H, W, 3)."""
    return _photo("astronaut", 96)


@pytest.fixture(scope="session")
def photo(photo_uint8: np.ndarray) -> torch.Tensor:
    """astronaut as a (1, 3, 96, 96) float tensor in [0, 1], exactly uint8-valued."""
    return torch.from_numpy(photo_uint8).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(scope="session")
def photos() -> torch.Tensor:
    """Two different real photos (astronaut, chelsea) as a (2, 3, 64, 64) batch."""
    arrays = [_photo(n, 64)[:64, :64] for n in ("astronaut", "chelsea")]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture
def tiny_curve_nafnet():
    """Factory of small CurveNAFNets (a 2-level NAFNet of width 8, curve width 8), seeded; keyword
    arguments override, e.g. ``deblur_sigmas``."""
    from anyrestore.models.curve_nafnet import CurveNAFNet

    def build(seed: int = 0, **overrides):
        torch.manual_seed(seed)
        config = dict(width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1], curve_width=8)
        return CurveNAFNet(**{**config, **overrides})

    return build


@pytest.fixture
def seeded_weights():
    """``fill(model, std)``: every trainable parameter drawn from N(0, std^2), in sorted-name order, from
    one generator seeded 0, so the same network comes out whatever the module order. The golden-output
    tests load these weights strictly into the official implementations to produce their numbers."""

    def fill(model: torch.nn.Module, std: float = 0.1) -> torch.nn.Module:
        g = torch.Generator().manual_seed(0)
        params = {k: p for k, p in model.named_parameters() if p.requires_grad}
        with torch.no_grad():
            for key in sorted(params):
                params[key].copy_(torch.randn(params[key].shape, generator=g) * std)
        return model.eval()

    return fill


@pytest.fixture
def golden_input():
    """``make(*shape)``: the golden-output tests' input, uniform [0, 1) from a generator seeded 1."""

    def make(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=torch.Generator().manual_seed(1))

    return make


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    """A tiny NAFNet (width 8, two levels) with seeded non-trivial weights, saved as our safetensors."""
    from anyrestore.models.checkpoint import save_model
    from anyrestore.models.descriptor import ModelDescriptor

    config = {"width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]}
    descriptor = ModelDescriptor.for_architecture("nafnet", config)
    torch.manual_seed(0)
    model = descriptor.build()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return save_model(tmp_path / "tiny.safetensors", descriptor, model)
