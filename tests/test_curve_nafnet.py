import math

import pytest
import torch

from anyrestore.degrade import gaussian_blur, haze, jpeg_compress, low_light
from anyrestore.evaluate import psnr
from anyrestore.models.checkpoint import load_model
from anyrestore.models.curve_nafnet import (
    CURVE_EPS,
    DEBLOCK_QUALITIES,
    DEBLUR_SIGMAS,
    LUMA,
    CurveNAFNet,
    CurveStage,
    DeblockStage,
    DeblurStage,
    fit_deblock_filters,
    infer_curve_nafnet_config,
    wiener_deblur_kernel,
)
from anyrestore.models.nafnet import NAFNet, infer_nafnet_config
from anyrestore.models.registry import count_parameters, get_architecture

TINY = dict(width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1], curve_width=8)


def _set_curves(stage: CurveStage, log_a: list[float], p: list[float], b: list[float]) -> None:
    """Make the stage apply one curve everywhere: zero weights, biases the inverse of its squashing."""
    with torch.no_grad():
        stage.head.weight.zero_()
        raw_a = [3.0 * math.atanh(v / 3.0) for v in log_a]
        raw_p = [1.5 * math.atanh(math.log(v) / 1.5) for v in p]
        stage.head.bias.copy_(torch.tensor(raw_a + raw_p + b))


def test_default_config_size_and_round_trip():
    model = CurveNAFNet()
    assert count_parameters(model) == 1_996_956
    assert count_parameters(model.curve) == 35_817
    cfg = infer_curve_nafnet_config(model.state_dict())
    assert cfg is not None and cfg["width"] == 16 and cfg["curve_grid"] == 16 and cfg["curve_width"] == 32
    CurveNAFNet(**cfg).load_state_dict(model.state_dict(), strict=True)


def test_grid_comes_back_from_the_weights():
    for grid in (8, 16, 32):
        cfg = {**TINY, "curve_grid": grid}
        found = infer_curve_nafnet_config(CurveNAFNet(**cfg).state_dict())
        assert found is not None and found["curve_grid"] == grid and found["curve_width"] == 8


def test_rejects_other_architectures():
    sd = CurveNAFNet(**TINY).state_dict()
    nafnet = NAFNet(width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1]).state_dict()
    assert infer_curve_nafnet_config(nafnet) is None
    assert infer_nafnet_config(sd) is None
    assert infer_curve_nafnet_config({k: v for k, v in sd.items() if k != "curve.mix.0.weight"}) is None
    assert infer_curve_nafnet_config({}) is None


def test_a_fresh_model_is_its_nafnet():
    """The curve head starts at zero: loading a trained NAFNet into ``restorer`` changes nothing."""
    torch.manual_seed(0)
    model = CurveNAFNet(**TINY).eval()
    with torch.no_grad():
        for p in model.restorer.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        x = torch.rand(2, 3, 20, 28)
        torch.testing.assert_close(model(x), model.restorer(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(model.curve(x), x, rtol=0, atol=1e-6)


def test_curves_undo_uniform_haze_exactly():
    """I = J t + A (1 - t) is inverted by gain 1/t, exponent 1, black level A (1 - t)."""
    x = torch.rand(1, 3, 32, 48) * 0.9
    t, airlight = 0.4, [0.9, 0.85, 0.8]
    hazy = haze(x, beta=-math.log(t), airlight=airlight, depth=torch.ones(32, 48))
    stage = CurveStage(3, width=8)
    _set_curves(stage, [math.log(1 / t)] * 3, [1.0] * 3, [a * (1 - t) for a in airlight])
    with torch.no_grad():
        torch.testing.assert_close(stage(hazy), x, rtol=0, atol=1e-5)


def test_curves_undo_noiseless_under_exposure():
    """y = g x^gamma is inverted by exponent 1/gamma, gain g^(-1/gamma) and the black level -eps^p that
    makes the curve a (y + eps)^p (exact but for the eps inside the power)."""
    x = torch.rand(1, 3, 24, 24) * 0.6 + 0.3
    gamma, gain = 2.0, 0.3
    dark = low_light(x, gamma=gamma, gain=gain, shot=0.0, read=0.0)
    stage = CurveStage(3, width=8)
    a, p = gain ** (-1 / gamma), 1 / gamma
    _set_curves(stage, [math.log(a)] * 3, [p] * 3, [-(CURVE_EPS**p)] * 3)
    with torch.no_grad():
        assert (stage(dark) - x).abs().max() < 1e-2


def test_curves_follow_the_thumbnail_not_the_size():
    """The curve stage sees a fixed-size thumbnail: a flat image gives the same curves at any size."""
    torch.manual_seed(1)
    stage = CurveStage(3, width=8).eval()
    with torch.no_grad():
        for p in stage.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        colour = torch.tensor([0.2, 0.5, 0.7])[None, :, None, None]
        small = stage.curves(colour.expand(1, 3, 32, 32))[0]
        big = stage.curves(colour.expand(1, 3, 300, 200))[0]
        torch.testing.assert_close(small.mean(dim=(2, 3)), big.mean(dim=(2, 3)), rtol=1e-5, atol=1e-6)
        assert small.std() > 0  # position in the frame still matters (padding of the small CNN)


def test_loads_from_a_plain_state_dict(tmp_path):
    model = CurveNAFNet(**TINY)
    path = tmp_path / "curve.pth"
    torch.save({"params": model.state_dict()}, path)
    loaded = load_model(path)
    assert loaded.descriptor.architecture == "curve_nafnet"
    assert loaded.descriptor.config["curve_width"] == 8


def test_registered():
    arch = get_architecture("curve_nafnet")
    assert arch.size_multiple({"enc_blk_nums": [1, 1, 1, 4]}) == 16
    assert arch.size_multiple({"enc_blk_nums": [1, 1]}) == 4
    with pytest.raises(ValueError, match="thumb"):
        CurveStage(3, thumb=64, grid=48)


def _select_entry(stage: DeblurStage | DeblockStage, index: int) -> None:
    """Make the stage apply bank entry ``index`` (0 = identity) alone to every image."""
    with torch.no_grad():
        stage.head[2].weight.zero_()
        bias = torch.full((1 + len(stage.kernels),), -30.0)
        bias[0] = 30.0 if index else -30.0
        bias[index if index else 1] = 30.0
        stage.head[2].bias.copy_(bias)


def test_deblur_stage_round_trip_and_fresh_identity():
    model = CurveNAFNet(**TINY, deblur_sigmas=DEBLUR_SIGMAS).eval()
    assert model.deblur.kernels.shape == (6, 21, 21)
    cfg = infer_curve_nafnet_config(model.state_dict())
    assert cfg is not None and len(cfg["deblur_sigmas"]) == 6 and cfg["deblur_size"] == 21
    CurveNAFNet(**cfg).load_state_dict(model.state_dict(), strict=True)
    assert infer_curve_nafnet_config(CurveNAFNet(**TINY).state_dict())["deblur_sigmas"] == ()
    x = torch.rand(2, 3, 36, 52)
    with torch.no_grad():
        assert (model.deblur.weights(x)[:, 0] > 0.997).all()  # a fresh stage is nearly the identity
        smooth = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2)
        torch.testing.assert_close(model.deblur(smooth), smooth, rtol=0, atol=2e-3)
        out, stages = model(x, return_stages=True)
    assert len(stages) == 2
    with pytest.raises(ValueError, match="odd"):
        DeblurStage(size=20)


def test_deblur_stage_undoes_gaussian_blur():
    """With the sigma-2 kernel selected, the stage gains several dB on a sigma-2 blurred photo (the
    Wiener starting kernels; trained ones do better), and leaves a sharp photo's PSNR high."""
    from skimage import data

    x = torch.from_numpy(data.astronaut()[100:260, 150:310].copy()).permute(2, 0, 1)[None].float() / 255
    blurred = gaussian_blur(x, kernel_size=15, sigma=2.0)
    stage = DeblurStage().eval()
    _select_entry(stage, 1 + DEBLUR_SIGMAS.index(2.0))
    with torch.no_grad():
        assert stage.weights(blurred)[0, 1 + DEBLUR_SIGMAS.index(2.0)] > 0.999
        restored = stage(blurred)
    gain = float(psnr(restored, x) - psnr(blurred, x))
    assert gain > 3.0, gain
    assert float(wiener_deblur_kernel(2.0).sum()) == pytest.approx(1.0, abs=1e-5)


def test_deblur_estimate_is_per_image_and_export_path_agrees():
    """Each image of a batch gets its own kernel; the export path (whole bank, blended) gives the same
    numbers as the eager one (one grouped conv of the blended kernels)."""
    from unittest import mock

    torch.manual_seed(2)
    stage = DeblurStage().eval()
    with torch.no_grad():
        for p in stage.parameters():
            p.add_(torch.randn_like(p) * 0.3)
        sharp, flat = torch.rand(1, 3, 40, 48), torch.full((1, 3, 40, 48), 0.5)
        both = stage(torch.cat([sharp, flat]))
        torch.testing.assert_close(both[:1], stage(sharp), rtol=1e-5, atol=1e-5)
        w = stage.weights(torch.cat([sharp, flat]))
        assert not torch.allclose(w[0], w[1])
        torch.testing.assert_close(w.sum(dim=1), torch.ones(2))
        with mock.patch("torch.onnx.is_in_onnx_export", return_value=True):
            exported = stage(torch.cat([sharp, flat]))
        torch.testing.assert_close(exported, both, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("height", [601, 530, 272])
def test_estimators_read_a_tall_image_in_strips_with_the_same_result(height):
    """Above STRIP_ROWS + 2 * halo rows the bank estimators read the image strip by strip, and the
    deblurring stage convolves strip by strip (so their memory does not grow with the photo): the same
    blend weights and outputs as one pass, also for heights that are not multiples of the stride."""
    from unittest import mock

    torch.manual_seed(3)
    stages = [DeblurStage(), DeblockStage()]
    x = torch.rand(2, 3, height, 37)
    with torch.no_grad():
        for stage in stages:
            for q in stage.parameters():
                q.add_(torch.randn_like(q) * 0.3)
            stage.head[2].bias[0] = 0.0  # strength about 1/2, so the bank's share is visible
            stripped, stripped_out = stage.weights(x), stage(x)
            with mock.patch("anyrestore.models.curve_nafnet.STRIP_ROWS", 10_000):
                whole, whole_out = stage.weights(x), stage(x)
            torch.testing.assert_close(stripped, whole, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(stripped_out, whole_out, rtol=1e-5, atol=1e-5)
            assert (whole[:, 1:].sum(dim=1) > 0.01).all()  # the bank has a share: not trivially equal


def test_curve_stage_applies_its_curves_strip_by_strip_as_in_one_pass():
    """On images taller than STRIP_ROWS the full-resolution curves are built and applied a strip of rows
    at a time (separable bilinear upsampling): the same output as one pass, and gradients still flow."""
    from unittest import mock

    torch.manual_seed(4)
    stage = CurveStage(width=8)
    with torch.no_grad():
        stage.head.weight.normal_(0.0, 0.3)
    x = torch.rand(2, 3, 601, 45, requires_grad=True)
    stripped = stage(x)
    with mock.patch("anyrestore.models.curve_nafnet.STRIP_ROWS", 10_000):
        whole = stage(x)
    torch.testing.assert_close(stripped, whole, rtol=1e-5, atol=1e-5)
    assert (whole - x).abs().mean() > 0.01  # the curves are not the identity
    stripped.sum().backward()
    assert stage.head.weight.grad is not None and stage.head.weight.grad.abs().sum() > 0


def test_deblock_stage_moves_a_grid_found_off_the_corner_in_eval_mode_only():
    """An image whose grid is found 3 rows and 5 columns off is padded by that at the top and left,
    deblocked and cropped back, its blend read on the padded image; training (aligned crops) and export
    never shift, nor do images under 128 pixels a side."""
    from unittest import mock

    torch.manual_seed(5)
    stage = DeblockStage(qualities=(20,), size=5)
    with torch.no_grad():
        for q in stage.parameters():
            q.add_(torch.randn_like(q) * 0.05)
    x = torch.rand(1, 3, 128, 136)
    padded = torch.nn.functional.pad(x, (5, 0, 3, 0), mode="replicate")
    with torch.no_grad(), mock.patch.object(DeblockStage, "grid_shifts", return_value=[(3, 5)]):
        moved = stage.eval()(x)
        expected = stage.apply_weights(padded, stage.weights(padded))[..., 3:, 5:]
        torch.testing.assert_close(moved, expected)
        in_training = stage.train()(x)
        torch.testing.assert_close(in_training, stage.apply_weights(x, stage.weights(x)))
        assert (moved - in_training).abs().max() > 1e-4
        small = x[..., :120, :]  # under GRID_MIN_SIZE: too few blocks to tell, never shifted
        torch.testing.assert_close(stage.eval()(small), stage.apply_weights(small, stage.weights(small)))


def _luma(x: torch.Tensor) -> torch.Tensor:
    return (x * torch.tensor(LUMA)[None, :, None, None]).sum(1, keepdim=True)


def test_deblock_stage_filters_each_block_position_and_only_luma():
    """Pixel (8i + a, 8j + b) goes through filter a * 8 + b of the selected entry (checked against a
    plain per-position convolution of the reflect-padded luma); the correction of luma is added to R, G
    and B alike, so chroma (Cb, Cr) stays; the JPEG grid stays at the top-left corner of any size."""
    torch.manual_seed(0)
    stage = DeblockStage(qualities=(10, 20), size=5).eval()
    with torch.no_grad():
        stage.kernels.normal_(std=0.2)
        stage.offsets.normal_(std=0.1)
    _select_entry(stage, 2)
    x = torch.rand(2, 3, 24, 40)
    with torch.no_grad():
        out = stage(x)
        gray = _luma(x)
        padded = torch.nn.functional.pad(gray, (2, 2, 2, 2), mode="reflect")
        expected = torch.empty_like(gray)
        for a in range(8):
            for b in range(8):
                k = stage.kernels[1, a * 8 + b][None, None]
                full = torch.nn.functional.conv2d(padded, k) + stage.offsets[1, a * 8 + b]
                expected[..., a::8, b::8] = full[..., a::8, b::8]
    torch.testing.assert_close(out, x + (expected - gray), rtol=1e-5, atol=1e-5)
    # Chroma unchanged: the output minus the input is the same in every channel.
    torch.testing.assert_close(out - x, (out - x)[:, :1].expand_as(x), rtol=0, atol=1e-6)
    # A 21 x 30 image is the top-left corner of itself padded (bottom/right) to 24 x 32.
    odd = torch.rand(1, 3, 21, 30)
    big = torch.nn.functional.pad(odd, (0, 2, 0, 3), mode="replicate")
    with torch.no_grad():
        torch.testing.assert_close(stage(odd), stage(big)[..., :21, :30], rtol=1e-5, atol=1e-5)
    _select_entry(stage, 0)
    with torch.no_grad():
        torch.testing.assert_close(stage(x), x, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        DeblockStage(size=10)


def test_deblock_stage_round_trip_fresh_identity_and_export_path():
    model = CurveNAFNet(**TINY, deblur_sigmas=DEBLUR_SIGMAS, deblock_qualities=DEBLOCK_QUALITIES).eval()
    assert model.deblock.kernels.shape == (5, 64, 11, 11) and model.deblock.offsets.shape == (5, 64)
    cfg = infer_curve_nafnet_config(model.state_dict())
    assert (
        cfg is not None and tuple(cfg["deblock_qualities"]) == DEBLOCK_QUALITIES and cfg["deblock_size"] == 11
    )
    CurveNAFNet(**cfg).load_state_dict(model.state_dict(), strict=True)
    assert "deblock_qualities" not in infer_curve_nafnet_config(CurveNAFNet(**TINY).state_dict())
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        assert (model.deblock.weights(x)[:, 0] > 0.997).all()
        torch.testing.assert_close(model.deblock(x), x, rtol=0, atol=1e-6)  # fresh filters are deltas
        out, stages = model(x, return_stages=True)
        assert len(stages) == 3  # deblock, curve, deblur
        torch.testing.assert_close(out, model.restorer(model.deblur(model.curve(model.deblock(x)))))

    with torch.no_grad():
        analysis = model.analyze(x)
    assert set(analysis) == {"JPEG", "blur"} and all(0.0 <= v < 0.01 for v in analysis.values())
    assert CurveNAFNet(**TINY).analyze(x) == {}

    from unittest import mock

    stage = model.deblock
    with torch.no_grad():
        for p in stage.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        w = stage.weights(x)
        assert not torch.allclose(w[0], w[1])
        torch.testing.assert_close(w.sum(dim=1), torch.ones(2))
        eager = stage(x)
        torch.testing.assert_close(eager[:1], stage(x[:1]), rtol=1e-5, atol=1e-5)
        with mock.patch("torch.onnx.is_in_onnx_export", return_value=True):
            torch.testing.assert_close(stage(x), eager, rtol=1e-5, atol=1e-5)


def test_fitted_deblock_filters_undo_jpeg_on_another_photo():
    """Filters fitted by least squares on one JPEG-compressed photo (quality 20) take several tenths of
    a dB off the JPEG error of another photo; the identity entry changes nothing."""
    from skimage import data

    def photo(array):
        h, w = array.shape[:2]
        return torch.from_numpy(array[: h - h % 8, : w - w % 8].copy()).permute(2, 0, 1)[None].float() / 255

    train = [photo(data.astronaut()), photo(data.coffee())]
    test = photo(data.chelsea()[:192, :256])
    pairs = [(_luma(jpeg_compress(x, quality=20)), _luma(x)) for x in train]
    kernels, offsets = fit_deblock_filters(pairs, size=7)
    stage = DeblockStage(qualities=(20,), size=7).eval()
    with torch.no_grad():
        stage.kernels[0], stage.offsets[0] = kernels, offsets
    _select_entry(stage, 1)
    decoded = jpeg_compress(test, quality=20)
    with torch.no_grad():
        gain = float(psnr(stage(decoded).clamp(0, 1), test) - psnr(decoded, test))
    assert gain > 0.3, gain
    with pytest.raises(ValueError, match="multiples of 8"):
        fit_deblock_filters([(torch.rand(1, 1, 20, 24), torch.rand(1, 1, 20, 24))])
