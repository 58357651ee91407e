"""SwinIR and RAM's SwinIR: parameter counts, official key layout, checkpoint recognition, forward shapes.

Full-size models are built on the meta device (shapes only), so the file runs in a few seconds.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from anyrestore.models.registry import count_parameters, get_architecture
from anyrestore.models.swinir import (
    RamSwinIR,
    SwinIR,
    infer_ram_swinir_config,
    infer_swinir_config,
    relative_position_index,
    shifted_window_mask,
)

# The released configurations (main_test_swinir.py in JingyunLiang/SwinIR; RAM's SwinIR_patch_1.yaml).
COLOR_DN: dict[str, Any] = {}
CLASSICAL_SR = {f"x{s}": dict(img_size=64, upscale=s, upsampler="pixelshuffle") for s in (2, 3, 4)}
LIGHTWEIGHT_X2 = dict(
    img_size=64, embed_dim=60, depths=(6,) * 4, num_heads=(6,) * 4, upscale=2, upsampler="pixelshuffledirect"
)
REAL_SR_L_X4 = dict(
    img_size=64,
    embed_dim=240,
    depths=(6,) * 9,
    num_heads=(8,) * 9,
    upscale=4,
    upsampler="nearest+conv",
    resi_connection="3conv",
)
GRAY_JPEG = dict(img_size=126, window_size=7, in_chans=1, img_range=255.0)

TINY = dict(embed_dim=12, depths=(2, 2), num_heads=(2, 3), window_size=4, img_size=16)


def _meta(build: type[torch.nn.Module], **cfg: Any) -> torch.nn.Module:
    with torch.device("meta"):
        return build(**cfg)


@pytest.mark.parametrize(
    ("build", "cfg", "expected"),
    [
        (SwinIR, COLOR_DN, 11_504_163),
        (RamSwinIR, {}, 11_512_131),
        (SwinIR, CLASSICAL_SR["x2"], 11_752_487),
        (SwinIR, CLASSICAL_SR["x3"], 11_937_127),
        (SwinIR, CLASSICAL_SR["x4"], 11_900_199),
        # The paper's 878K excludes the 24 relative position bias tables (225 x 6 each).
        (SwinIR, LIGHTWEIGHT_X2, 877_752 + 24 * 225 * 6),
    ],
    ids=["color_dn", "ram", "sr_x2", "sr_x3", "sr_x4", "light_x2"],
)
def test_parameter_counts(build: type[torch.nn.Module], cfg: dict[str, Any], expected: int) -> None:
    assert count_parameters(_meta(build, **cfg)) == expected


def test_ram_swinir_has_263_parameter_owning_units() -> None:
    # MAC's units: modules that directly own parameters, in order, root (mask_token) excluded.
    units = []
    for name, _ in _meta(RamSwinIR).named_parameters():
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        if owner and (not units or units[-1] != owner):
            units.append(owner)
    assert len(units) == 263
    assert units[0] == "conv_first" and units[-1] == "conv_last"


def test_official_key_layout_colour_denoising() -> None:
    sd = _meta(SwinIR).state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["conv_first.weight"] == (180, 3, 3, 3)
    assert shapes["patch_embed.norm.weight"] == (180,)
    assert shapes["layers.0.residual_group.blocks.0.attn.relative_position_bias_table"] == (225, 6)
    assert shapes["layers.0.residual_group.blocks.0.attn.relative_position_index"] == (64, 64)
    assert shapes["layers.0.residual_group.blocks.0.attn.qkv.weight"] == (540, 180)
    assert shapes["layers.0.residual_group.blocks.0.mlp.fc1.weight"] == (360, 180)
    # Shifted (odd) blocks keep the mask for the 128 x 128 training patch: 16 x 16 windows of 8 x 8.
    assert shapes["layers.5.residual_group.blocks.5.attn_mask"] == (256, 64, 64)
    assert "layers.5.residual_group.blocks.4.attn_mask" not in shapes
    assert shapes["layers.5.conv.weight"] == (180, 180, 3, 3)
    assert shapes["norm.weight"] == (180,)
    assert shapes["conv_after_body.weight"] == (180, 180, 3, 3)
    assert shapes["conv_last.weight"] == (3, 180, 3, 3)
    assert "mean" not in shapes  # the DIV2K mean is a constant, not part of the checkpoint
    assert len([k for k in shapes if k.endswith("attn_mask")]) == 18


def test_official_key_layout_sr_and_ram() -> None:
    sr4 = {k: tuple(v.shape) for k, v in _meta(SwinIR, **CLASSICAL_SR["x4"]).state_dict().items()}
    assert sr4["conv_before_upsample.0.weight"] == (64, 180, 3, 3)
    assert sr4["upsample.0.weight"] == sr4["upsample.2.weight"] == (256, 64, 3, 3)
    assert sr4["conv_last.weight"] == (3, 64, 3, 3)
    assert sr4["layers.0.residual_group.blocks.1.attn_mask"] == (64, 64, 64)
    sr3 = {k: tuple(v.shape) for k, v in _meta(SwinIR, **CLASSICAL_SR["x3"]).state_dict().items()}
    assert sr3["upsample.0.weight"] == (576, 64, 3, 3) and "upsample.2.weight" not in sr3

    ram = {k: tuple(v.shape) for k, v in _meta(RamSwinIR).state_dict().items()}
    assert ram["mask_token"] == (1, 3, 64, 64)
    assert ram["conv_first.weight"] == (180, 3, 1, 1)
    assert ram["layers.0.residual_group.blocks.1.attn_mask"] == (64, 64, 64)
    assert ram.keys() - {"mask_token"} == {k for k in _meta(SwinIR, img_size=64).state_dict()}


FULL_CONFIGS = [
    (SwinIR, infer_swinir_config, COLOR_DN),
    (SwinIR, infer_swinir_config, CLASSICAL_SR["x2"]),
    (SwinIR, infer_swinir_config, CLASSICAL_SR["x3"]),
    (SwinIR, infer_swinir_config, CLASSICAL_SR["x4"]),
    (SwinIR, infer_swinir_config, LIGHTWEIGHT_X2),
    (SwinIR, infer_swinir_config, REAL_SR_L_X4),
    (SwinIR, infer_swinir_config, GRAY_JPEG),
    (RamSwinIR, infer_ram_swinir_config, {}),
    (RamSwinIR, infer_ram_swinir_config, dict(upscale=2, upsampler="pixelshuffle", conv_first_kernel=3)),
]


@pytest.mark.parametrize(("build", "infer", "cfg"), FULL_CONFIGS)
def test_infer_config_round_trip_full_size(build: Any, infer: Any, cfg: dict[str, Any]) -> None:
    sd = _meta(build, **cfg).state_dict()
    inferred = infer(sd)
    assert inferred is not None
    for key, value in cfg.items():
        assert inferred[key] == value, key
    rebuilt = _meta(build, **inferred)
    rebuilt.load_state_dict(sd, strict=True)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in sd.items()}


def test_infer_tells_the_variants_apart_and_rejects_others() -> None:
    official, ram = _meta(SwinIR).state_dict(), _meta(RamSwinIR).state_dict()
    assert infer_ram_swinir_config(official) is None
    assert infer_swinir_config(ram) is None
    # A 3x3 first conv does not make RAM's variant official: the mask token still tells them apart.
    assert infer_swinir_config(_meta(RamSwinIR, conv_first_kernel=3).state_dict()) is None

    assert infer_swinir_config({}) is None
    assert infer_swinir_config({"conv_first.weight": torch.zeros(8, 3, 3, 3)}) is None
    extra = dict(official, **{"layers.0.residual_group.blocks.0.attn.logit_scale": torch.zeros(6, 1, 1)})
    assert infer_swinir_config(extra) is None
    missing = {k: v for k, v in official.items() if k != "layers.3.conv.bias"}
    assert infer_swinir_config(missing) is None


def test_img_size_read_from_attn_mask() -> None:
    sd = _meta(SwinIR, **dict(CLASSICAL_SR["x2"], img_size=48)).state_dict()
    assert infer_swinir_config(sd)["img_size"] == 48
    no_buffers = {k: v for k, v in sd.items() if not k.endswith(("attn_mask", "relative_position_index"))}
    assert infer_swinir_config(no_buffers)["img_size"] == 64  # the paper's SR default


def test_tiny_round_trip_loads_and_reproduces_outputs() -> None:
    torch.manual_seed(0)
    cfg = dict(TINY, upscale=2, upsampler="pixelshuffle", mlp_ratio=1.5)
    model = SwinIR(**cfg).eval()
    inferred = infer_swinir_config(model.state_dict())
    assert inferred == dict(
        cfg, in_chans=3, resi_connection="1conv", patch_norm=True, img_range=1.0, depths=(2, 2)
    )
    rebuilt = SwinIR(**inferred).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.rand(1, 3, 13, 17)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


def test_checkpoint_without_deterministic_buffers_loads_strictly() -> None:
    torch.manual_seed(0)
    model = RamSwinIR(**TINY).eval()
    sd = {
        k: v
        for k, v in model.state_dict().items()
        if not k.endswith(("attn_mask", "relative_position_index"))
    }
    rebuilt = RamSwinIR(**infer_ram_swinir_config(sd)).eval()
    rebuilt.load_state_dict(sd, strict=True)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("build", "cfg", "scale"),
    [
        (SwinIR, {}, 1),
        (SwinIR, dict(upscale=2, upsampler="pixelshuffle"), 2),
        (SwinIR, dict(upscale=3, upsampler="pixelshuffle"), 3),
        (SwinIR, dict(upscale=2, upsampler="pixelshuffledirect"), 2),
        (SwinIR, dict(upscale=4, upsampler="nearest+conv", resi_connection="3conv"), 4),
        (SwinIR, dict(in_chans=1, img_range=255.0), 1),
        (RamSwinIR, {}, 1),
        (RamSwinIR, dict(upscale=2, upsampler="pixelshuffle"), 2),
    ],
)
def test_forward_odd_size(build: Any, cfg: dict[str, Any], scale: int) -> None:
    torch.manual_seed(0)
    model = build(**TINY, **cfg).eval()
    channels = cfg.get("in_chans", 3)
    x = torch.rand(2, channels, 13, 17)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, channels, 13 * scale, 17 * scale)
    assert torch.isfinite(y).all()


def test_cached_and_on_the_fly_masks_agree() -> None:
    # The same weights built for 16 and 32 pixel patches: at 16 one uses its stored mask, the other
    # computes it; at 24 both compute it.
    torch.manual_seed(0)
    a = SwinIR(**TINY).eval()
    b = SwinIR(**dict(TINY, img_size=32)).eval()
    b.load_state_dict({k: v for k, v in a.state_dict().items() if not k.endswith("attn_mask")})
    for size in (16, 24):
        x = torch.rand(1, 3, size, size)
        with torch.no_grad():
            torch.testing.assert_close(a(x), b(x), rtol=0, atol=1e-6)


def test_window_helpers() -> None:
    expected = torch.tensor([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    assert torch.equal(relative_position_index(2), expected)
    assert relative_position_index(8).max() == 15 * 15 - 1

    mask = shifted_window_mask(8, 8, 4, 2)
    assert mask.shape == (4, 16, 16)
    zeros = (mask == 0).sum(dim=(1, 2)).tolist()
    # Top-left window: one region; top-right and bottom-left: two of 8 pixels; bottom-right: four of 4.
    assert zeros == [256, 128, 128, 64]
    assert set(mask.unique().tolist()) == {-100.0, 0.0}


def test_ram_masking() -> None:
    torch.manual_seed(0)
    model = RamSwinIR(**TINY).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        plain = model(x)
        torch.testing.assert_close(model(x, torch.zeros(2, 16, 16)), plain, rtol=0, atol=0)
        all_masked = model(x, torch.ones(2, 1, 16, 16), mask_token=torch.zeros(1))
        torch.testing.assert_close(all_masked, model(torch.zeros_like(x)), rtol=0, atol=0)
        learned = model(x, torch.ones(2, 16, 16))
        torch.testing.assert_close(learned, model(model.mask_token.expand(2, -1, -1, -1)), rtol=0, atol=0)
    with pytest.raises(ValueError, match="mask token"):
        model(torch.rand(1, 3, 20, 20), torch.ones(1, 20, 20))


def test_training_step_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = RamSwinIR(**TINY).train()
    model(torch.rand(2, 3, 16, 16), torch.ones(2, 16, 16)).abs().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_constructor_rejects_inconsistent_heads() -> None:
    with pytest.raises(ValueError):
        SwinIR(upscale=2)  # upscale without an upsampler
    with pytest.raises(ValueError):
        RamSwinIR(upscale=2, upsampler="pixelshuffledirect")


def test_registry_entries() -> None:
    swinir, ram = get_architecture("swinir"), get_architecture("ram_swinir")
    assert swinir.build is SwinIR and ram.build is RamSwinIR
    assert swinir.normalization == "none"
    assert ram.normalization == "imagenet"  # RAM feeds ImageNet mean/std-normalised RGB
    jpeg = infer_swinir_config(_meta(SwinIR, **GRAY_JPEG).state_dict())
    assert swinir.size_multiple(jpeg) == 7 and swinir.scale(jpeg) == 1
    assert swinir.scale(infer_swinir_config(_meta(SwinIR, **CLASSICAL_SR["x4"]).state_dict())) == 4


@pytest.mark.parametrize(
    ("extra", "shape", "total", "abs_total", "first", "last"),
    [
        (
            dict(upscale=2, upsampler="pixelshuffle"),
            (1, 3, 26, 34),
            745.173583984375,
            3741.173828125,
            [0.8460928201675415, 0.6862574815750122, 0.35538041591644287],
            [4.047128200531006, -1.8294939994812012, -3.2589967250823975],
        ),
        (
            dict(upscale=1, upsampler="", resi_connection="3conv"),
            (1, 3, 13, 17),
            346.7821960449219,
            351.8075866699219,
            [0.6931656002998352, 0.9444957971572876, 0.015292972326278687],
            [0.13862758874893188, 0.9370412230491638, 0.5146145224571228],
        ),
    ],
    ids=["sr_x2", "dn_3conv"],
)
def test_matches_official_implementation_outputs(
    seeded_weights, golden_input, extra, shape, total, abs_total, first, last
) -> None:
    """Golden outputs of the official ``SwinIR`` (``models/network_swinir.py`` of JingyunLiang/SwinIR at
    commit 6545850fbf8df298df73d81f3e8cba638787c8bd), run once with these weights loaded strictly. The
    13x17 input is not a window multiple: both pad it by reflection and crop. timm's DropPath, to_2tuple
    and trunc_normal_ were stood in for (identity in eval mode; the initialisation is overwritten)."""
    model = seeded_weights(SwinIR(**TINY, mlp_ratio=2.0, **extra))
    with torch.no_grad():
        y = model(golden_input(1, 3, 13, 17))
    assert y.shape == shape
    assert y.sum().item() == pytest.approx(total, rel=1e-5)
    assert y.abs().sum().item() == pytest.approx(abs_total, rel=1e-5)
    assert y[0, :, 0, 0].tolist() == pytest.approx(first, abs=1e-5)
    assert y[0, :, -1, -1].tolist() == pytest.approx(last, abs=1e-5)
