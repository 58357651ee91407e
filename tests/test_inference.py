from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import anyrestore
from anyrestore.cli.main import main
from anyrestore.evaluate import psnr
from anyrestore.inference import InferenceError, Restorer, pad_to_multiple, reflect_pad, tiled_forward
from anyrestore.io import read_image, write_image
from anyrestore.models.descriptor import ModelDescriptor


def _descriptor(multiple: int = 1, scale: int = 1, precisions=("fp32", "bf16", "fp16")) -> ModelDescriptor:
    return ModelDescriptor("test", scale=scale, size_multiple=multiple, precisions=tuple(precisions))


class LocalNet(nn.Module):
    """Three 3x3 convs (receptive radius 3) plus a residual; optional pixel-shuffle upscaling."""

    def __init__(self, scale: int = 1, multiple: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.scale, self.multiple = scale, multiple
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(8, 3 * scale * scale, 3, padding=1),
        )
        self.shuffle = nn.PixelShuffle(scale)
        self.seen: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape[-2:]))
        assert x.shape[-2] % self.multiple == 0 and x.shape[-1] % self.multiple == 0
        up = nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest") if self.scale > 1 else x
        return up + 0.1 * self.shuffle(self.body(x))


def test_reflect_pad_and_crop_are_exact() -> None:
    x = torch.rand(2, 3, 13, 29)
    padded, size = pad_to_multiple(x, 16)
    assert padded.shape[-2:] == (16, 32) and size == (13, 29)
    assert torch.equal(padded[..., :13, :29], x)
    assert torch.equal(padded[..., 13, :29], x[..., 11, :])  # mirrored, not replicated
    tiny = reflect_pad(torch.rand(1, 3, 2, 5), 14, 11)  # pad far larger than the image
    assert tiny.shape[-2:] == (16, 16) and torch.isfinite(tiny).all()
    identity = Restorer(nn.Identity(), _descriptor(multiple=16), device="cpu", tile=0)
    assert torch.equal(identity(x), x)


@pytest.mark.parametrize("scale", [1, 2])
def test_tiled_equals_whole_for_a_local_model(scale: int) -> None:
    """With a 16-pixel overlap the zero-weight margin (4 px) covers the receptive radius (3 px): exact."""
    net = LocalNet(scale=scale, multiple=4)
    x = torch.rand(1, 3, 70, 101, generator=torch.Generator().manual_seed(0))
    whole = Restorer(net, _descriptor(4, scale), device="cpu", tile=0)(x)
    net.seen.clear()
    tiled = Restorer(net, _descriptor(4, scale), device="cpu", tile=32, tile_overlap=16)(x)
    assert whole.shape == tiled.shape == (1, 3, 70 * scale, 101 * scale)
    assert len(net.seen) > 6 and max(max(s) for s in net.seen) <= 32
    assert torch.allclose(whole, tiled, atol=1e-6)


def test_blending_weights_hide_tile_differences() -> None:
    """A model whose output depends on the tile (a constant per tile) still blends without steps."""
    x = torch.zeros(1, 3, 64, 200)
    out = tiled_forward(
        lambda t: torch.full_like(t, float(t.mean() + 0.5 * torch.rand(1))), x, tile=64, overlap=32
    )
    row = out[0, 0, 0]
    assert torch.isfinite(out).all()
    assert row.diff().abs().max() < 0.05  # crossfades, not jumps of up to 0.5


def test_tiled_within_005_db_on_a_photo(photo: torch.Tensor) -> None:
    noisy = (photo + 0.08 * torch.randn(photo.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    net = LocalNet()
    whole = Restorer(net, _descriptor(), device="cpu", tile=0)(noisy)
    tiled = Restorer(net, _descriptor(), device="cpu", tile=48, tile_overlap=16)(noisy)
    assert abs(float(psnr(whole, photo)) - float(psnr(tiled, photo))) < 0.05


def test_a_global_first_stage_sees_the_whole_image_when_tiling(photo, tiny_curve_nafnet) -> None:
    """CurveNAFNet's deblocking filters, curves and deblurring kernel come from the whole picture, not
    from each tile: with its NAFNet made the identity, the tiled result is exactly its global stages
    applied to the whole image."""
    model = tiny_curve_nafnet(deblur_sigmas=[1.0, 2.0], deblur_size=9, deblock_qualities=[20], deblock_size=5)
    with torch.no_grad():
        for p in [*model.curve.parameters(), *model.deblur.parameters(), *model.deblock.parameters()]:
            p.add_(torch.randn_like(p) * 0.1)
        model.restorer.ending.weight.zero_()
        model.restorer.ending.bias.zero_()
    descriptor = ModelDescriptor.for_architecture("curve_nafnet", {"enc_blk_nums": [1, 1]})
    x = photo[:1, :, :96, :128]
    tiled = Restorer(model, descriptor, tile=32)(x)
    with torch.no_grad():
        whole_curve = model.deblur(model.curve(model.deblock(x))).clamp(0, 1)
        per_tile = model.deblur(model.curve(model.deblock(x[..., :32, :32]))).clamp(0, 1)
    torch.testing.assert_close(tiled, whole_curve, rtol=0, atol=1e-5)
    assert (tiled[..., :32, :32] - per_tile).abs().max() > 1e-3  # a tile alone would get other curves


def test_out_of_memory_halves_the_tile() -> None:
    class Picky(nn.Module):
        def forward(self, x):
            if max(x.shape[-2:]) > 80:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return x

    restorer = Restorer(Picky(), _descriptor(), device="cpu", tile=160)
    x = torch.rand(1, 3, 100, 120)
    assert torch.allclose(restorer(x), x, atol=1e-6)
    assert restorer.tile == 80

    class Hopeless(nn.Module):
        def forward(self, x):
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    with pytest.raises(InferenceError, match="out of memory even with"):
        Restorer(Hopeless(), _descriptor(), device="cpu", tile=128)(x)


def test_auto_tile_follows_the_memory_budget() -> None:
    net = LocalNet()
    small = Restorer(net, _descriptor(multiple=8), device="cpu", memory_budget=50 << 20).tile
    large = Restorer(net, _descriptor(multiple=8), device="cpu", memory_budget=2 << 30).tile
    assert 64 <= small < large and small % 8 == 0 and large % 8 == 0


def test_self_ensemble_averages_the_eight_transforms() -> None:
    net = LocalNet()
    x = torch.rand(1, 3, 24, 40)
    got = Restorer(net, _descriptor(), device="cpu", tile=0, self_ensemble=True)(x)
    with torch.no_grad():
        manual = []
        for k in range(4):
            for flip in (False, True):
                t = torch.rot90(x, k, (-2, -1))
                t = t.flip(-1) if flip else t
                y = net(t)
                y = y.flip(-1) if flip else y
                manual.append(torch.rot90(y, -k, (-2, -1)))
    assert torch.allclose(got, torch.stack(manual).mean(0).clamp(0, 1), atol=1e-6)
    plain = Restorer(net, _descriptor(), device="cpu", tile=0)(x)
    assert not torch.allclose(got, plain)


def _flips(f, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        outs = [f(x), f(x.flip(-1)).flip(-1), f(x.flip(-2)).flip(-2), f(x.flip(-2, -1)).flip(-2, -1)]
    return torch.stack(outs).mean(0)


def test_flips_ensemble_averages_the_four_flips_and_tiles_alike() -> None:
    net = LocalNet()
    x = torch.rand(1, 3, 24, 40)
    got = Restorer(net, _descriptor(), device="cpu", tile=0, self_ensemble="flips")(x)
    torch.testing.assert_close(got, _flips(net, x).clamp(0, 1), rtol=0, atol=1e-6)
    tiled = Restorer(net, _descriptor(), device="cpu", tile=24, tile_overlap=16, self_ensemble="flips")(x)
    torch.testing.assert_close(tiled, got, rtol=0, atol=1e-5)  # radius 3 < overlap / 4: seamless


def test_the_descriptor_recommends_a_self_ensemble_an_option_overrides() -> None:
    recommends = ModelDescriptor("test", extra={"self_ensemble": "flips"})
    assert Restorer(LocalNet(), recommends, device="cpu", tile=0).ensemble == "flips"
    assert Restorer(LocalNet(), recommends, device="cpu", tile=0, self_ensemble="off").ensemble == "off"
    assert Restorer(LocalNet(), recommends, device="cpu", tile=0, self_ensemble=True).ensemble == "x8"
    assert Restorer(LocalNet(), _descriptor(), device="cpu", tile=0).ensemble == "off"
    with pytest.raises(InferenceError, match="unknown self-ensemble 'x4'"):
        Restorer(LocalNet(), _descriptor(), device="cpu", tile=0, self_ensemble="x4")


def test_each_embedded_model_runs_as_it_was_shipped() -> None:
    """v1 was shipped to run with the flips self-ensemble (recorded in its descriptor); v2, the default,
    runs in one pass, the computation it was validated and exported as."""
    from anyrestore.models.zoo import resolve_model

    assert Restorer(resolve_model("default-v1"), device="cpu", tile=0).ensemble == "flips"
    assert Restorer(resolve_model(None), device="cpu", tile=0).ensemble == "off"


def test_self_ensemble_of_a_split_model_runs_its_global_stages_once_untransformed(
    photo, tiny_curve_nafnet
) -> None:
    """Flipping a photo moves its JPEG grid and its estimates are the whole picture's: the deblocking,
    curve and deblurring stages run once on the image as it is, the NAFNet on each flip of their output."""
    model = tiny_curve_nafnet(deblur_sigmas=[1.0, 2.0], deblur_size=9, deblock_qualities=[20], deblock_size=5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    calls = []
    model.deblock.register_forward_hook(lambda *_: calls.append(1))
    descriptor = ModelDescriptor.for_architecture("curve_nafnet", {"enc_blk_nums": [1, 1]})
    x = photo[:1, :, :64, :96]
    got = Restorer(model, descriptor, tile=0, self_ensemble="flips")(x)
    assert len(calls) == 1
    with torch.no_grad():
        front = model.deblur(model.curve(model.deblock(x)))
    torch.testing.assert_close(got, _flips(model.restorer, front).clamp(0, 1), rtol=0, atol=1e-5)
    whole_model_flipped = _flips(model, x).clamp(0, 1)
    assert (got - whole_model_flipped).abs().max() > 1e-4


def test_precisions() -> None:
    net = LocalNet()
    x = torch.rand(1, 3, 32, 32)
    fp32 = Restorer(net, _descriptor(), device="cpu", tile=0)(x)
    bf16 = Restorer(net, _descriptor(), device="cpu", tile=0, precision="bf16")(x)
    assert bf16.dtype == torch.float32 and (bf16 - fp32).abs().max() < 0.02
    with pytest.raises(InferenceError, match="does not support fp16"):
        Restorer(net, _descriptor(precisions=("fp32",)), precision="fp16")
    with pytest.raises(InferenceError, match="unknown precision"):
        Restorer(net, _descriptor(), precision="int8")
    with pytest.raises(InferenceError, match="not an RGB restorer"):
        Restorer(net, ModelDescriptor("swinir", config={"in_chans": 1}))


def test_channels_last_gives_the_same_result() -> None:
    net = LocalNet()
    x = torch.rand(2, 3, 32, 48)
    a = Restorer(net, _descriptor(), device="cpu", tile=0)(x)
    b = Restorer(net, _descriptor(), device="cpu", tile=0, channels_last=True)(x)
    assert torch.allclose(a, b, atol=1e-5)
    # a model holding tensors of other ranks too (PromptIR's 5-D prompts): only the 4-D ones change layout
    tiny = {"dim": 8, "num_blocks": (1, 1, 1, 1), "num_refinement_blocks": 1, "heads": (1, 1, 2, 2)}
    descriptor = ModelDescriptor.for_architecture("promptir", {**tiny, "prompt_dims": (8, 8, 16)})
    torch.manual_seed(0)
    promptir = descriptor.build().eval()
    a = Restorer(promptir, descriptor, device="cpu", tile=0)(x)
    b = Restorer(promptir, descriptor, device="cpu", tile=0, channels_last=True)(x)
    assert torch.allclose(a, b, atol=1e-5)
    assert promptir.patch_embed.proj.weight.is_contiguous(memory_format=torch.channels_last)


def test_imagenet_normalised_models_are_fed_correctly() -> None:
    """An identity network that expects normalised input must still map [0, 1] to the same image."""
    d = ModelDescriptor("test", normalization="imagenet", precisions=("fp32",))
    x = torch.rand(1, 3, 16, 16)
    assert torch.allclose(Restorer(nn.Identity(), d, device="cpu", tile=0)(x), x, atol=1e-6)


# ------------------------------------------------------------------------------------------- API and CLI


def test_restore_api(tmp_path: Path, tiny_checkpoint: Path, photo_uint8: np.ndarray) -> None:
    rgba = np.dstack([photo_uint8, np.full(photo_uint8.shape[:2], 77, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "in.png")
    out = anyrestore.restore(tmp_path / "in.png", model=tiny_checkpoint)
    assert out.pixels.shape == (3, 96, 96) and out.alpha is not None
    assert torch.all(torch.round(out.alpha * 255) == 77)
    tensor = anyrestore.restore(torch.rand(3, 20, 30), model=tiny_checkpoint, tile=0)
    assert tensor.shape == (3, 20, 30)


def test_restore_cli(tmp_path: Path, tiny_checkpoint: Path, photo_uint8: np.ndarray, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo_uint8).save(src / "a.jpg", quality=90)
    write_image(src / "deep.png", torch.rand(3, 40, 50), bit_depth=16)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    code = main(["restore", str(src), "-o", str(out), "--model", str(tiny_checkpoint), "--quiet"])
    assert code == 1  # one bad file: reported, skipped, non-zero exit at the end
    err = capsys.readouterr().err
    assert "broken.png" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "deep.png"]
    assert read_image(out / "deep.png").bit_depth == 16
    assert read_image(out / "a.jpg").size == (96, 96)

    before = (src / "a.jpg").read_bytes()
    code = main(["restore", str(src / "a.jpg"), "-o", str(src), "--model", str(tiny_checkpoint), "--quiet"])
    assert code == 1 and "refusing to overwrite an input" in capsys.readouterr().err
    assert (src / "a.jpg").read_bytes() == before
    code = main(
        [
            "restore",
            str(src / "a.jpg"),
            "-o",
            str(src),
            "--suffix",
            "_r",
            "--format",
            "png",
            "--model",
            str(tiny_checkpoint),
            "--quiet",
        ]
    )
    assert code == 0 and (src / "a_r.png").exists()
    plain = read_image(src / "a_r.png").pixels
    for mode, extra in (("flips", ["--self-ensemble", "flips"]), ("x8", ["--self-ensemble"])):
        args = ["restore", str(src / "a.jpg"), "-o", str(tmp_path / mode), "--format", "png"]
        code = main([*args, "--model", str(tiny_checkpoint), "--quiet", *extra])
        ensembled = read_image(tmp_path / mode / "a.png").pixels
        assert code == 0 and (ensembled - plain).abs().max() > 0, mode
    with pytest.raises(SystemExit):
        main(["restore", str(src / "a.jpg"), "--self-ensemble", "x4", "--quiet"])
    assert "invalid choice: 'x4'" in capsys.readouterr().err


def test_info_cli(tiny_checkpoint: Path, capsys) -> None:
    assert main(["info", str(tiny_checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "architecture   nafnet" in out and "size multiple  4" in out and "parameters" in out


def test_cli_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert main(["restore", str(tmp_path / "nope.png"), "--model", str(tmp_path / "m.pth")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope.png: no such file or folder" in err


def test_restore_cli_batches_a_folder_of_same_size_photos(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch
) -> None:
    """Consecutive images of one size go through the model together (as many as one tile's pixels hold):
    the same files as restoring them one by one, in fewer forward calls."""
    src = tmp_path / "in"
    src.mkdir()
    g = torch.Generator().manual_seed(0)
    sizes = {"a": (40, 48), "b": (40, 48), "c": (40, 48), "d": (32, 32)}
    for name, (h, w) in sizes.items():
        write_image(src / f"{name}.png", torch.rand(3, h, w, generator=g), bit_depth=16)
    calls: list[int] = []
    run = Restorer._run

    def counted(self, module, x, **inputs):
        calls.append(x.shape[0])
        return run(self, module, x, **inputs)

    monkeypatch.setattr(Restorer, "_run", counted)
    args = ["--model", str(tiny_checkpoint), "--self-ensemble", "off", "--quiet"]
    assert main(["restore", str(src), "-o", str(tmp_path / "batched"), *args]) == 0
    assert sorted(calls) == [1, 3]  # a, b and c in one call; d alone
    calls.clear()
    for name in sizes:
        assert main(["restore", str(src / f"{name}.png"), "-o", str(tmp_path / "single"), *args]) == 0
    assert calls == [1, 1, 1, 1]
    for name in sizes:
        batched = read_image(tmp_path / "batched" / f"{name}.png").pixels
        single = read_image(tmp_path / "single" / f"{name}.png").pixels
        assert (batched - single).abs().max() <= 1 / 65535 + 1e-7  # the same, to 16-bit rounding


def test_a_batch_of_photos_restores_as_one_by_one(photos: torch.Tensor, tiny_curve_nafnet) -> None:
    """The default model's design batched (its global stages estimate per image): within 1e-5."""
    model = tiny_curve_nafnet(deblur_sigmas=(1.0, 2.0), deblock_qualities=(20, 50)).eval()
    restorer = Restorer(model, ModelDescriptor("curve_nafnet", size_multiple=4), tile=0)
    assert restorer.batch_capacity(64, 64) == 1  # never tiled: no budget measured, one at a time
    restorer = Restorer(model, ModelDescriptor("curve_nafnet", size_multiple=4), tile=128)
    assert restorer.batch_capacity(64, 64) == 4 and restorer.batch_capacity(200, 64) == 1
    together = restorer(photos)
    for i in range(photos.shape[0]):
        assert torch.allclose(together[i], restorer(photos[i]), atol=1e-5, rtol=0)
