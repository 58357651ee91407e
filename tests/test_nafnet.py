import pytest
import torch
import torch.nn.functional as F

from anyrestore.models.nafnet import LayerNorm2d, NAFNet, infer_nafnet_config
from anyrestore.models.registry import count_parameters, get_architecture
from anyrestore.models.restormer import Restormer

TINY = dict(width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1])
GOPRO = {
    "img_channel": 3,
    "width": 32,
    "middle_blk_num": 1,
    "enc_blk_nums": [1, 1, 1, 28],
    "dec_blk_nums": [1, 1, 1, 1],
    "dw_expand": 2,
    "ffn_expand": 2,
}
SIDD = {**GOPRO, "middle_blk_num": 12, "enc_blk_nums": [2, 2, 4, 8], "dec_blk_nums": [2, 2, 2, 2]}


def _fill(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Deterministic weights, drawn in sorted key order so any module order gives the same network."""
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    with torch.no_grad():
        for key in sorted(sd):
            sd[key].copy_(torch.randn(sd[key].shape, generator=g) * 0.2)
    return model


@pytest.mark.parametrize(
    ("cfg", "n_params"), [(GOPRO, 17_111_907), (SIDD, 29_159_715)], ids=["gopro-width32", "sidd-width32"]
)
def test_released_configs_count_and_round_trip(cfg, n_params):
    model = NAFNet(**cfg)
    assert count_parameters(model) == n_params
    sd = model.state_dict()
    assert infer_nafnet_config(sd) == cfg
    NAFNet(**infer_nafnet_config(sd)).load_state_dict(sd, strict=True)


def test_defaults_are_gopro_width32():
    with torch.device("meta"):
        assert infer_nafnet_config(NAFNet().state_dict()) == GOPRO


def test_tiny_non_default_round_trip():
    # Levels without blocks leave no keys behind; the counts must still come back as zeros.
    cfg = dict(
        img_channel=1,
        width=8,
        middle_blk_num=2,
        enc_blk_nums=[1, 0, 2],
        dec_blk_nums=[2, 1, 0],
        dw_expand=4,
        ffn_expand=3,
    )
    sd = NAFNet(**cfg).state_dict()
    assert infer_nafnet_config(sd) == cfg
    NAFNet(**infer_nafnet_config(sd)).load_state_dict(sd, strict=True)


def test_official_key_names_and_shapes():
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in NAFNet().state_dict().items()}
    assert shapes["intro.weight"] == (32, 3, 3, 3)
    assert shapes["ending.weight"] == (3, 32, 3, 3)
    assert shapes["encoders.0.0.conv1.weight"] == (64, 32, 1, 1)
    assert shapes["encoders.0.0.conv2.weight"] == (64, 1, 3, 3)
    assert shapes["encoders.0.0.conv3.weight"] == (32, 32, 1, 1)
    assert shapes["encoders.0.0.sca.1.weight"] == (32, 32, 1, 1)
    assert shapes["encoders.0.0.conv4.weight"] == (64, 32, 1, 1)
    assert shapes["encoders.0.0.conv5.weight"] == (32, 32, 1, 1)
    assert shapes["encoders.0.0.norm1.weight"] == (32,)
    assert shapes["encoders.0.0.norm2.bias"] == (32,)
    assert shapes["encoders.0.0.beta"] == (1, 32, 1, 1)
    assert shapes["encoders.3.27.gamma"] == (1, 256, 1, 1)
    assert shapes["downs.3.weight"] == (512, 256, 2, 2)
    assert shapes["middle_blks.0.conv1.weight"] == (1024, 512, 1, 1)
    assert shapes["ups.0.0.weight"] == (1024, 512, 1, 1)
    assert "ups.0.0.bias" not in shapes
    assert shapes["decoders.3.0.conv1.weight"] == (64, 32, 1, 1)


def test_rejects_other_architectures():
    tiny = NAFNet(**TINY).state_dict()
    assert infer_nafnet_config({k: v for k, v in tiny.items() if k != "decoders.0.0.beta"}) is None
    assert infer_nafnet_config({**tiny, "extra.weight": torch.zeros(1)}) is None
    restormer = Restormer(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 2, 4])
    assert infer_nafnet_config(restormer.state_dict()) is None
    assert infer_nafnet_config({"conv_first.weight": torch.zeros(64, 3, 3, 3)}) is None
    assert infer_nafnet_config({}) is None


def test_forward_shapes_and_internal_padding():
    model = _fill(NAFNet(**TINY)).eval()
    with torch.no_grad():
        x = torch.rand(2, 3, 16, 20)
        assert model(x).shape == x.shape
        # Odd sizes: zero-padded bottom/right to a multiple of 4, then cropped, as the release does.
        x = torch.rand(1, 3, 13, 21)
        y = model(x)
        assert y.shape == x.shape
        torch.testing.assert_close(y, model(F.pad(x, (0, 3, 0, 3)))[..., :13, :21])
        model.ending.weight.zero_()
        model.ending.bias.zero_()
        torch.testing.assert_close(model(x), x, rtol=0, atol=0)


def test_matches_official_implementation_outputs():
    # Reference numbers were produced by the official NAFNet_arch.py with the same weights and input.
    model = _fill(NAFNet(**TINY)).eval()
    x = torch.rand(1, 3, 13, 21, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x)
    assert y.sum().item() == pytest.approx(239.66656494140625, rel=1e-5)
    assert y[0, :, 0, 0].tolist() == pytest.approx(
        [0.009354054927825928, 0.005808353424072266, -0.1145290732383728], rel=1e-4, abs=1e-6
    )


def test_layer_norm_2d():
    norm = LayerNorm2d(8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 8, 5, 7)
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (8,), norm.weight, norm.bias, eps=1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), ref)
    assert torch.isfinite(norm.half()((torch.randn(1, 8, 4, 4) * 1000).half())).all()


def test_registered():
    arch = get_architecture("nafnet")
    assert arch.build is NAFNet
    assert arch.infer_config is infer_nafnet_config
    assert arch.size_multiple(GOPRO) == 16
    assert arch.size_multiple({**GOPRO, "enc_blk_nums": [1, 1]}) == 4
    assert arch.scale(GOPRO) == 1


@pytest.mark.parametrize("batch", [1, 2])
def test_inference_path_matches_the_training_formula(batch):
    """Without gradients in eval mode the blocks fold beta, gamma and the channel attention into their 1x1
    convolutions and fuse the layer norms (channels-last): the same output to float rounding."""
    model = _fill(NAFNet(**TINY)).eval()
    x = torch.rand(batch, 3, 37, 45, generator=torch.Generator().manual_seed(1))
    reference = model(x)  # gradients enabled: the modules' own operations
    with torch.no_grad():
        fast = model(x)
    assert fast.is_contiguous()
    assert torch.allclose(fast, reference.detach(), atol=1e-5, rtol=0)
    assert not torch.equal(model.encoders[0][0].beta, torch.zeros_like(model.encoders[0][0].beta))
