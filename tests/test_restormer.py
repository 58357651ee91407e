import pytest
import torch
import torch.nn.functional as F

from anyrestore.models.nafnet import NAFNet
from anyrestore.models.registry import count_parameters, get_architecture
from anyrestore.models.restormer import LayerNorm, Restormer, infer_restormer_config

TINY = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 2, 4])
DEFAULT_CFG = {
    "inp_channels": 3,
    "out_channels": 3,
    "dim": 48,
    "num_blocks": [4, 6, 6, 8],
    "num_refinement_blocks": 4,
    "heads": [1, 2, 4, 8],
    "ffn_expansion_factor": 2.66,
    "bias": False,
    "LayerNorm_type": "WithBias",
    "dual_pixel_task": False,
}


def _fill(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Deterministic weights, drawn in sorted key order so any module order gives the same network."""
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    with torch.no_grad():
        for key in sorted(sd):
            sd[key].copy_(torch.randn(sd[key].shape, generator=g) * 0.2)
    return model


def _meta_state_dict(**kwargs) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return Restormer(**kwargs).state_dict()


@pytest.mark.parametrize(
    ("kwargs", "n_params"),
    [
        ({}, 26_126_644),
        ({"LayerNorm_type": "BiasFree"}, 26_111_668),
        ({"inp_channels": 6, "dual_pixel_task": True}, 26_132_548),
    ],
    ids=["paper", "biasfree-denoising", "dual-pixel"],
)
def test_released_configs_count_and_round_trip(kwargs, n_params):
    model = Restormer(**kwargs)
    assert count_parameters(model) == n_params
    sd = model.state_dict()
    cfg = infer_restormer_config(sd)
    assert cfg == {**DEFAULT_CFG, **kwargs}
    Restormer(**cfg).load_state_dict(sd, strict=True)


def test_tiny_non_default_round_trip():
    kwargs = dict(
        inp_channels=1,
        out_channels=1,
        dim=8,
        num_blocks=[1, 2, 1, 3],
        num_refinement_blocks=0,
        heads=[2, 2, 4, 8],
        ffn_expansion_factor=1.5,
        bias=True,
        LayerNorm_type="BiasFree",
        dual_pixel_task=False,
    )
    sd = Restormer(**kwargs).state_dict()
    cfg = infer_restormer_config(sd)
    assert cfg == kwargs
    Restormer(**cfg).load_state_dict(sd, strict=True)


@pytest.mark.parametrize("factor", [1.0, 2.0, 2.66, 3.0, 4.0, 2.5, 1.33])
@pytest.mark.parametrize("dim", [8, 16, 48])
def test_ffn_expansion_recovered_from_hidden_width(factor, dim):
    cfg = infer_restormer_config(_meta_state_dict(**{**TINY, "dim": dim, "ffn_expansion_factor": factor}))
    assert cfg is not None
    assert cfg["ffn_expansion_factor"] == factor


def test_official_key_names_and_shapes():
    shapes = {k: tuple(v.shape) for k, v in _meta_state_dict().items()}
    assert shapes["patch_embed.proj.weight"] == (48, 3, 3, 3)
    assert shapes["encoder_level1.0.norm1.body.weight"] == (48,)
    assert shapes["encoder_level1.0.norm1.body.bias"] == (48,)
    assert shapes["encoder_level1.0.attn.temperature"] == (1, 1, 1)
    assert shapes["latent.7.attn.temperature"] == (8, 1, 1)
    assert shapes["encoder_level1.0.attn.qkv.weight"] == (144, 48, 1, 1)
    assert shapes["encoder_level1.0.attn.qkv_dwconv.weight"] == (144, 1, 3, 3)
    assert shapes["encoder_level1.0.attn.project_out.weight"] == (48, 48, 1, 1)
    assert shapes["encoder_level1.0.ffn.project_in.weight"] == (254, 48, 1, 1)
    assert shapes["encoder_level1.0.ffn.dwconv.weight"] == (254, 1, 3, 3)
    assert shapes["latent.0.ffn.project_out.weight"] == (384, 1021, 1, 1)
    assert shapes["down1_2.body.0.weight"] == (24, 48, 3, 3)
    assert shapes["up4_3.body.0.weight"] == (768, 384, 3, 3)
    assert shapes["reduce_chan_level3.weight"] == (192, 384, 1, 1)
    assert shapes["reduce_chan_level2.weight"] == (96, 192, 1, 1)
    assert shapes["decoder_level1.3.attn.temperature"] == (1, 1, 1)
    assert shapes["refinement.3.ffn.project_out.weight"] == (96, 255, 1, 1)
    assert shapes["output.weight"] == (3, 96, 3, 3)
    assert "output.bias" not in shapes and "skip_conv.weight" not in shapes
    assert "encoder_level1.0.norm1.body.bias" not in _meta_state_dict(LayerNorm_type="BiasFree")
    assert tuple(_meta_state_dict(dual_pixel_task=True)["skip_conv.weight"].shape) == (96, 48, 1, 1)


def test_rejects_other_architectures():
    tiny = Restormer(**TINY).state_dict()
    # PromptIR reuses Restormer's module names and adds prompt and noise-level modules.
    promptir_like = dict(tiny)
    promptir_like["prompt1.prompt_param"] = torch.zeros(1, 5, 64, 64, 64)
    promptir_like["noise_level1.0.norm1.body.weight"] = torch.zeros(72)
    assert infer_restormer_config(promptir_like) is None
    assert (
        infer_restormer_config({k: v for k, v in tiny.items() if k != "refinement.0.attn.qkv.weight"}) is None
    )
    assert infer_restormer_config({**tiny, "output.weight": torch.zeros(3, 16, 5, 5)}) is None
    assert infer_restormer_config(NAFNet(width=8, enc_blk_nums=[1], dec_blk_nums=[1]).state_dict()) is None
    assert infer_restormer_config({"conv_first.weight": torch.zeros(64, 3, 3, 3)}) is None
    assert infer_restormer_config({}) is None


def test_forward_shape_and_global_residual():
    model = Restormer(**TINY).eval()
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        y = model(x)
        assert y.shape == x.shape
        model.output.weight.zero_()
        torch.testing.assert_close(model(x), x, rtol=0, atol=0)


def test_dual_pixel_predicts_image_without_residual():
    model = Restormer(**TINY, inp_channels=6, dual_pixel_task=True).eval()
    x = torch.rand(1, 6, 16, 16)
    with torch.no_grad():
        assert model(x).shape == (1, 3, 16, 16)
        model.output.weight.zero_()
        assert torch.count_nonzero(model(x)) == 0


@pytest.mark.parametrize(
    ("norm", "total", "first_pixel"),
    [
        ("WithBias", 20264.857421875, [94.53380584716797, 142.2951202392578, 108.55386352539062]),
        ("BiasFree", 5883.9375, [-23.48922348022461, -66.25479888916016, 20.003704071044922]),
    ],
)
def test_matches_official_implementation_outputs(norm, total, first_pixel):
    # Reference numbers were produced by the official restormer_arch.py with the same weights and input.
    model = _fill(Restormer(**TINY, LayerNorm_type=norm)).eval()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
    assert y.sum().item() == pytest.approx(total, rel=1e-5)
    assert y[0, :, 0, 0].tolist() == pytest.approx(first_pixel, rel=1e-4)


def test_layer_norms_match_their_definitions():
    x = torch.randn(2, 8, 5, 7)
    with_bias = LayerNorm(8, "WithBias")
    bias_free = LayerNorm(8, "BiasFree")
    with torch.no_grad():
        with_bias.body.weight.uniform_(0.5, 1.5)
        with_bias.body.bias.uniform_(-1, 1)
        bias_free.body.weight.uniform_(0.5, 1.5)
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (8,), with_bias.body.weight, with_bias.body.bias, eps=1e-5)
    torch.testing.assert_close(with_bias(x), ref.permute(0, 3, 1, 2))
    var = x.var(1, keepdim=True, unbiased=False)
    torch.testing.assert_close(
        bias_free(x), x / torch.sqrt(var + 1e-5) * bias_free.body.weight[:, None, None]
    )
    # Large half-precision activations would overflow a float16 variance.
    big = (torch.randn(1, 8, 4, 4) * 1000).half()
    assert torch.isfinite(bias_free.half()(big)).all()


def test_registered():
    arch = get_architecture("restormer")
    assert arch.build is Restormer
    assert arch.infer_config is infer_restormer_config
    assert arch.size_multiple(DEFAULT_CFG) == 8
    assert arch.scale(DEFAULT_CFG) == 1
    assert arch.normalization == "none"
