"""Classical baselines: the shared contract, the helpers, and PSNR gains on real photos.

The photos are scikit-image's astronaut and chelsea, downscaled to 128 px on the short side and centre
cropped to 128x128, degraded with the project's own operators and rounded to 8 bits as a saved image
would be. Margins sit about 1 dB (or a third of the gain, when that is smaller) below what was measured.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anyrestore.classical import (
    BASELINES,
    DEFAULT_BASELINE,
    Baseline,
    bilateral_denoise,
    blockiness,
    bm3d_available,
    bm3d_sigma,
    box_filter,
    cbm3d_denoise,
    choose_gamma,
    deblock_dct,
    estimate_gaussian_blur,
    estimate_motion_blur,
    estimate_noise_sigma,
    estimate_streak_angle,
    gamma_correct,
    guided_filter,
    run_baseline,
    shifted_dct_luma,
    wiener_deconvolve,
)
from anyrestore.classical.jpeg_format import block_dct, dct_matrix, ijg_luma_table, luma_255
from anyrestore.degrade import OPERATORS, apply_op, apply_sequence, gaussian_kernel, parse_op_spec
from anyrestore.evaluate import psnr

EXPECTED = {
    "cbm3d": "noise",
    "nlm": "noise",
    "bilateral": "noise",
    "wiener_gaussian": "blur",
    "rl_gaussian": "blur",
    "wiener_motion": "motion_blur",
    "rl_motion": "motion_blur",
    "deblock": "jpeg",
    "deblock_dct": "jpeg",
    "dcp": "haze",
    "gamma": "low_light",
    "clahe": "low_light",
    "gamma_clahe": "low_light",
    "derain_median": "rain",
}
# (degradation, its parameters, baseline, baseline keywords, least PSNR gain in dB on every image).
GAINS = [
    ("noise", {"sigma": 25}, "nlm", {}, 2.0),
    ("noise", {"sigma": 25}, "bilateral", {}, 3.0),
    ("blur", {"sigma": 2.0}, "wiener_gaussian", {"sigma": 2.0}, 2.0),  # oracle: the true std
    ("blur", {"sigma": 2.0}, "wiener_gaussian", {}, 2.0),  # blind: +3.90/+2.86 dB
    ("blur", {"sigma": 1.0}, "wiener_gaussian", {}, 4.5),  # +9.20/+6.07 dB
    ("blur", {"sigma": 2.0}, "rl_gaussian", {}, 1.5),  # +2.90/+2.37 dB
    ("motion_blur", {"length": 15, "angle": 30}, "wiener_motion", {"length": 15, "angle": 30}, 2.0),
    ("motion_blur", {"length": 15, "angle": 30}, "wiener_motion", {}, 2.0),  # blind: +4.06/+3.24 dB
    ("motion_blur", {"length": 15, "angle": 30}, "rl_motion", {"length": 15, "angle": 30}, 3.0),
    ("motion_blur", {"length": 9, "angle": 100}, "rl_motion", {}, 3.0),  # blind: +4.52/+4.05 dB
    ("jpeg", {"quality": 20}, "deblock", {}, 0.25),
    ("jpeg", {"quality": 20}, "deblock_dct", {}, 0.12),  # luma only: +0.21/+0.38 dB RGB, +0.29/+0.53 Y
    ("haze", {"beta": 1.5}, "dcp", {}, 6.5),
    ("low_light", {}, "gamma", {}, 7.0),
    ("low_light", {}, "clahe", {}, 1.0),
    ("low_light", {}, "gamma_clahe", {}, 4.5),
    ("rain", {}, "derain_median", {}, 2.5),
]


def _photo(name: str, size: int = 128) -> torch.Tensor:
    from PIL import Image
    from skimage import data

    im = Image.fromarray(getattr(data, name)())
    scale = size / min(im.size)
    im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
    arr = np.asarray(im)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return torch.from_numpy(arr[top : top + size, left : left + size].copy()).permute(2, 0, 1).float() / 255.0


def _u8(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x * 255.0) / 255.0


@pytest.fixture(scope="module")
def scenes() -> torch.Tensor:
    """astronaut and chelsea as a (2, 3, 128, 128) batch."""
    return torch.stack([_photo("astronaut"), _photo("chelsea")])


def _degrade(x: torch.Tensor, op: str, params: dict, seed: int = 0) -> torch.Tensor:
    return _u8(apply_op(x, op, generator=torch.Generator().manual_seed(seed), **params))


def test_registry_lists_every_baseline() -> None:
    assert {name: b.target for name, b in BASELINES.items()} == EXPECTED
    for name, entry in BASELINES.items():
        assert isinstance(entry, Baseline) and callable(entry.fn), name
        assert entry.target in OPERATORS, name
        assert entry.description and "\n" not in entry.description, name
    assert set(DEFAULT_BASELINE) == set(EXPECTED.values())
    assert DEFAULT_BASELINE["noise"] == ("cbm3d" if bm3d_available() else "bilateral")
    for target, name in DEFAULT_BASELINE.items():
        assert BASELINES[name].target == target
    # Every row of the PSNR table is registered, and every registered baseline has a row (CBM3D, slow,
    # has its own test on one smaller photo).
    assert {row[2] for row in GAINS} == set(BASELINES) - {"cbm3d"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_contract(name: str, photos: torch.Tensor) -> None:
    x = _u8(apply_op(photos, "noise", generator=torch.Generator().manual_seed(3), sigma=5))
    x = x[..., :48, :40].contiguous()
    before = x.clone()
    y = run_baseline(name, x)
    assert torch.equal(x, before), "input modified"
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    y64 = run_baseline(name, x[:1].double())
    assert y64.dtype == torch.float64 and y64.shape == (1, 3, 48, 40)


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match="unknown classical baseline 'bm3d'"):
        run_baseline("bm3d", torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"shape \(N, 3, H, W\)"):
        run_baseline("gamma", torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="odd sides"):
        wiener_deconvolve(torch.zeros(1, 3, 8, 8), torch.ones(4, 4))


@pytest.mark.parametrize(
    ("op", "params", "name", "kwargs", "margin"), GAINS, ids=[f"{r[0]}-{r[2]}" for r in GAINS]
)
def test_psnr_gain(
    scenes: torch.Tensor, op: str, params: dict, name: str, kwargs: dict, margin: float
) -> None:
    degraded = _degrade(scenes, op, params)
    before = psnr(degraded, scenes, "rgb")
    after = psnr(run_baseline(name, degraded, **kwargs), scenes, "rgb")
    gain = after - before
    assert (gain >= margin).all(), f"{name} on {op}: {before.tolist()} -> {after.tolist()} dB"


def test_noise_sigma_estimate(scenes: torch.Tensor) -> None:
    for sigma in (10, 25, 50):
        est = estimate_noise_sigma(_degrade(scenes, "noise", {"sigma": sigma}, seed=sigma))
        assert ((est - sigma).abs() <= 0.2 * sigma).all(), f"sigma {sigma}: estimated {est.tolist()}"
    assert (estimate_noise_sigma(scenes) < 4).all()


def test_box_filter_is_a_window_mean() -> None:
    x = torch.rand(1, 2, 9, 11, generator=torch.Generator().manual_seed(0))
    out = box_filter(x, 2)
    assert torch.allclose(out[..., 4, 5], x[..., 2:7, 3:8].mean(dim=(-2, -1)), atol=1e-6)
    # At a corner the window is clipped to the pixels that exist.
    assert torch.allclose(out[..., 0, 0], x[..., :3, :3].mean(dim=(-2, -1)), atol=1e-6)


def test_guided_filter_keeps_constants_and_edges() -> None:
    guide = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    const = torch.full((1, 3, 32, 32), 0.3)
    assert torch.allclose(guided_filter(guide, const, radius=4, eps=1e-3), const, atol=1e-6)
    step = torch.zeros(1, 1, 32, 32)
    step[..., 16:] = 1.0
    out = guided_filter(step, step, radius=4, eps=1e-3)
    assert (out - step).abs().max() < 0.01
    # A plain mean of the same radius smears the edge: the guided filter is what keeps it.
    assert (box_filter(step, 4) - step).abs().max() > 0.3


def test_blind_estimates() -> None:
    x = _photo("astronaut")[None]
    assert torch.allclose(gamma_correct(x, gamma=1.0), x)
    dark = _degrade(x, "low_light", {})
    g = choose_gamma(dark)
    bright = gamma_correct(dark, gamma=float(g))
    luma = (bright * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1).mean()
    assert g < 1 and abs(luma.item() - 0.45) < 0.01
    for angle in (-25.0, 30.0):
        rainy = _degrade(x, "rain", {"angle": angle})
        assert estimate_streak_angle(rainy).item() == angle
    clean, blocky = blockiness(x), blockiness(_degrade(x, "jpeg", {"quality": 20}))
    assert clean < 1.15 and blocky > 1.3
    # Blockiness finds the grid of a cropped JPEG too.
    assert blockiness(_degrade(x, "jpeg", {"quality": 20})[..., 3:, 5:]) > 1.3


def test_dct_deblocker_reads_the_file_and_keeps_to_its_cells() -> None:
    x = _photo("chelsea", 128)[None]
    lq = _degrade(x, "jpeg", {"quality": 20})
    out = deblock_dct(lq)
    assert psnr(out, x, "basicsr").item() > psnr(lq, x, "basicsr").item() + 0.4
    torch.testing.assert_close(deblock_dct(lq, quality=20), out, rtol=0, atol=0)  # the table it read
    delta = out - lq  # the luma alone changes: the same change on R, G and B (where nothing clips)
    inside = ((out > 0) & (out < 1)).all(1)
    assert inside.float().mean() > 0.99
    torch.testing.assert_close(delta[:, 0][inside], delta[:, 2][inside], rtol=0, atol=2e-6)
    # Every luma DCT coefficient stays in the cell the file put it in (before the output is clipped).
    basis, table = dct_matrix(), ijg_luma_table(20).reshape(64, 1, 1)
    index = torch.round(block_dct(luma_255(lq) - 128.0, basis)[0] / table)
    moved = block_dct(shifted_dct_luma(luma_255(lq), table) - 128.0, basis)[0] - index * table
    assert (moved.abs() <= table / 2 + 1e-3).all()
    # A cropped file is deblocked on its own grid; rows and columns outside whole blocks stay.
    cropped = deblock_dct(lq[..., 3:, 5:])
    torch.testing.assert_close(cropped[..., 13:-16, 11:-16], out[..., 16:-16, 16:-16], rtol=0, atol=2e-6)
    assert torch.equal(cropped[..., :5, :], lq[..., 3:8, 5:])
    # No JPEG signature, nothing to do; per-image tables in a batch act as one at a time.
    assert torch.equal(deblock_dct(x), x)
    y = luma_255(torch.cat([lq, _degrade(x, "jpeg", {"quality": 50})]))
    tables = torch.stack([ijg_luma_table(20).flatten(), ijg_luma_table(50).flatten()])
    both = shifted_dct_luma(y, tables)
    torch.testing.assert_close(both[1:], shifted_dct_luma(y[1:], ijg_luma_table(50)), rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="multiples of 8"):
        shifted_dct_luma(y[..., :12], tables)


def test_wiener_inverts_exact_blur() -> None:
    """Without noise or rounding, Wiener with the true PSF and a tiny NSR undoes most of the blur."""
    x = _photo("chelsea", 64)[None].double()
    blurred = apply_op(x, "blur", sigma=1.5)
    restored = wiener_deconvolve(blurred, gaussian_kernel(15, 1.5), nsr=1e-7)
    assert psnr(restored, x, "rgb").item() > 35.0 > psnr(blurred, x, "rgb").item() + 10


def _noisy_jpeg(x: torch.Tensor, sigma: float, quality: int, seed: int = 0) -> torch.Tensor:
    ops = [parse_op_spec(f"noise:sigma={sigma}"), parse_op_spec(f"jpeg:quality={quality}")]
    return _u8(apply_sequence(x, ops, generator=torch.Generator().manual_seed(seed))[0])


def test_cbm3d_beats_the_bilateral_filter() -> None:
    """Blind CBM3D on one 96-px photo: well ahead of the bilateral filter on noise, and still a gain on
    noise through JPEG, where the plain noise estimate reads almost nothing."""
    x = _photo("astronaut", 96)[None]
    noisy = _degrade(x, "noise", {"sigma": 25})
    before = psnr(noisy, x, "basicsr").item()
    ours = psnr(cbm3d_denoise(noisy), x, "basicsr").item()
    bilateral = psnr(bilateral_denoise(noisy), x, "basicsr").item()
    assert ours > bilateral + 1.0 and ours > before + 3.5, (before, bilateral, ours)  # +4.12 vs +2.70 dB
    oracle = psnr(cbm3d_denoise(noisy, sigma=25), x, "basicsr").item()
    assert abs(oracle - ours) < 0.3
    mixed = _noisy_jpeg(x, 15, 40)
    assert estimate_noise_sigma(mixed).item() < 5 < bm3d_sigma(mixed).item()
    before = psnr(mixed, x, "basicsr").item()
    assert psnr(cbm3d_denoise(mixed), x, "basicsr").item() > before + 0.4  # +0.58 dB
    assert psnr(bilateral_denoise(mixed), x, "basicsr").item() < before + 0.5


def test_cbm3d_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "bm3d", None)  # what an environment without the package looks like
    with pytest.raises(ImportError, match=r"pip install 'anyrestore\[bm3d\]'"):
        cbm3d_denoise(torch.zeros(1, 3, 8, 8))


def test_blur_estimates(scenes: torch.Tensor) -> None:
    for sigma, tolerance in ((1.0, 0.15), (2.0, 0.45)):
        est = estimate_gaussian_blur(_degrade(scenes, "blur", {"sigma": sigma}))
        assert ((est - sigma).abs() <= tolerance).all(), f"sigma {sigma}: estimated {est.tolist()}"
    assert (estimate_gaussian_blur(scenes) < 0.7).all()
    for length, angle in ((15, 30), (9, 100), (21, 160)):
        for est_length, est_angle in estimate_motion_blur(
            _degrade(scenes, "motion_blur", {"length": length, "angle": angle})
        ):
            off = abs((est_angle - angle + 90) % 180 - 90)
            assert abs(est_length - length) <= 1.0 and off <= 4.0, (length, angle, est_length, est_angle)
