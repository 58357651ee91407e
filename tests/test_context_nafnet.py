"""ContextNAFNet (default model v2): a pure forward, side information, experts and their estimator."""

from __future__ import annotations

import pytest
import torch

from anyrestore.classical.jpeg_format import ijg_chroma_table, ijg_luma_table
from anyrestore.models import build_model
from anyrestore.models.checkpoint import load_model, save_model
from anyrestore.models.context_nafnet import (
    DEGRADATIONS,
    ContextNAFNet,
    ExpertConv,
    infer_context_nafnet_config,
)
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.side import SIDE_DIM, encode_side

TINY = {"width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1], "context_width": 8}


def tiny(seed: int = 0, **overrides) -> ContextNAFNet:
    """A tiny network with every parameter random, so that no zero-initialised path hides a branch."""
    torch.manual_seed(seed)
    model = ContextNAFNet(**{**TINY, **overrides})
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model


def test_forward_is_pure_and_the_same_in_train_and_eval() -> None:
    model = tiny()
    x = torch.rand(2, 3, 37, 29, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        first = model.train()(x)
        second = model.eval()(x)
        third = model(x)
    assert first.shape == x.shape
    assert torch.equal(first, second) and torch.equal(second, third)


def test_no_side_means_zeros_and_tables_change_the_output() -> None:
    model = tiny().eval()
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    side = encode_side((ijg_luma_table(20), ijg_chroma_table(20)))[None]
    with torch.no_grad():
        plain = model(x)
        zeros = model(x, torch.zeros(1, SIDE_DIM))
        jpeg = model(x, side)
    assert torch.equal(plain, zeros)
    assert (jpeg - plain).abs().max() > 1e-3


def test_each_image_gets_its_own_conditioning() -> None:
    """A batch is the same as its images one at a time: nothing leaks across images."""
    model = tiny().eval()
    x = torch.rand(3, 3, 32, 48, generator=torch.Generator().manual_seed(3))
    side = torch.stack(
        [encode_side(None), encode_side((ijg_luma_table(30), ijg_chroma_table(30))), encode_side(None)]
    )
    with torch.no_grad():
        batch = model(x, side)
        single = torch.cat([model(x[i : i + 1], side[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)


def test_expert_conv_equals_the_sum_of_its_low_rank_paths() -> None:
    torch.manual_seed(4)
    conv = ExpertConv(6, 10, experts=3, rank=2)
    with torch.no_grad():
        conv.experts.up.normal_()
    x = torch.rand(2, 6, 5, 7)
    w = torch.tensor([[1.0, 0.0, 0.5], [0.0, 0.2, 0.0]])
    expected = torch.nn.functional.conv2d(x, conv.conv.weight, conv.conv.bias)
    for k in range(3):
        low_rank = torch.einsum("or,ri->oi", conv.experts.up[k], conv.experts.down[k])
        path = torch.nn.functional.conv2d(x, low_rank[:, :, None, None])
        expected = expected + w[:, k, None, None, None] * path
    torch.testing.assert_close(conv(x, w), expected, atol=1e-5, rtol=1e-5)


def test_fresh_experts_change_nothing_and_the_estimator_blends_trained_ones() -> None:
    model = tiny(5).eval()
    x = torch.rand(2, 3, 32, 32)
    one_hot = torch.nn.functional.one_hot(torch.tensor([0, 3]), len(DEGRADATIONS)).float()
    fresh = ContextNAFNet(**TINY)
    ups = {name: p for name, p in model.named_parameters() if name.endswith("experts.up")}
    with torch.no_grad():
        assert all(torch.equal(p, torch.zeros_like(p)) for n, p in fresh.named_parameters() if n in ups)
        saved = {name: p.clone() for name, p in ups.items()}
        for p in ups.values():
            p.zero_()  # as a fresh expert: LoRA's B starts at zero
        assert torch.equal(model(x), model(x, experts=one_hot))
        for name, p in ups.items():
            p.copy_(saved[name])
        chosen = model(x, experts=one_hot)
        weights = model.estimate(x).softmax(dim=1)[:, 1:]
        assert (chosen - model(x)).abs().max() > 1e-4
        torch.testing.assert_close(model(x), model(x, experts=weights))
    assert model.classes == ("clean", *DEGRADATIONS)


@pytest.mark.parametrize("experts", [(), DEGRADATIONS])
def test_every_parameter_gets_a_gradient(experts: tuple[str, ...]) -> None:
    """So DDP never needs find_unused_parameters, with or without side information and experts."""
    model = tiny(experts=experts).train()
    model(torch.rand(2, 3, 24, 40)).mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_config_is_recognised_from_the_weights_and_a_saved_file_reloads(tmp_path) -> None:
    model = tiny()
    config = infer_context_nafnet_config(model.state_dict())
    assert config is not None
    assert (
        config["width"] == 8 and config["enc_blk_nums"] == [1, 1] and config["experts"] == list(DEGRADATIONS)
    )
    assert config["context_width"] == 8 and config["expert_rank"] == 4
    rebuilt = build_model("context_nafnet", **config)
    rebuilt.load_state_dict(model.state_dict(), strict=True)

    descriptor = ModelDescriptor.for_architecture("context_nafnet", {**TINY, "experts": list(DEGRADATIONS)})
    path = tmp_path / "v2.safetensors"
    save_model(path, descriptor, model.state_dict())
    loaded = load_model(path)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module.eval()(x), model.eval()(x))
    assert loaded.descriptor.architecture == "context_nafnet"


def test_backbone_without_experts_has_no_expert_weights() -> None:
    model = ContextNAFNet(**TINY, experts=())
    assert all(p.numel() == 0 for n, p in model.named_parameters() if ".experts." in n)
    assert model.classes == ("clean",)
    assert infer_context_nafnet_config(model.state_dict())["experts"] == []
