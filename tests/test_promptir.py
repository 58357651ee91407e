"""PromptIR and RAM's PromptIR: sizes, official key names, checkpoint recognition, forward behaviour."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from anyrestore.models.promptir import (
    PromptIR,
    RAMPromptIR,
    infer_promptir_config,
    infer_ram_promptir_config,
)
from anyrestore.models.registry import count_parameters, get_architecture

UNUSED = (
    "chnl_reduce1",
    "chnl_reduce2",
    "chnl_reduce3",
    "reduce_noise_channel_1",
    "reduce_noise_channel_2",
    "reduce_noise_channel_3",
)

# Tiny configurations for forward passes.
TINY = {
    "dim": 8,
    "num_blocks": (1, 1, 1, 1),
    "num_refinement_blocks": 1,
    "heads": (1, 1, 2, 2),
    "prompt_dims": (8, 8, 16),
    "prompt_sizes": (8, 4, 2),
}
# Every hyper-parameter away from its default, to check detection reads shapes.
ODD = {
    "dim": 16,
    "num_blocks": (1, 2, 1, 3),
    "num_refinement_blocks": 2,
    "heads": (1, 2, 2, 4),
    "ffn_expansion_factor": 2.0,
    "bias": True,
    "layernorm_type": "BiasFree",
    "prompt_len": 3,
    "prompt_dims": (8, 16, 24),
    "prompt_sizes": (8, 4, 2),
}


@pytest.fixture(scope="module")
def official() -> PromptIR:
    return PromptIR()


@pytest.fixture(scope="module")
def ram() -> RAMPromptIR:
    return RAMPromptIR()


def test_parameter_counts(official: PromptIR, ram: RAMPromptIR) -> None:
    assert count_parameters(official) == 35_592_263
    assert count_parameters(ram) == 35_376_967
    unused = sum(p.numel() for name in UNUSED for p in getattr(official, name).parameters())
    assert unused == 35_592_263 - 35_376_967 == 215_296


def test_official_key_names_and_shapes(official: PromptIR) -> None:
    sd = official.state_dict()
    assert len(sd) == 548  # as in the official net/model.py with decoder=True
    expected = {
        "patch_embed.proj.weight": (48, 3, 3, 3),
        "encoder_level1.0.attn.temperature": (1, 1, 1),
        "encoder_level1.0.norm1.body.weight": (48,),
        "encoder_level1.0.norm1.body.bias": (48,),
        "encoder_level1.0.ffn.project_in.weight": (254, 48, 1, 1),
        "prompt1.prompt_param": (1, 5, 64, 64, 64),
        "prompt3.linear_layer.weight": (5, 384),
        "noise_level3.attn.qkv.weight": (2112, 704, 1, 1),
        "reduce_noise_level2.weight": (192, 320, 1, 1),
        "down1_2.body.0.weight": (24, 48, 3, 3),
        "up4_3.body.0.weight": (384, 192, 3, 3),
        "reduce_chan_level3.weight": (192, 288, 1, 1),
        "chnl_reduce3.weight": (256, 320, 1, 1),
        "reduce_noise_channel_3.weight": (192, 448, 1, 1),
        "latent.7.attn.temperature": (8, 1, 1),
        "refinement.3.ffn.project_out.weight": (96, 255, 1, 1),
        "output.weight": (3, 96, 3, 3),
    }
    assert {k: tuple(sd[k].shape) for k in expected} == expected
    assert list(sd)[:2] == ["patch_embed.proj.weight", "prompt1.prompt_param"]


def test_ram_variant_structure(official: PromptIR, ram: RAMPromptIR) -> None:
    official_keys = set(official.state_dict())
    ram_keys = set(ram.state_dict())
    assert official_keys - ram_keys == {f"{name}.weight" for name in UNUSED}
    assert ram_keys < official_keys
    # RAM's MAC counts 445 parameter-owning modules in this network.
    units: list[str] = []
    for name, _ in ram.named_parameters():
        owner = name.rsplit(".", 1)[0]
        if not units or units[-1] != owner:
            units.append(owner)
    assert len(units) == 445
    with pytest.raises(TypeError):
        RAMPromptIR(unused_reduce_dims=(64, 128, 256))


def _roundtrip(model: torch.nn.Module, infer, cls) -> dict:
    sd = model.state_dict()
    cfg = infer(sd)
    assert cfg is not None
    rebuilt = cls(**cfg)
    rebuilt.load_state_dict(sd, strict=True)
    return cfg


def test_infer_defaults_roundtrip(official: PromptIR, ram: RAMPromptIR) -> None:
    cfg = _roundtrip(official, infer_promptir_config, PromptIR)
    assert cfg["dim"] == 48 and cfg["num_blocks"] == (4, 6, 6, 8) and cfg["heads"] == (1, 2, 4, 8)
    assert cfg["ffn_expansion_factor"] == 2.66 and cfg["unused_reduce_dims"] == (64, 128, 256)
    cfg = _roundtrip(ram, infer_ram_promptir_config, RAMPromptIR)
    assert "unused_reduce_dims" not in cfg and cfg["prompt_dims"] == (64, 128, 320)


def test_infer_nondefault_roundtrip() -> None:
    official_odd = {**ODD, "unused_reduce_dims": (8, 16, 20)}
    cfg = _roundtrip(PromptIR(**official_odd), infer_promptir_config, PromptIR)
    assert cfg == {"in_channels": 3, "out_channels": 3, **official_odd}
    cfg = _roundtrip(RAMPromptIR(**ODD), infer_ram_promptir_config, RAMPromptIR)
    assert cfg == {"in_channels": 3, "out_channels": 3, **ODD}


def test_infer_rejects_foreign_state_dicts(official: PromptIR, ram: RAMPromptIR) -> None:
    official_sd = official.state_dict()
    ram_sd = ram.state_dict()
    assert infer_ram_promptir_config(official_sd) is None
    assert infer_promptir_config(ram_sd) is None
    unrelated = {"conv_first.weight": torch.zeros(64, 3, 3, 3), "conv_last.weight": torch.zeros(3, 64, 3, 3)}
    assert infer_promptir_config(unrelated) is None
    assert infer_ram_promptir_config(unrelated) is None
    # Only some of the six unused convs, an extra key, or a wrong shape: neither architecture.
    partial = {k: v for k, v in official_sd.items() if k != "chnl_reduce2.weight"}
    assert infer_promptir_config(partial) is None and infer_ram_promptir_config(partial) is None
    assert infer_ram_promptir_config({**ram_sd, "lora.weight": torch.zeros(1)}) is None
    bad = {**ram_sd, "reduce_chan_level3.weight": torch.zeros(192, 289, 1, 1)}
    assert infer_ram_promptir_config(bad) is None


def test_registration() -> None:
    assert get_architecture("promptir").normalization == "none"
    assert get_architecture("promptir").size_multiple({}) == 8
    assert get_architecture("ram_promptir").normalization == "imagenet"
    assert get_architecture("ram_promptir").build is RAMPromptIR


def test_forward_shape_and_unused_layers_get_no_gradient() -> None:
    torch.manual_seed(0)
    model = PromptIR(**TINY)
    x = torch.rand(2, 3, 16, 24)
    y = model(x)
    assert y.shape == x.shape
    y.abs().mean().backward()
    for name, param in model.named_parameters():
        unused = name.split(".")[0] in UNUSED
        assert (param.grad is None) == unused, name


def test_ram_pads_internally_and_crops() -> None:
    torch.manual_seed(0)
    ram = RAMPromptIR(**TINY).eval()
    plain = PromptIR(**TINY, unused_reduce_dims=None).eval()
    plain.load_state_dict(ram.state_dict())
    x = torch.randn(1, 3, 19, 27)
    with torch.no_grad():
        y = ram(x)
        padded = F.pad(x, (0, 5, 0, 13), mode="reflect")  # to 32 x 32
        expected = plain(padded)[..., :19, :27]
    assert y.shape == x.shape
    torch.testing.assert_close(y, expected)


def test_ram_mask_uses_zero_token() -> None:
    torch.manual_seed(0)
    ram = RAMPromptIR(**TINY).eval()
    x = torch.randn(2, 3, 16, 16)
    mask = (torch.rand(2, 16, 16) > 0.5).float()
    with torch.no_grad():
        masked = ram(x, mask=mask)
        assert torch.equal(masked, ram(x * (1 - mask[:, None])))
        assert torch.equal(ram(x, mask=mask[:, None]), masked)
        assert torch.equal(ram(x, mask=torch.zeros(2, 16, 16)), ram(x))


def test_matches_official_implementation_outputs(seeded_weights, golden_input) -> None:
    """Golden output of the official ``PromptIR(decoder=True)`` from ``net/model.py`` of va1shn9v/PromptIR
    at commit 106159ab809101f2e25b6714195cd6fa9a938d36, run once with these weights loaded strictly
    (its prompt widths are hard-coded, hence the released ``dim=48``; depth cut to one block a level)."""
    cfg = dict(dim=48, num_blocks=(1, 1, 1, 1), num_refinement_blocks=1, heads=(1, 2, 4, 8))
    model = seeded_weights(PromptIR(**cfg), std=0.02)
    with torch.no_grad():
        y = model(golden_input(1, 3, 32, 24))
    assert y.shape == (1, 3, 32, 24)
    assert y.sum().item() == pytest.approx(1143.16259765625, rel=1e-5)
    assert y.abs().sum().item() == pytest.approx(1143.813232421875, rel=1e-5)
    assert y[0, :, 0, 0].tolist() == pytest.approx(
        [0.748502790927887, 0.41761288046836853, 0.42385581135749817], abs=1e-5
    )
    assert y[0, :, -1, -1].tolist() == pytest.approx(
        [0.6391551494598389, 0.6628344655036926, 0.008757544681429863], abs=1e-5
    )
