"""Behaviour and numbers of every degradation operator in ``anyrestore.degrade``."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import anyrestore.degrade as D
from anyrestore.degrade._util import FFT_MIN_TAPS, correlate_valid


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """skimage's astronaut, 128 x 128, as a (1, 3, H, W) float tensor."""
    skdata = pytest.importorskip("skimage.data")
    img = Image.fromarray(skdata.astronaut()).resize((128, 128), Image.BICUBIC)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    """A small smooth-ish random batch (2, 3, 64, 64) in [0.05, 0.95]."""
    g = gen(123)
    coarse = torch.rand(2, 3, 8, 8, generator=g)
    x = F.interpolate(coarse, size=(64, 64), mode="bilinear", align_corners=False)
    return 0.05 + 0.9 * (x + 0.1 * torch.rand(2, 3, 64, 64, generator=g)) / 1.1


OPS = list(D.OPERATORS)


# ---------------------------------------------------------------- properties every operator must have


@pytest.mark.parametrize("name", OPS)
def test_shape_dtype_range_purity(name: str, batch: torch.Tensor) -> None:
    before = batch.clone()
    y = D.apply_op(batch, name, generator=gen())
    assert torch.equal(batch, before), "input was modified"
    expected = (2, 3, 16, 16) if name == "downsample" else tuple(batch.shape)
    assert tuple(y.shape) == expected
    assert y.dtype == torch.float32 and y.device == batch.device
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert y.data_ptr() != batch.data_ptr()


@pytest.mark.parametrize("name", OPS)
def test_float64_kept(name: str, batch: torch.Tensor) -> None:
    y = D.apply_op(batch.double(), name, generator=gen())
    assert y.dtype == torch.float64


@pytest.mark.parametrize("name", OPS)
def test_seeded_determinism(name: str, batch: torch.Tensor) -> None:
    a = D.apply_op(batch, name, generator=gen(7))
    b = D.apply_op(batch, name, generator=gen(7))
    assert torch.equal(a, b)
    c = D.apply_op(batch, name, generator=gen(8))
    if D.OPERATORS[name].random:
        assert not torch.equal(a, c)
    else:
        assert torch.equal(a, c)


@pytest.mark.parametrize("name", [n for n in OPS if not D.OPERATORS[n].random])
def test_deterministic_ops_are_per_image(name: str, batch: torch.Tensor) -> None:
    whole = D.apply_op(batch, name)
    for i in range(batch.shape[0]):
        single = D.apply_op(batch[i : i + 1], name)
        torch.testing.assert_close(whole[i : i + 1], single, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", [n for n in OPS if D.OPERATORS[n].random])
def test_random_ops_draw_per_image(name: str, batch: torch.Tensor) -> None:
    same = batch[:1].expand(2, -1, -1, -1).contiguous()
    y = D.apply_op(same, name, generator=gen())
    assert not torch.equal(y[0], y[1])


def test_global_rng_used_without_generator(batch: torch.Tensor) -> None:
    torch.manual_seed(5)
    a = D.gaussian_noise(batch)
    torch.manual_seed(5)
    b = D.gaussian_noise(batch)
    assert torch.equal(a, b)


def test_bad_input_shapes() -> None:
    with pytest.raises(ValueError):
        D.gaussian_noise(torch.rand(3, 8, 8))
    with pytest.raises(ValueError):
        D.gaussian_blur(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


# ---------------------------------------------------------------- noise family


def test_noise_psnr_falls_with_sigma(photo: torch.Tensor) -> None:
    scores = [psnr(D.gaussian_noise(photo, sigma=s, generator=gen()), photo) for s in (5, 15, 25, 50)]
    assert scores == sorted(scores, reverse=True)
    assert 33.0 < scores[0] < 35.5  # 20*log10(255/5) = 34.2 before clipping
    assert torch.equal(D.gaussian_noise(photo, sigma=0, generator=gen()), photo)


def test_noise_std_matches_sigma() -> None:
    x = torch.full((1, 3, 128, 128), 0.5)
    y = D.gaussian_noise(x, sigma=10, generator=gen())
    assert abs(float((y - x).std()) * 255 - 10) < 0.3
    assert abs(float((y - x).mean())) < 1e-3


def test_poisson_statistics_and_peak(photo: torch.Tensor) -> None:
    x = torch.full((1, 3, 128, 128), 0.4)
    y = D.poisson_noise(x, peak=20, generator=gen())
    assert abs(float(y.mean()) - 0.4) < 0.01
    assert abs(float(y.var()) - 0.4 / 20) < 0.002
    assert torch.allclose(y * 20, (y * 20).round(), atol=1e-4)  # counts are integers
    scores = [psnr(D.poisson_noise(photo, peak=p, generator=gen()), photo) for p in (5, 30, 300)]
    assert scores == sorted(scores)


def test_salt_pepper_fraction() -> None:
    x = torch.full((2, 3, 128, 128), 0.5)
    y = D.salt_pepper(x, amount=0.05, salt_vs_pepper=0.25, generator=gen())
    hit = (y != 0.5).all(dim=1)
    assert torch.equal(hit, (y != 0.5).any(dim=1))  # all channels of a hit pixel change together
    assert abs(float(hit.float().mean()) - 0.05) < 0.005
    salt = (y == 1).all(dim=1)
    assert abs(float(salt.sum() / hit.sum()) - 0.25) < 0.04
    assert torch.equal(D.salt_pepper(x, amount=0.0, generator=gen()), x)


def test_speckle_is_multiplicative(photo: torch.Tensor) -> None:
    x = torch.full((1, 3, 128, 128), 0.4)
    y = D.speckle_noise(x, sigma=0.1, generator=gen())
    assert abs(float(((y - x) / x).std()) - 0.1) < 0.003
    black = torch.zeros(1, 3, 16, 16)
    assert torch.equal(D.speckle_noise(black, sigma=0.5, generator=gen()), black)
    scores = [psnr(D.speckle_noise(photo, sigma=s, generator=gen()), photo) for s in (0.05, 0.1, 0.3)]
    assert scores == sorted(scores, reverse=True)


# ---------------------------------------------------------------- blur


def test_gaussian_kernel() -> None:
    k = D.gaussian_kernel(15, 2.0)
    assert k.shape == (15, 15)
    assert abs(float(k.sum()) - 1) < 1e-12
    assert torch.equal(k, k.flip(0)) and torch.equal(k, k.t())
    assert float(k[7, 7]) == float(k.max())
    with pytest.raises(ValueError):
        D.gaussian_kernel(4, 1.0)


def test_blur_matches_2d_kernel_and_falls_with_sigma(photo: torch.Tensor) -> None:
    y = D.gaussian_blur(photo, kernel_size=15, sigma=2.0)
    k = D.gaussian_kernel(15, 2.0).float()
    ref = F.conv2d(F.pad(photo, (7, 7, 7, 7), mode="reflect"), k.expand(3, 1, 15, 15), groups=3)
    torch.testing.assert_close(y, ref.clamp(0, 1), atol=1e-5, rtol=0)
    scores = [psnr(D.gaussian_blur(photo, kernel_size=15, sigma=s), photo) for s in (0.5, 1.0, 2.0, 3.0)]
    assert scores == sorted(scores, reverse=True)
    assert torch.equal(D.gaussian_blur(photo, sigma=0), photo)
    flat = torch.full((1, 3, 32, 32), 0.3)
    torch.testing.assert_close(D.gaussian_blur(flat), flat, atol=1e-6, rtol=0)


def test_motion_kernel_properties() -> None:
    for length, angle in [(15, 0), (9.5, 33), (21, 90), (4, 135), (30, 200)]:
        k = D.motion_kernel(length, angle)
        assert abs(float(k.sum()) - 1) < 1e-12
        assert k.shape[0] % 2 == 1 and k.shape[1] % 2 == 1
        assert torch.allclose(k, k.flip(0, 1))  # centred: point-symmetric
        assert float(k.min()) >= 0
    for angle in (0, 30, 45, 90, 171):
        assert torch.equal(D.motion_kernel(1, angle), torch.ones(1, 1, dtype=torch.float64))
    row = D.motion_kernel(5, 0)
    assert row.shape == (1, 5) and torch.allclose(row, torch.full((1, 5), 0.2, dtype=torch.float64))
    assert D.motion_kernel(7, 90).shape == (7, 1)
    # Anti-aliased: a diagonal line spreads over neighbours instead of hitting pixels all-or-nothing.
    assert int((D.motion_kernel(10, 30) > 0).sum()) > 10


def test_motion_blur_identity_and_psnr(photo: torch.Tensor) -> None:
    assert torch.equal(D.motion_blur(photo, length=1, angle=37), photo)
    scores = [psnr(D.motion_blur(photo, length=n, angle=20), photo) for n in (3, 7, 15, 31)]
    assert scores == sorted(scores, reverse=True)


def test_fft_path_matches_direct_convolution(photo: torch.Tensor) -> None:
    k = D.motion_kernel(41, 45)
    assert k.numel() >= FFT_MIN_TAPS
    flat = photo.reshape(3, 1, 128, 128)
    direct = F.conv2d(flat, k.float()[None, None])
    torch.testing.assert_close(correlate_valid(flat, k), direct, atol=2e-6, rtol=0)


# ---------------------------------------------------------------- JPEG


def test_jpeg_quality_order_and_codec(photo: torch.Tensor) -> None:
    q10 = D.jpeg_compress(photo, quality=10)
    q90 = D.jpeg_compress(photo, quality=90)
    assert psnr(q10, photo) < psnr(q90, photo) - 5
    assert torch.equal(q10 * 255, (q10 * 255).round())  # decoded 8-bit values
    arr = (photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=10, subsampling=2)
    ref = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    assert np.array_equal((q10[0].permute(1, 2, 0) * 255).round().byte().numpy(), ref)


def test_jpeg_grayscale_and_errors() -> None:
    x = torch.rand(1, 1, 24, 24, generator=gen())
    assert D.jpeg_compress(x, quality=50).shape == (1, 1, 24, 24)
    with pytest.raises(ValueError):
        D.jpeg_compress(x, quality=0)


# ---------------------------------------------------------------- resizing


def _pil_bicubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pillow's antialiased bicubic on every channel as a 'F' (float32) image; size is (h, w)."""
    chans = []
    for c in range(x.shape[1]):
        img = Image.fromarray(x[0, c].numpy().astype(np.float32))
        chans.append(torch.from_numpy(np.asarray(img.resize((size[1], size[0]), Image.BICUBIC)).copy()))
    return torch.stack(chans)[None]


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 2.0, (40, 30)])
def test_imresize_matches_pillow_interior(scale, photo: torch.Tensor) -> None:
    x = photo[..., :120, :96]
    y = D.imresize(x, scale)
    ref = _pil_bicubic(x, tuple(y.shape[-2:]))
    b = 4 if not isinstance(scale, tuple) and scale > 1 else 3
    torch.testing.assert_close(y[..., b:-b, b:-b], ref[..., b:-b, b:-b], atol=1e-4, rtol=0)


def test_imresize_sizes_constant_and_roundtrip() -> None:
    x = torch.rand(1, 3, 30, 45, generator=gen())
    assert D.imresize(x, 0.5).shape[-2:] == (15, 23)  # MATLAB: ceil(H * s)
    assert D.imresize(x, 1 / 3).shape[-2:] == (10, 15)
    assert D.imresize(x, (7, 11)).shape[-2:] == (7, 11)
    assert torch.equal(D.imresize(x, 1.0), x)
    const = torch.full((1, 3, 48, 36), 0.37)
    for s in (0.5, 1 / 3, 0.25, 2.0):
        torch.testing.assert_close(D.imresize(const, s), torch.full_like(D.imresize(const, s), 0.37))
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    smooth = (0.5 + 0.3 * torch.sin(2 * math.pi * xx) * torch.cos(math.pi * yy)).expand(1, 3, 64, 64)
    back = D.imresize(D.imresize(smooth, 2.0), 0.5)
    assert float((back - smooth).abs().max()) < 2e-3


def test_downsample_crops_to_multiple(photo: torch.Tensor) -> None:
    x = photo[..., :65, :70]
    for s in (2, 3, 4):
        y = D.downsample(x, scale=s)
        assert y.shape[-2:] == (65 // s, 70 // s)
        torch.testing.assert_close(y, D.imresize(D.modcrop(x, s), 1 / s).clamp(0, 1))
    assert D.modcrop(x, 4).shape[-2:] == (64, 68)


# ---------------------------------------------------------------- weather


def test_rain(photo: torch.Tensor) -> None:
    assert torch.equal(D.rain(photo, density=0.0, generator=gen()), photo)
    scores = [psnr(D.rain(photo, density=d, generator=gen()), photo) for d in (0.001, 0.004, 0.02)]
    assert scores == sorted(scores, reverse=True)
    y = D.rain(photo, density=0.01, length=30, angle=25, width=1.7, generator=gen())
    assert bool((y >= photo - 1e-7).all())  # screen blend only lightens
    # Vertical streaks on black: strong horizontal edges of the layer, weak vertical ones.
    black = torch.zeros(1, 3, 96, 96)
    r = D.rain(black, density=0.01, length=25, angle=0, generator=gen())
    dx = (r[..., :, 1:] - r[..., :, :-1]).abs().mean()
    dy = (r[..., 1:, :] - r[..., :-1, :]).abs().mean()
    assert dx > 3 * dy
    assert torch.equal(r[:, 0], r[:, 1]) and torch.equal(r[:, 1], r[:, 2])  # grey streaks


def test_snow(photo: torch.Tensor) -> None:
    assert torch.equal(D.snow(photo, density=0.0, generator=gen()), photo)
    scores = [psnr(D.snow(photo, density=d, generator=gen()), photo) for d in (0.001, 0.004, 0.02)]
    assert scores == sorted(scores, reverse=True)
    y = D.snow(photo, density=0.01, generator=gen())
    assert bool((y >= photo - 1e-7).all())
    assert float(y.mean()) > float(photo.mean()) + 0.02  # veil brightens the whole frame
    k = D.flake_kernel(4.0, 12.0, 0.0)
    assert k.shape[0] > k.shape[1]  # falling flakes are elongated vertically


def test_haze(photo: torch.Tensor) -> None:
    assert torch.equal(D.haze(photo, beta=0.0), photo)
    scores = [psnr(D.haze(photo, beta=b), photo) for b in (0.25, 0.5, 1.0, 2.0)]
    assert scores == sorted(scores, reverse=True)
    ones = torch.ones(128, 128)
    y = D.haze(photo, beta=1.0, airlight=(0.8, 0.9, 1.0), depth=ones)
    a = torch.tensor([0.8, 0.9, 1.0]).view(1, 3, 1, 1)
    t = math.exp(-1.0)
    torch.testing.assert_close(y, (photo * t + a * (1 - t)).clamp(0, 1))
    assert torch.equal(D.haze(photo, beta=3.0, depth=torch.zeros(1, 1, 128, 128)), photo)
    with pytest.raises(ValueError):
        D.haze(photo, depth=torch.zeros(64, 64))


def test_depth_proxy(photo: torch.Tensor) -> None:
    d = D.depth_proxy(photo)
    assert d.shape == (1, 1, 128, 128)
    assert float(d.min()) >= 0 and float(d.max()) <= 1
    assert float(d[..., :16, :].mean()) > float(d[..., -16:, :].mean())  # top of the frame is far
    tv = (d[..., 1:, :] - d[..., :-1, :]).abs().mean() + (d[..., :, 1:] - d[..., :, :-1]).abs().mean()
    assert float(tv) < 0.03  # smooth


def test_low_light(photo: torch.Tensor) -> None:
    means = [float(D.low_light(photo, gain=g, generator=gen()).mean()) for g in (0.1, 0.3, 0.6)]
    assert means == sorted(means) and means[-1] < float(photo.mean())
    clean = D.low_light(photo, gamma=2.2, gain=0.3, shot=0.0, read=0.0, generator=gen())
    torch.testing.assert_close(clean, 0.3 * photo**2.2)
    stds = [
        float((D.low_light(photo, shot=s, read=0.0, generator=gen()) - 0.3 * photo**2).std())
        for s in (0.02, 0.1)
    ]
    assert stds[0] < stds[1]


# ---------------------------------------------------------------- quantize


def test_quantize() -> None:
    u8 = torch.randint(0, 256, (2, 3, 32, 32), generator=gen(), dtype=torch.uint8)
    x = u8.float() / 255.0
    assert torch.equal(D.quantize(x, bits=8), x)
    ramp = torch.linspace(0, 1, 1000).view(1, 1, 1, 1000).expand(1, 3, 4, 1000)
    q4 = D.quantize(ramp, bits=4)
    assert q4.unique().numel() == 16
    torch.testing.assert_close(q4.unique(), torch.arange(16) / 15.0)
    assert float((q4 - ramp).abs().max()) <= 0.5 / 15 + 1e-6
    assert psnr(q4, ramp) < 40


# ---------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", OPS)
def test_cuda_matches_device_and_seed(name: str, batch: torch.Tensor) -> None:
    x = batch.cuda()
    a = D.apply_op(x, name, generator=torch.Generator("cuda").manual_seed(3))
    b = D.apply_op(x, name, generator=torch.Generator("cuda").manual_seed(3))
    assert a.device == x.device and a.dtype == x.dtype and torch.equal(a, b)
    if not D.OPERATORS[name].random:
        torch.testing.assert_close(a.cpu(), D.apply_op(batch, name), atol=2e-5, rtol=0)
