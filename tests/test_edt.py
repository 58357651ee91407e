"""EDT: parameter counts and key layout of the released configurations, checkpoint recognition, forwards.

Full-size models are built on the meta device (shapes only). The parameter counts were computed by
building the official ``Network`` (``fenglinglwb/EDT``, ``utils/modules/edt.py``) with each release's
config file; this implementation reproduces its keys (in order), shapes and, on random weights, its
outputs (to 2e-7). EDT-B x2 is the paper's 11.5M model; x4 is AdaptIR's "Full-ft 11.6M".
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from anyrestore.models.checkpoint import detect_architecture
from anyrestore.models.edt import EDT, infer_edt_config, stripe_mask
from anyrestore.models.registry import count_parameters, get_architecture

EDT_T = dict(num_feat=8, embed_dim=60, depths=(6,) * 4, num_heads=(6,) * 4, upsampler="pixelshuffledirect")
EDT_L = dict(num_feat=64, embed_dim=240, depths=(6,) * 12, num_heads=(8,) * 12)
# Released stripe size and head count (neither is stored in checkpoints), tiny widths.
TINY = dict(num_feat=4, embed_dim=24, depths=(2,), num_heads=(6,), img_size=24)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run faster on one thread, and the CPU is shared; the setting is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _meta(**cfg: Any) -> EDT:
    with torch.device("meta"):
        return EDT(**cfg)


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({}, 14_576_937),  # SRx2x3x4_EDTB_ImageNet200K, the model AdaptIR adapts (the default)
        (dict(scales=(2,)), 11_479_355),
        (dict(scales=(4,)), 11_627_067),
        (dict(scales=(), noise_levels=(15,)), 11_503_163),
        (dict(scales=(2,), **EDT_T), 916_924),
        (dict(scales=(2,), **EDT_L), 39_927_395),
    ],
    ids=["b_x2x3x4", "b_x2", "b_x4", "b_g15", "t_x2", "l_x2"],
)
def test_parameter_counts(cfg: dict[str, Any], expected: int) -> None:
    assert count_parameters(_meta(**cfg)) == expected


def test_official_key_layout() -> None:
    sd = _meta(scales=(2, 4), noise_levels=(15,)).state_dict()
    keys = list(sd)
    # Registration order of the release: heads, body, tails.
    assert keys[0] == "head_sr_x2.0.weight"
    assert (
        keys.index("head_dn_g15.0.weight")
        < keys.index("body.patch_embed.norm.weight")
        < keys.index("tail_sr_x2.0.conv.weight")
    )
    blk = "body.layers.0.residual_group.blocks"
    assert sd[f"{blk}.0.attns.0.lepe.weight"].shape == (90, 1, 3, 3)
    assert sd[f"{blk}.0.qkv.weight"].shape == (540, 180)
    assert sd[f"{blk}.0.mlp.dwconv.weight"].shape == (360, 1, 5, 5)
    assert f"{blk}.0.attn_mask_h" not in sd  # unshifted blocks have no mask
    assert sd[f"{blk}.1.attn_mask_h"].shape == (16, 144, 144)  # 48x48 body patch, 6x24 stripes
    assert sd["head_dn_g15.1.conv_down.weight"].shape == (64, 64, 4, 4)
    assert sd["tail_dn_g15.0.up.weight"].shape == (180, 128, 2, 2)
    assert sd["tail_sr_x4.2.2.weight"].shape == (256, 64, 3, 3)  # second x2 step of the x4 upsampler
    assert sd["tail_sr_x4.3.weight"].shape == (3, 64, 3, 3)
    assert "mean" not in sd


@pytest.mark.parametrize(
    "cfg",
    [{}, dict(scales=(2, 3), noise_levels=(15, 50), rain_levels=("L",)), dict(scales=(2,), **EDT_T)],
    ids=["b_x2x3x4", "b_all_heads", "t"],
)
def test_infer_config_recognises_releases(cfg: dict[str, Any]) -> None:
    found = infer_edt_config(_meta(**cfg).state_dict())
    assert found is not None
    reference = _meta(**cfg).state_dict()
    rebuilt = _meta(**found).state_dict()
    assert list(rebuilt) == list(reference)
    assert all(rebuilt[k].shape == reference[k].shape for k in reference)
    assert found["scales"] == tuple(cfg.get("scales", (2, 3, 4)))


def test_round_trip_strict_load_and_detection() -> None:
    torch.manual_seed(0)
    model = EDT(scales=(2,), noise_levels=(15,), **TINY).eval()
    sd = model.state_dict()
    name, cfg, _ = detect_architecture(sd)
    assert name == "edt"
    assert cfg == infer_edt_config(sd)
    clone = EDT(**cfg).eval()
    clone.load_state_dict(sd, strict=True)
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(clone(x), model(x))
        assert torch.equal(clone(x, task="dn_g15"), model(x, task="dn_g15"))
    # The shifted-stripe masks are deterministic: a checkpoint without them still loads strictly.
    stripped = {k: v for k, v in sd.items() if not k.endswith(("attn_mask_h", "attn_mask_v"))}
    assert len(stripped) < len(sd)
    EDT(**cfg).load_state_dict(stripped, strict=True)


def test_other_architectures_are_not_edt() -> None:
    from anyrestore.models.swinir import SwinIR

    swin = SwinIR(embed_dim=12, depths=(2,), num_heads=(2,), window_size=4, img_size=8).state_dict()
    assert infer_edt_config(swin) is None
    edt_sd = EDT(scales=(2,), **TINY).state_dict()
    others = [
        n
        for n in ("swinir", "ram_swinir", "restormer", "promptir")
        if get_architecture(n).infer_config(edt_sd)
    ]
    assert others == []


def test_forward_shapes_tasks_and_padding() -> None:
    torch.manual_seed(0)
    model = EDT(scales=(2, 3), noise_levels=(15,), rain_levels=("H",), **TINY).eval()
    assert model.tasks == ["sr_x2", "sr_x3", "dn_g15", "dr_H"]
    x = torch.rand(2, 3, 13, 10)  # neither a multiple of the stripe nor of the downsampling heads
    with torch.no_grad():
        assert model(x).shape == (2, 3, 26, 20)  # default task: the first
        assert model(x, task="sr_x3").shape == (2, 3, 39, 30)
        assert model(x, task="dn_g15").shape == (2, 3, 13, 10)
        y = model(x, task="dr_H")
    assert y.shape == (2, 3, 13, 10) and torch.isfinite(y).all()
    assert model.size_multiple("sr_x2") == 24 and model.size_multiple("dn_g15") == 96
    with pytest.raises(ValueError, match="unknown EDT task"):
        model(x, task="sr_x4")
    with pytest.raises(ValueError, match="at least one task"):
        EDT(scales=())


def test_off_size_inputs_use_computed_masks() -> None:
    """A body input of the training size uses the saved masks, others compute theirs: same function."""
    torch.manual_seed(0)
    model = EDT(scales=(2,), **TINY).eval()
    block = model.body.layers[0].residual_group.blocks[1]
    assert torch.equal(block.attn_mask_h, stripe_mask(24, 24, (6, 24), (3, 12)))
    assert torch.equal(block.attn_mask_v, stripe_mask(24, 24, (24, 6), (12, 3)))
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        saved = model(x)
        block.input_resolution = (-1, -1)  # force the on-the-fly path
        computed = model(x)
    torch.testing.assert_close(computed, saved, rtol=0, atol=1e-6)


def test_registry_descriptor_facts() -> None:
    arch = get_architecture("edt")
    assert arch.scale({"scales": (4,)}) == 4
    assert arch.scale({"scales": (2, 3), "task": "sr_x3"}) == 3
    assert arch.scale({"scales": (), "noise_levels": (50,)}) == 1
    assert arch.size_multiple({"scales": (4,)}) == 24
    assert arch.size_multiple({"scales": (), "noise_levels": (50,)}) == 96


@pytest.mark.parametrize(
    ("task", "size", "total", "abs_total", "first", "last"),
    [
        (
            "sr_x2",
            24,
            3075.448974609375,
            3090.680908203125,
            [0.69382244348526, 0.4300326108932495, 0.03524354100227356],
            [0.2538966238498688, 0.45213061571121216, 0.17511466145515442],
        ),
        (
            "dn_g15",
            96,
            16245.5556640625,
            16247.162109375,
            [0.7911338806152344, 0.8590147495269775, 0.2469499558210373],
            [0.3042559325695038, 0.7896285653114319, 0.9027143120765686],
        ),
    ],
)
def test_matches_official_implementation_outputs(
    seeded_weights, golden_input, task, size, total, abs_total, first, last
) -> None:
    """Golden outputs of the official ``Network`` (``utils/modules/edt.py`` of fenglinglwb/EDT at commit
    f4b3b77b97ed8c85ef13f218884742374ada1e31; config as the release's with NUM_FEAT 4, EMBED_DIM 24,
    DEPTHS [2], IMAGE_SIZE 24, SCALES [2], NOISE_LEVELS [15]), run once with these weights loaded
    strictly; the official forward takes one input per task and returns one output each. timm's layers
    were stood in for as for SwinIR (identity in eval mode; the initialisation is overwritten)."""
    model = seeded_weights(EDT(scales=(2,), noise_levels=(15,), **TINY))
    with torch.no_grad():
        y = model(golden_input(1, 3, size, size), task=task)
    scale = 2 if task == "sr_x2" else 1
    assert y.shape == (1, 3, size * scale, size * scale)
    assert y.sum().item() == pytest.approx(total, rel=1e-5)
    assert y.abs().sum().item() == pytest.approx(abs_total, rel=1e-5)
    assert y[0, :, 0, 0].tolist() == pytest.approx(first, abs=1e-5)
    assert y[0, :, -1, -1].tolist() == pytest.approx(last, abs=1e-5)
