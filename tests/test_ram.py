"""RAM pieces: pixel masks, the masked L1 loss, twin-mask inference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from anyrestore.methods.ram import (
    apply_mask,
    mask_token_colour,
    mask_unit_range,
    masked_l1,
    random_pixel_mask,
    twin_mask_inference,
)
from anyrestore.methods.ram.masks import MaskError
from anyrestore.models import build_model
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.normalize import ImageNetNormalized
from anyrestore.models.registry import IMAGENET_MEAN


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny convolutions are much slower with threads fighting over shared cores
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------ masks


@pytest.mark.parametrize(("ratio", "size"), [(0.5, (7, 9)), (0.3, (8, 8)), (0.0, (4, 4)), (1.0, (3, 5))])
def test_mask_hides_exact_count_per_image(ratio: float, size: tuple[int, int]) -> None:
    x = torch.rand(5, 3, *size)
    mask = random_pixel_mask(x, ratio, generator=_gen())
    assert mask.shape == (5, 1, *size) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    expected = int(ratio * size[0] * size[1] + 0.5)
    assert mask.flatten(1).sum(1).tolist() == [expected] * 5


def test_mask_is_uniform_over_pixels_and_differs_between_images() -> None:
    mask = random_pixel_mask((4000, 6, 6), 0.5, generator=_gen(1))
    frequency = mask.mean(0).flatten()
    assert (frequency - 0.5).abs().max() < 0.04  # binomial std 0.008
    # any two pixels are hidden together about as often as independent-ish 18-of-36 draws imply
    both = (mask[:, 0, 0, 0] * mask[:, 0, 5, 5]).mean()
    assert abs(float(both) - 18 / 36 * 17 / 35) < 0.03
    assert not torch.equal(mask[0], mask[1])


def test_mask_is_seeded() -> None:
    a = random_pixel_mask((3, 16, 16), 0.5, generator=_gen(7))
    b = random_pixel_mask((3, 16, 16), 0.5, generator=_gen(7))
    c = random_pixel_mask((3, 16, 16), 0.5, generator=_gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_patch_masks_hide_whole_blocks() -> None:
    mask = random_pixel_mask((6, 10, 13), 0.5, patch=4, generator=_gen(2), dtype=torch.bool)
    assert mask.shape == (6, 1, 10, 13) and mask.dtype == torch.bool
    first = mask[..., ::4, ::4]  # one pixel per block: (6, 1, 3, 4)
    expanded = first.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)[..., :10, :13]
    assert torch.equal(mask, expanded)  # blocks are whole (cut only where the image ends)
    assert first.flatten(1).sum(1).tolist() == [6] * 6  # round(0.5 * 12 blocks)


def test_mask_arguments_are_checked() -> None:
    with pytest.raises(MaskError, match="ratio"):
        random_pixel_mask((1, 4, 4), 1.5)
    with pytest.raises(MaskError, match="patch"):
        random_pixel_mask((1, 4, 4), 0.5, patch=0)
    with pytest.raises(MaskError, match="shape"):
        random_pixel_mask((4, 4), 0.5)


def test_apply_mask_puts_the_zero_token_in_model_space() -> None:
    x = torch.rand(2, 3, 8, 8) + 0.5
    mask = random_pixel_mask(x, 0.5, generator=_gen())
    out = apply_mask(x, mask)
    hidden = mask.expand_as(x).bool()
    assert torch.all(out[hidden] == 0) and torch.equal(out[~hidden], x[~hidden])
    assert torch.equal(apply_mask(x, mask[:, 0]), out)


def test_unit_range_masking_matches_the_models_own_masking() -> None:
    x = torch.rand(2, 3, 8, 8)
    mask = random_pixel_mask(x, 0.5, generator=_gen(3))
    wrapper = ImageNetNormalized(nn.Identity())
    masked = mask_unit_range(x, mask, wrapper)
    # once normalised, hidden pixels are RAM's mask token 0 and the rest are untouched
    assert torch.allclose(wrapper.normalize(masked), apply_mask(wrapper.normalize(x), mask), atol=1e-6)
    hidden = mask.expand_as(x).bool()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand_as(x)
    assert torch.equal(masked[hidden], mean[hidden])
    ram = ModelDescriptor.for_architecture("ram_promptir")
    plain = ModelDescriptor.for_architecture("nafnet")
    assert torch.equal(mask_token_colour(ram).flatten(), torch.tensor(IMAGENET_MEAN))
    assert torch.equal(mask_token_colour(plain), torch.zeros(1, 3, 1, 1))
    assert torch.equal(mask_unit_range(x, mask, nn.Identity())[hidden], torch.zeros(int(hidden.sum())))


# ------------------------------------------------------------------------------------------------- loss


def test_masked_l1_equals_the_formula_and_ignores_visible_pixels() -> None:
    g = _gen(4)
    pred = torch.rand(3, 3, 10, 10, generator=g, requires_grad=True)
    target = torch.rand(3, 3, 10, 10, generator=g)
    mask = random_pixel_mask(pred, 0.5, generator=g)
    loss = masked_l1(pred, target, mask)
    hidden = mask.expand_as(pred).bool()
    expected = (pred - target).abs()[hidden].sum() / (mask.sum() * 3)
    assert torch.allclose(loss, expected)
    assert torch.allclose(loss, (pred - target).abs()[hidden].mean())

    changed = pred.detach().clone()
    changed[~hidden] = torch.rand(int((~hidden).sum()), generator=g) * 100
    assert torch.equal(masked_l1(changed, target, mask), loss.detach())
    loss.backward()
    assert torch.all(pred.grad[~hidden] == 0) and torch.all(pred.grad[hidden] != 0)


def test_masked_l1_with_nothing_hidden_is_zero() -> None:
    pred = torch.rand(1, 3, 4, 4, requires_grad=True)
    loss = masked_l1(pred, torch.rand(1, 3, 4, 4), torch.zeros(1, 4, 4))
    assert float(loss.detach()) == 0.0
    loss.backward()


# ----------------------------------------------------------------------------------------------- twin


def test_twin_mask_takes_each_run_where_its_input_was_hidden() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, 3, 3, padding=1))
    model = ImageNetNormalized(net).eval()
    x = torch.rand(2, 3, 16, 16)
    result = twin_mask_inference(model, x, generator=_gen(5))
    mask = result.mask
    assert mask.flatten(1).sum(1).tolist() == [128.0, 128.0]
    with torch.no_grad():
        first = model(mask_unit_range(x, mask, model))
        second = model(mask_unit_range(x, 1 - mask, model))
    assert torch.equal(result.first, first) and torch.equal(result.second, second)
    assert torch.equal(result.output, mask * first + (1 - mask) * second)
    # an identity network outputs the token wherever its input was hidden: the mean colour everywhere
    ident = twin_mask_inference(ImageNetNormalized(nn.Identity()), x, mask=mask)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand_as(x)
    assert torch.allclose(ident.output, mean, atol=1e-6)


def test_twin_mask_on_ram_promptir_equals_its_built_in_masking() -> None:
    torch.manual_seed(0)
    cfg = {"dim": 8, "num_blocks": (1, 1, 1, 1), "num_refinement_blocks": 1, "heads": (1, 1, 1, 1)}
    cfg["prompt_dims"] = (8, 16, 32)
    model = ImageNetNormalized(build_model("ram_promptir", **cfg)).eval()
    x = torch.rand(1, 3, 16, 16)
    result = twin_mask_inference(model, x, generator=_gen(6))
    with torch.no_grad():  # the model's own forward(x, mask): token 0 after normalisation
        first = model(x, result.mask)
        second = model(x, 1 - result.mask)
    expected = result.mask * first + (1 - result.mask) * second
    assert torch.allclose(result.output, expected, atol=1e-5)
