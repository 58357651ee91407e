import pytest
import torch

from anyrestore.degrade import gaussian_noise, jpeg_compress
from anyrestore.models.curve_nafnet import CurveNAFNet, infer_curve_nafnet_config
from anyrestore.models.jpeg_dequant import (
    JPEGDequantizer,
    block_dct,
    block_idct,
    ijg_luma_table,
    luma_255,
)

TINY = dict(width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1], curve_width=8)


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    from skimage import data

    return torch.from_numpy(data.astronaut()[:192, 96:352].copy()).permute(2, 0, 1)[None].float() / 255.0


def test_fresh_stage_is_identity_and_changes_stay_in_their_cells(photo):
    stage = JPEGDequantizer(width=16, blocks=1).eval()
    lq = jpeg_compress(photo, quality=20)
    with torch.no_grad():
        assert torch.equal(stage(lq), lq)
        for p in stage.parameters():
            p.add_(torch.randn_like(p) * 0.5)
        out = stage(lq)
    assert (out - lq).abs().max() > 0.01
    # Every changed luma DCT coefficient stays within half a step of where the file put it.
    table = ijg_luma_table(20).reshape(64, 1, 1)
    change = block_dct(luma_255(out) - luma_255(lq), stage.basis)[0]
    assert (change.abs() <= table / 2 + 1e-3).all()
    # Chroma is left alone: the same change on R, G and B.
    delta = out - lq
    torch.testing.assert_close(delta[:, 0], delta[:, 1], rtol=0, atol=1e-6)
    # Images without a JPEG signature pass unchanged, and training mode never searches for one.
    with torch.no_grad():
        assert torch.equal(stage(photo), photo)
        stage.train()
        assert torch.equal(stage(lq), lq)


def test_cropped_jpeg_is_dequantised_on_its_own_grid(photo):
    stage = JPEGDequantizer(width=16, blocks=1).eval()
    with torch.no_grad():
        for p in stage.parameters():
            p.add_(torch.randn_like(p) * 0.5)
        lq = jpeg_compress(photo, quality=20)
        whole = stage(lq)
        cropped = stage(lq[..., 3:, 5:])
    # Blocks wholly inside the crop get the same correction (away from the crop's zero-padded border).
    torch.testing.assert_close(cropped[..., 37:-40, 35:-40], whole[..., 40:-40, 40:-40], rtol=0, atol=1e-5)
    assert torch.equal(cropped[..., :5, :], lq[..., 3:8, 5:])  # rows above the first whole block
    # With a first estimate, the change starts from it (the network still at zero: exactly its luma
    # change, bounded to the cells) and rows outside whole blocks are the estimate's.
    fresh = JPEGDequantizer(width=16, blocks=1, classical_share=0.0).eval()
    start = lq + 0.002 * torch.randn_like(lq[:, :1]).expand_as(lq)
    with torch.no_grad():
        out = fresh(lq[..., 3:, 5:], start[..., 3:, 5:])
        assert torch.equal(fresh(photo, photo * 0.5), photo * 0.5)  # no signature: the estimate
    torch.testing.assert_close(out, start[..., 3:, 5:], rtol=0, atol=5e-5)  # tanh bends a little
    # By default the start is the mean of the given estimate's luma and the two classical deblockers' at
    # the file's quality: the bilateral filter and the shifted DCT.
    from anyrestore.classical.jpeg import deblock_bilateral, shifted_dct_luma

    mean = JPEGDequantizer(width=16, blocks=1).eval()
    assert mean.classical_share == pytest.approx(2 / 3)
    aligned = lq[..., :192, :256]
    with torch.no_grad():
        out = mean(aligned, start[..., :192, :256])
    y = luma_255(aligned)
    bilateral = luma_255(deblock_bilateral(aligned, quality=20))
    target = (luma_255(start[..., :192, :256]) + bilateral + shifted_dct_luma(y, ijg_luma_table(20))) / 3
    # The fresh network proposes exactly that change, bounded softly to half a step each way.
    half = ijg_luma_table(20).reshape(1, 64, 1, 1) / 2
    bounded = half * torch.tanh(block_dct(target - y, mean.basis) / half)
    expected = y + block_idct(bounded, mean.basis)
    torch.testing.assert_close(luma_255(out), expected, rtol=0, atol=2e-3)


def test_curve_nafnet_runs_dequant_first_and_round_trips(photo):
    model = CurveNAFNet(**TINY, dequant_width=16, dequant_blocks=2).eval()
    cfg = infer_curve_nafnet_config(model.state_dict())
    assert cfg is not None and (cfg["dequant_width"], cfg["dequant_blocks"]) == (16, 2)
    CurveNAFNet(**cfg).load_state_dict(model.state_dict(), strict=True)
    assert "dequant_width" not in infer_curve_nafnet_config(CurveNAFNet(**TINY).state_dict())
    lq = jpeg_compress(photo, quality=20)
    with torch.no_grad():
        for p in model.dequant.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        out, stages = model(lq, return_stages=True)
        assert len(stages) == 2  # dequant, curve
        torch.testing.assert_close(stages[0], model.dequant(lq))
        torch.testing.assert_close(out, model.restorer(model.curve(model.dequant(lq))))
        torch.testing.assert_close(model(lq, jpeg_qualities=[20]), stages[0], rtol=0, atol=1e-5)
        assert 0.4 < model.analyze(lq)["JPEG table, quality 20"] <= 1.0
        assert model.analyze(photo) == {}
        global_stages, _ = model.tiling_stages()
        torch.testing.assert_close(global_stages(lq), model.curve(model.dequant(lq)))
    # With a deblocking stage, dequantisation refines its output.
    model = CurveNAFNet(**TINY, deblock_qualities=(20,), dequant_width=16, dequant_blocks=1).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
        out, stages = model(lq, return_stages=True)
        assert len(stages) == 3  # deblock, dequant, curve
        torch.testing.assert_close(stages[1], model.dequant(lq, model.deblock(lq)))
        # Training (known quality) and eval (quality read from the pixels) start alike: same output.
        torch.testing.assert_close(model(lq, jpeg_qualities=[20]), stages[1], rtol=0, atol=1e-5)
        assert set(model.analyze(lq)) == {"JPEG", "JPEG table, quality 20"}
    with pytest.raises(ValueError, match="no dequantisation stage"):
        CurveNAFNet(**TINY)(lq, jpeg_qualities=[20])
    with pytest.raises(ValueError, match="2 JPEG qualities for 1 images"):
        model(lq, jpeg_qualities=[20, 30])


def test_an_export_leaves_dequantisation_out(photo):
    from unittest import mock

    model = CurveNAFNet(**TINY, dequant_width=16, dequant_blocks=1).eval()
    lq = jpeg_compress(photo, quality=20)
    with torch.no_grad():
        for p in model.dequant.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        assert not torch.allclose(model(lq), model.restorer(model.curve(lq)))
        with mock.patch("torch.onnx.is_in_onnx_export", return_value=True):
            torch.testing.assert_close(model(lq), model.restorer(model.curve(lq)))


def test_finish_keeps_the_later_stages_change_in_proportion_to_its_size(photo):
    from anyrestore.models.curve_nafnet import JPEG_KEEP

    model = CurveNAFNet(**TINY, dequant_width=16, dequant_blocks=1).eval()
    lq = jpeg_compress(photo, quality=20)
    with torch.no_grad():
        base = model.dequant(lq)
    direction = torch.randn(1, 1, *lq.shape[-2:]).expand_as(lq)
    direction = direction / luma_255(direction).pow(2).mean().sqrt()  # 1 luma level RMS
    low, high = JPEG_KEEP
    for rms, kept in ((low / 2, 0.0), ((low + high) / 2, 0.5), (high * 2, 1.0)):
        restored = base + rms * direction
        with torch.no_grad():
            out = model.finish(lq, restored)
        torch.testing.assert_close(out, base + kept * rms * direction, rtol=0, atol=1e-5)
    assert torch.equal(model.finish(photo, photo * 0.5), photo * 0.5)  # no JPEG table: as restored
    model.train()
    assert torch.equal(model.finish(lq, lq * 0.5), lq * 0.5)
    assert torch.equal(CurveNAFNet(**TINY).eval().finish(lq, lq * 0.5), lq * 0.5)


def test_forward_and_the_inference_layer_both_finish(photo):
    from unittest import mock

    from anyrestore.inference import Restorer
    from anyrestore.models.descriptor import ModelDescriptor

    config = {**TINY, "dequant_width": 16, "dequant_blocks": 1}
    model = CurveNAFNet(**config).eval()
    descriptor = ModelDescriptor.for_architecture("curve_nafnet", config)
    lq = jpeg_compress(photo[..., :96, :128], quality=20)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        stages = [model.dequant(lq)]
        unfinished = model.restorer(model.curve(stages[0]))
        torch.testing.assert_close(model(lq), model.finish(lq, unfinished, stages[0]))
    calls = []
    finish = model.finish

    def spy(x, restored, dequantized=None, signatures=None):
        calls.append(dequantized)
        return finish(x, restored, dequantized, signatures)

    with mock.patch.object(model, "finish", side_effect=spy):
        Restorer(model, descriptor, device="cpu", tile=0, self_ensemble="off")(lq)
        assert len(calls) == 1 and calls[0] is not None  # inside forward, with its own stage output
        flipped = Restorer(model, descriptor, device="cpu", tile=0, self_ensemble="flips")(lq)
        assert len(calls) == 2 and calls[1] is None  # stages run apart: the inference layer finishes
    # ... with the dequantised image the stages kept when they ran apart (not computed again), the same
    # as computed again from the input.
    assert model._apart is None
    with torch.no_grad():
        whole, local = model.tiling_stages()
        source = whole(lq)
        assert model._apart is not None and torch.equal(model._apart[1], stages[0])
        restored = sum(local(source.flip(d)).flip(d) for d in ([], [-1], [-2], [-1, -2])) / 4
        with mock.patch.object(model.dequant, "correct", side_effect=AssertionError("computed again")):
            kept = model.finish(lq, restored)
        torch.testing.assert_close(kept, model.finish(lq, restored), rtol=0, atol=1e-6)
    torch.testing.assert_close(flipped, kept.clamp(0, 1), rtol=0, atol=1e-5)


def test_flat_noise_tells_noise_before_jpeg_from_jpeg_alone(photo):
    from anyrestore.models.curve_nafnet import JPEG_NOISE, flat_noise

    g = torch.Generator().manual_seed(0)
    alone = flat_noise(luma_255(jpeg_compress(photo, quality=40)))
    noisy = flat_noise(luma_255(jpeg_compress(gaussian_noise(photo, sigma=15, generator=g), quality=40)))
    assert alone < JPEG_NOISE[0] < JPEG_NOISE[1] < noisy, (alone, noisy)
    assert flat_noise(torch.zeros(1, 1, 4, 4)) == 0.0


def test_finish_keeps_denoising_when_noise_came_before_jpeg(photo):
    model = CurveNAFNet(**TINY, dequant_width=16, dequant_blocks=1).eval()
    g = torch.Generator().manual_seed(0)
    lq = jpeg_compress(gaussian_noise(photo, sigma=15, generator=g), quality=40)
    restored = model.dequant(lq) + 0.004  # one luma level: a small change, kept for the noise
    with torch.no_grad():
        torch.testing.assert_close(model.finish(lq, restored), restored, rtol=0, atol=1e-6)
