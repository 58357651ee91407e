"""IPT: parameter counts and key layout of the released models, checkpoint recognition, forwards.

Full-size models are built on the meta device (shapes only). The counts were computed by building the
official ``ipt`` (``huawei-noah/Pretrained-IPT``, ``model/ipt.py``) with the release options; this
implementation reproduces its keys (in order), shapes and, on random weights, its outputs (to 5e-7).
The single-task model is the paper's 115.5M; the six-task pre-trained model is AdaptIR's "Full-ft 119M".
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from anyrestore.models.checkpoint import detect_architecture
from anyrestore.models.ipt import IPT, infer_ipt_config
from anyrestore.models.registry import count_parameters, get_architecture

# 12 heads as released (the head count is not stored in checkpoints), tiny widths.
TINY = dict(scales=(2, 1), n_feats=8, patch_size=12, num_heads=12, num_layers=2)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run faster on one thread, and the CPU is shared; the setting is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _meta(**cfg: Any) -> IPT:
    with torch.device("meta"):
        return IPT(**cfg)


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({}, 118_892_394),  # IPT_pretrain.pt: six heads/tails, six query embeddings (the default)
        (dict(scales=(2,)), 115_460_443),
        (dict(scales=(3,)), 115_645_083),
        (dict(scales=(4,)), 115_608_155),
        (dict(scales=(1,)), 115_312_731),  # denoising / deraining
    ],
    ids=["pretrain", "sr_x2", "sr_x3", "sr_x4", "restoration"],
)
def test_parameter_counts(cfg: dict[str, Any], expected: int) -> None:
    assert count_parameters(_meta(**cfg)) == expected


def test_official_key_layout() -> None:
    sd = _meta().state_dict()
    keys = list(sd)
    assert keys[:4] == ["sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias"]
    assert sd["head.5.1.body.0.weight"].shape == (64, 64, 5, 5)
    assert sd["body.query_embed.weight"].shape == (6, 576 * 256)
    assert sd["body.encoder.layers.11.self_attn.in_proj_weight"].shape == (1728, 576)
    assert sd["body.decoder.layers.0.multihead_attn.out_proj.weight"].shape == (576, 576)
    assert "body.encoder.layers.0.self_attn.in_proj_bias" not in sd
    assert "body.encoder.layers.0.self_attn.out_proj.bias" not in sd
    assert sd["body.mlp_head.3.weight"].shape == (576, 2304)
    assert sd["body.position_encoding.position_ids"].shape == (1, 256)
    assert sd["tail.2.0.2.weight"].shape == (256, 64, 3, 3)  # second x2 step of the x4 tail
    assert sd["tail.1.0.0.weight"].shape == (576, 64, 3, 3)  # x3 tail
    assert "tail.3.0.0.weight" not in sd and sd["tail.3.1.weight"].shape == (3, 64, 3, 3)  # scale 1


@pytest.mark.parametrize(
    "cfg", [{}, dict(scales=(2,)), dict(scales=(1,)), dict(scales=(4,), attn_out_bias=True)], ids=str
)
def test_infer_config_recognises_releases(cfg: dict[str, Any]) -> None:
    sd = _meta(**cfg).state_dict()
    found = infer_ipt_config(sd)
    assert found is not None
    assert found["scales"] == tuple(cfg.get("scales", (2, 3, 4, 1, 1, 1)))
    assert found["attn_out_bias"] == cfg.get("attn_out_bias", False)
    rebuilt = _meta(**found).state_dict()
    assert list(rebuilt) == list(sd) and all(rebuilt[k].shape == sd[k].shape for k in sd)


def test_out_proj_bias_layout_of_older_torch() -> None:
    """PyTorch 1.6-1.8 saved an out_proj.bias in every MultiheadAttention; both layouts are recognised."""
    sd = _meta(scales=(2,), attn_out_bias=True).state_dict()
    assert sd["body.decoder.layers.3.multihead_attn.out_proj.bias"].shape == (576,)
    assert infer_ipt_config(sd)["attn_out_bias"] is True


def test_round_trip_strict_load_and_detection() -> None:
    torch.manual_seed(0)
    model = IPT(**TINY).eval()
    sd = model.state_dict()
    name, cfg, _ = detect_architecture(sd)
    assert name == "ipt" and cfg == infer_ipt_config(sd)
    clone = IPT(**cfg).eval()
    clone.load_state_dict(sd, strict=True)
    x = torch.rand(2, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(clone(x), model(x))
        assert torch.equal(clone(x, task=1), model(x, task=1))
    # position_ids is deterministic: a checkpoint without it still loads strictly.
    IPT(**cfg).load_state_dict({k: v for k, v in sd.items() if not k.endswith("position_ids")}, strict=True)


def test_forward_patch_and_tiles() -> None:
    torch.manual_seed(0)
    model = IPT(**TINY).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 3, 12, 12)).shape == (2, 3, 24, 24)
        x = torch.rand(1, 3, 12, 40)
        tiled = model(x, task=1)
        assert tiled.shape == (1, 3, 12, 40)
        # The first 6 columns lie in the interior of the first tile only.
        alone = model(x[..., :12], task=1)
        torch.testing.assert_close(tiled[..., :6], alone[..., :6], rtol=0, atol=1e-5)
        assert model(torch.rand(1, 3, 7, 30), task=0).shape == (1, 3, 14, 60)  # smaller than a tile
        assert torch.isfinite(model(torch.rand(1, 3, 25, 19), task=0)).all()
    with pytest.raises(ValueError, match="out of range"):
        model(torch.rand(1, 3, 12, 12), task=2)


def test_prompt_tokens_carry_no_position() -> None:
    """Extra leading tokens (VPT prompts) get no position/query embedding: the image tokens are unaffected."""
    from anyrestore.models.ipt import _with_pos

    x, pos = torch.rand(5, 2, 4), torch.rand(3, 1, 4)
    out = _with_pos(x, pos)
    assert torch.equal(out[:2], x[:2]) and torch.equal(out[2:], x[2:] + pos)


def test_registry_descriptor_facts() -> None:
    arch = get_architecture("ipt")
    assert arch.scale({}) == 2
    assert arch.scale({"task": 2}) == 4
    assert arch.scale({"scales": (1,)}) == 1
    assert arch.size_multiple({}) == 1


@pytest.mark.parametrize(
    ("task", "total", "abs_total", "first", "last"),
    [
        (
            0,
            751.5888671875,
            980.5813598632812,
            [0.04567757248878479, 0.48526957631111145, 0.16304218769073486],
            [0.32374411821365356, 0.4150215685367584, 0.6783584952354431],
        ),
        (
            1,
            126.78926849365234,
            376.0495300292969,
            [0.6172149777412415, 0.378757119178772, 0.5234858989715576],
            [0.8739186525344849, 1.217861533164978, 0.00931085366755724],
        ),
    ],
)
def test_matches_official_implementation_outputs(
    seeded_weights, golden_input, task, total, abs_total, first, last
) -> None:
    """Golden outputs of the official ``ipt`` (``model/ipt.py`` of huawei-noah/Pretrained-IPT at commit
    675540ed09169709e3603e9872fd13d238cbbe27; options n_feats 8, scale [2, 1], patch_size 12, num_layers 2,
    num_queries 2, the rest as released), run once with these weights loaded strictly on one 12x12 patch,
    after ``set_scale(task)``, on the input times 255, divided by 255. The official model does not tile; its
    trainer does, so only the patch forward is compared. The fixed mean shifts keep their values."""
    model = seeded_weights(IPT(**TINY))
    with torch.no_grad():
        y = model(golden_input(1, 3, 12, 12), task=task)
    scale = 2 if task == 0 else 1
    assert y.shape == (1, 3, 12 * scale, 12 * scale)
    assert y.sum().item() == pytest.approx(total, rel=1e-5)
    assert y.abs().sum().item() == pytest.approx(abs_total, rel=1e-5)
    assert y[0, :, 0, 0].tolist() == pytest.approx(first, abs=1e-5)
    assert y[0, :, -1, -1].tolist() == pytest.approx(last, abs=1e-5)
