"""Sequences, named pipelines and region mixing (degradation CutMix) with their label maps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import anyrestore.degrade as D


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture()
def x() -> torch.Tensor:
    """(2, 3, 64, 64) in [0.2, 0.6]: below the haze airlight, away from the clipping bounds."""
    return 0.2 + 0.4 * torch.rand(2, 3, 64, 64, generator=gen(11))


def test_sequence_global_ops(x: torch.Tensor) -> None:
    before = x.clone()
    y, labels = D.apply_sequence(x, [("blur", {"sigma": 1.0}), "jpeg:quality=40"], generator=gen())
    assert torch.equal(x, before)
    assert y.shape == x.shape and labels.shape == (2, 2, 64, 64) and labels.dtype == torch.bool
    assert bool(labels.all())
    torch.testing.assert_close(y, D.jpeg_compress(D.gaussian_blur(x, sigma=1.0), quality=40))
    y0, labels0 = D.apply_sequence(x, [])
    assert torch.equal(y0, x) and labels0.shape == (2, 0, 64, 64)


def test_sequence_local_op_labels_changed_pixels(x: torch.Tensor) -> None:
    y, labels = D.apply_sequence(x, [("rain", {"density": 0.005})], generator=gen())
    changed = (y != x).any(dim=1)
    assert torch.equal(labels[:, 0], changed)
    assert 0.02 < float(changed.float().mean()) < 0.9


def test_sequence_labels_follow_resize(x: torch.Tensor) -> None:
    steps = [("rain", {"density": 0.003}), ("downsample", {"scale": 4}), ("noise", {"sigma": 5})]
    y, labels = D.apply_sequence(x, steps, generator=gen(3))
    assert y.shape == (2, 3, 16, 16) and labels.shape == (2, 3, 16, 16)
    g = gen(3)
    rained = D.rain(x, density=0.003, generator=g)
    pooled = F.max_pool2d((rained != x).any(dim=1, keepdim=True).float(), 4)[:, 0] > 0
    assert torch.equal(labels[:, 0], pooled)
    assert bool(labels[:, 1:].all())


def test_pipelines_match_manual_steps(x: torch.Tensor) -> None:
    assert {"lr4_noise30", "lr4_jpeg30"} <= set(D.NAMED_PIPELINES)
    y, labels = D.apply_pipeline(x, "lr4_noise30", gen(5))
    g = gen(5)
    ref = D.gaussian_noise(D.downsample(x, scale=4), sigma=30, generator=g)
    assert torch.equal(y, ref) and labels.shape == (2, 2, 16, 16) and bool(labels.all())
    y, _ = D.apply_pipeline(x, "lr4_jpeg30", gen(5))
    assert torch.equal(y, D.jpeg_compress(D.downsample(x, scale=4), quality=30))
    for name in D.NAMED_PIPELINES:
        out, lab = D.apply_pipeline(x, name, gen())
        assert lab.shape[1] == len(D.NAMED_PIPELINES[name]) and out.shape[-2:] == lab.shape[-2:]
    with pytest.raises(ValueError, match="unknown pipeline 'lr8'"):
        D.apply_pipeline(x, "lr8")


def test_regions_labels_are_exact(x: torch.Tensor) -> None:
    # Strong noise changes every pixel; haze with unit depth changes every pixel deterministically.
    steps = [("noise", {"sigma": 200}), ("haze", {"beta": 2.0, "depth": torch.ones(64, 64)})]
    y, labels = D.apply_regions(x, steps, generator=gen(8), area=(0.2, 0.6))
    assert labels.shape == (2, 2, 64, 64) and labels.dtype == torch.bool
    assert int(labels.sum(dim=1).max()) <= 1  # one source per pixel
    changed = (y != x).any(dim=1)
    assert torch.equal(changed, labels.any(dim=1))
    hazed = D.haze(x, beta=2.0, depth=torch.ones(64, 64))
    on_haze = labels[:, 1, None].expand_as(x)
    assert torch.equal(y[on_haze], hazed[on_haze])
    on_noise = labels[:, 0, None].expand_as(x)
    assert bool((y[on_noise] != hazed[on_noise]).all())
    index = D.labels_to_index(labels)
    assert torch.equal(index == 0, ~changed)
    # Every step got a non-empty region in this draw, and the draw is seeded.
    assert bool(labels.flatten(2).any(dim=2).all())
    y2, labels2 = D.apply_regions(x, steps, generator=gen(8), area=(0.2, 0.6))
    assert torch.equal(y, y2) and torch.equal(labels, labels2)
    _, labels3 = D.apply_regions(x, steps, generator=gen(9), area=(0.2, 0.6))
    assert not torch.equal(labels, labels3)


def test_regions_later_step_wins_on_overlap(x: torch.Tensor) -> None:
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    m0, m1 = masks.clone(), masks.clone()
    m0[:, 8:40, 8:40] = True
    m1[:, 24:56, 24:56] = True
    regions = torch.stack([m0, m1], dim=1)
    steps = [("noise", {"sigma": 200}), ("quantize", {"bits": 1})]
    y, labels = D.apply_regions(x, steps, generator=gen(), regions=regions)
    assert torch.equal(labels[:, 0], m0 & ~m1)
    assert torch.equal(labels[:, 1], m1)
    clean = ~(m0 | m1)
    assert torch.equal(y[clean[:, None].expand_as(x)], x[clean[:, None].expand_as(x)])
    q = D.quantize(x, bits=1)
    assert torch.equal(y[m1[:, None].expand_as(x)], q[m1[:, None].expand_as(x)])
    # (K, H, W) masks broadcast over the batch.
    _, labels_b = D.apply_regions(x, steps, generator=gen(), regions=regions[0])
    assert torch.equal(labels_b, labels)


def test_regions_from_id_map(x: torch.Tensor) -> None:
    ids = torch.zeros(64, 64, dtype=torch.long)
    ids[:32, :32] = 1
    ids[32:, 32:] = 2
    steps = [("blur", {"sigma": 2.0}), ("noise", {"sigma": 50})]
    y, labels = D.apply_regions(x, steps, generator=gen(), regions=ids)
    assert torch.equal(D.labels_to_index(labels), ids.expand(2, 64, 64))
    blurred = D.gaussian_blur(x, sigma=2.0)  # the whole image is blurred, then pasted
    torch.testing.assert_close(y[..., :32, :32], blurred[..., :32, :32])
    assert torch.equal(y[..., :32, 32:], x[..., :32, 32:])


def test_regions_errors(x: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="'downsample' changes the image size"):
        D.apply_regions(x, [("noise", {}), ("downsample", {"scale": 2})])
    with pytest.raises(ValueError, match="region ids must lie in 0..1"):
        D.apply_regions(x, [("noise", {})], regions=torch.full((64, 64), 2))
    with pytest.raises(ValueError, match="boolean regions"):
        D.apply_regions(x, [("noise", {})], regions=torch.ones(2, 3, 64, 64, dtype=torch.bool))
    with pytest.raises(ValueError, match="regions must be 'cutmix'"):
        D.apply_regions(x, [("noise", {})], regions="grid")


def test_random_boxes() -> None:
    boxes = D.random_boxes(3, 4, (40, 60), generator=gen(), area=(0.1, 0.3))
    assert boxes.shape == (3, 4, 40, 60) and boxes.dtype == torch.bool
    frac = boxes.float().mean(dim=(2, 3))
    assert float(frac.min()) > 0.05 and float(frac.max()) < 0.4
    for mask in boxes.flatten(0, 1):  # each mask is one solid rectangle
        rows, cols = mask.any(dim=1), mask.any(dim=0)
        assert int(mask.sum()) == int(rows.sum()) * int(cols.sum())
    assert torch.equal(boxes, D.random_boxes(3, 4, (40, 60), generator=gen(), area=(0.1, 0.3)))


def test_labels_to_index() -> None:
    labels = torch.zeros(1, 3, 2, 3, dtype=torch.bool)
    labels[0, 0, 0, :] = True
    labels[0, 2, :, 2] = True
    labels[0, 1, 1, 0] = True
    expected = torch.tensor([[[1, 1, 3], [2, 0, 3]]])
    index = D.labels_to_index(labels)
    assert index.dtype == torch.long and torch.equal(index, expected)
    assert torch.equal(
        D.labels_to_index(torch.zeros(2, 0, 4, 4, dtype=torch.bool)), torch.zeros(2, 4, 4).long()
    )
