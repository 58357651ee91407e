import io

import numpy as np
import pytest
import torch
from PIL import Image

from anyrestore.classical.jpeg_format import (
    block_dct,
    block_idct,
    dct_matrix,
    detect_jpeg,
    ijg_luma_table,
    jpeg_grid,
    luma_255,
    project_to_cells,
    whole_blocks,
)
from anyrestore.degrade import gaussian_noise, jpeg_compress


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    from skimage import data

    return torch.from_numpy(data.astronaut()[:192, 96:352].copy()).permute(2, 0, 1)[None].float() / 255.0


def test_ijg_tables_are_the_ones_pillow_writes():
    arr = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for quality in (10, 20, 50, 75, 90):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=quality)
        written = torch.tensor(Image.open(buf).quantization[0], dtype=torch.float32).reshape(8, 8)
        assert torch.equal(ijg_luma_table(quality), written)
    with pytest.raises(ValueError, match="1..100"):
        ijg_luma_table(0)


def test_block_dct_is_orthonormal_and_jpegs():
    basis = dct_matrix()
    torch.testing.assert_close(basis @ basis.T, torch.eye(64), rtol=0, atol=1e-5)
    y = torch.rand(2, 1, 16, 24) * 255
    c = block_dct(y, basis)
    assert c.shape == (2, 64, 2, 3)
    torch.testing.assert_close(block_idct(c, basis), y, rtol=0, atol=1e-3)
    # JPEG's DC is 8 times the block mean (of the level-shifted pixels).
    torch.testing.assert_close(c[:, 0], y.unfold(2, 8, 8).unfold(3, 8, 8).mean((-1, -2))[:, 0] * 8)


def test_detects_quality_and_grid_and_nothing_else(photo):
    for quality in (10, 20, 40, 75):
        found = detect_jpeg(jpeg_compress(photo, quality=quality)[0])
        assert found is not None and (found.quality, found.dy, found.dx) == (quality, 0, 0)
        assert found.score > 0.4
    cropped = jpeg_compress(photo, quality=30)[0, :, 3:, 5:]  # the grid now starts at row 5, column 3
    found = detect_jpeg(cropped)
    assert found is not None and (found.quality, found.dy, found.dx) == (30, 5, 3)
    g = torch.Generator().manual_seed(0)
    assert detect_jpeg(photo[0]) is None
    assert detect_jpeg(gaussian_noise(photo, sigma=15, generator=g)[0]) is None
    # Noise after JPEG hides the file's table.
    assert detect_jpeg(gaussian_noise(jpeg_compress(photo, quality=20), sigma=10, generator=g)[0]) is None
    assert detect_jpeg(photo[0, :, :8, :8]) is None


def test_projection_to_the_cells_only_brings_an_estimate_nearer(photo):
    lq = jpeg_compress(photo, quality=20)
    found = detect_jpeg(lq[0])
    g = torch.Generator().manual_seed(0)
    guess = lq + 0.05 * torch.randn(lq.shape, generator=g)  # far from the file in places
    projected = project_to_cells(guess, lq, found)
    table = ijg_luma_table(20).reshape(64, 1, 1)
    basis = dct_matrix()
    index = torch.round(block_dct(luma_255(lq) - 128.0, basis)[0] / table)
    coefs = block_dct(luma_255(projected) - 128.0, basis)[0]
    assert ((coefs - index * table).abs() <= table / 2 + 1e-3).all()
    truth = luma_255(photo)
    assert (luma_255(projected) - truth).pow(2).mean() < (luma_255(guess) - truth).pow(2).mean()
    assert torch.equal(project_to_cells(lq, lq, found)[..., 0, 0], lq[..., 0, 0])


def test_grid_alone_for_a_known_quality(photo):
    cropped = jpeg_compress(photo, quality=30)[0, :, 2:, 7:]  # the grid now starts at row 6, column 1
    assert jpeg_grid(cropped) == (6, 1)
    assert jpeg_grid(photo[0, :, :8, :8]) == (0, 0)  # too small to tell
    assert whole_blocks(torch.Size([3, 190, 249]), 6, 1) == (..., slice(6, 190), slice(1, 249))
