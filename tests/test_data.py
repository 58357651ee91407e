"""Datasets: pairing by name and benchmark layouts, start-up checks, crops, synthesis, the seeded stream."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anyrestore.data import (
    DataError,
    PairedImageDataset,
    PairedSetSpec,
    RestorationDataset,
    RoundRobin,
    SampleStream,
    Shuffled,
    StreamSampler,
    SyntheticDataset,
    SyntheticSetSpec,
    Weighted,
    augment,
    build_dataset,
    build_source,
    collate,
    find_layout_pairs,
    find_pairs,
    image_size,
    make_generator,
    parse_steps,
    random_crop,
)


def _save(path: Path, h: int, w: int, seed: int = 0) -> np.ndarray:
    array = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


# ------------------------------------------------------------------------------------------- pairing


def test_pairs_by_name_across_extensions_and_many_to_one(tmp_path: Path) -> None:
    for name in ("0001_0.8_0.2.png", "0001_0.9_0.1.png", "0002_0.8_0.2.jpg"):
        _save(tmp_path / "hazy" / name, 8, 8)
    _save(tmp_path / "gt" / "0001.png", 8, 8)
    _save(tmp_path / "gt" / "0002.png", 8, 8)
    pairs = find_layout_pairs(tmp_path, "sots")
    assert [(lq.name, gt.name) for lq, gt in pairs] == [
        ("0001_0.8_0.2.png", "0001.png"),
        ("0001_0.9_0.1.png", "0001.png"),
        ("0002_0.8_0.2.jpg", "0002.png"),
    ]


def test_gopro_and_lolv2_layouts(tmp_path: Path) -> None:
    for seq in ("GOPR0372_07_00", "GOPR0374_11_00"):
        for i in (1, 2):
            _save(tmp_path / "gopro" / seq / "blur" / f"{i:06d}.png", 8, 8)
            _save(tmp_path / "gopro" / seq / "sharp" / f"{i:06d}.png", 8, 8)
    pairs = find_layout_pairs(tmp_path / "gopro", "gopro")
    assert len(pairs) == 4
    assert all(lq.parent.parent == gt.parent.parent and lq.name == gt.name for lq, gt in pairs)

    _save(tmp_path / "real" / "Low" / "low00001.png", 8, 8)
    _save(tmp_path / "real" / "Normal" / "normal00001.png", 8, 8)
    ((lq, gt),) = find_layout_pairs(tmp_path / "real", "lolv2_real")
    assert (lq.name, gt.name) == ("low00001.png", "normal00001.png")


def test_pairing_errors_name_the_files(tmp_path: Path) -> None:
    _save(tmp_path / "lq" / "a.png", 8, 8)
    _save(tmp_path / "lq" / "b.png", 8, 8)
    _save(tmp_path / "gt" / "a.png", 8, 8)
    _save(tmp_path / "gt" / "c.png", 8, 8)
    with pytest.raises(DataError, match=r"no ground truth for 1 input image\(s\): b.png -> b"):
        find_pairs(tmp_path / "lq", tmp_path / "gt")
    (tmp_path / "lq" / "b.png").unlink()
    with pytest.raises(DataError, match=r"1 ground-truth image\(s\) have no input: c"):
        find_pairs(tmp_path / "lq", tmp_path / "gt")
    assert len(find_pairs(tmp_path / "lq", tmp_path / "gt", allow_unused_gt=True)) == 1

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no input images found"):
        find_pairs(tmp_path / "empty", tmp_path / "gt")
    with pytest.raises(DataError, match="missing: input image folder does not exist"):
        find_pairs(tmp_path / "missing", tmp_path / "gt")
    with pytest.raises(DataError, match="does not fit the pattern"):
        find_pairs(tmp_path / "lq", tmp_path / "gt", match=r"x(?P<id>\d+)", gt_name="{id}")
    with pytest.raises(DataError, match="unknown dataset layout 'sots2'; known: input_target"):
        find_layout_pairs(tmp_path, "sots2")


def test_image_size_reads_headers_with_exif_rotation(tmp_path: Path) -> None:
    im = Image.fromarray(np.zeros((10, 30, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: read_image returns 30x10
    im.save(tmp_path / "rot.jpg", exif=exif)
    assert image_size(tmp_path / "rot.jpg") == (30, 10)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.png: not a readable image"):
        image_size(tmp_path / "bad.png")


# ---------------------------------------------------------------------------------- paired datasets


def test_paired_sizes_are_checked_at_start_up(tmp_path: Path) -> None:
    _save(tmp_path / "lq" / "a.png", 16, 16)
    _save(tmp_path / "gt" / "a.png", 16, 17)
    pairs = find_pairs(tmp_path / "lq", tmp_path / "gt")
    with pytest.raises(
        DataError, match=r"ground truth is not the size of its input: .*a.png 17x16 vs a.png 16x16"
    ):
        PairedImageDataset(pairs, task="rain", patch_size=8)
    _save(tmp_path / "gt" / "a.png", 16, 16)
    with pytest.raises(
        DataError, match=r"1 image\(s\) smaller than the rain crop \(32px\): .*a.png \(16x16\)"
    ):
        PairedImageDataset(pairs, task="rain", patch_size=32)


def test_super_resolution_crops_stay_aligned(tmp_path: Path) -> None:
    gt = _save(tmp_path / "gt" / "x.png", 41, 50).astype(np.float64)  # one spare row/column: trimmed
    lq = gt[:40, :50].reshape(20, 2, 25, 2, 3).mean(axis=(1, 3))
    Image.fromarray(np.round(lq).astype(np.uint8)).save(tmp_path / "lq.png")
    (tmp_path / "lq").mkdir()
    (tmp_path / "lq.png").rename(tmp_path / "lq" / "x.png")
    ds = PairedImageDataset(find_pairs(tmp_path / "lq", tmp_path / "gt"), task="sr", scale=2, patch_size=16)
    for seed in range(5):
        s = ds.sample(0, make_generator(seed))
        assert s["lq"].shape == (3, 8, 8) and s["gt"].shape == (3, 16, 16)
        pooled = torch.nn.functional.avg_pool2d(s["gt"][None], 2)[0]
        assert (pooled - s["lq"]).abs().max() <= 0.5 / 255 + 1e-6
    with pytest.raises(DataError, match="not a multiple of scale 2"):
        PairedImageDataset(ds.pairs, task="sr", scale=2, patch_size=15)


def test_crop_and_augment_apply_one_transform_to_all() -> None:
    gt = torch.arange(3 * 8 * 8, dtype=torch.float32).view(3, 8, 8)
    labels = torch.arange(64).view(8, 8)
    seen = set()
    for seed in range(40):
        g = make_generator(seed)
        lq, g_crop, (lab,) = random_crop(gt, gt, 4, generator=g, extra=(labels,))
        top, left = divmod(int(g_crop[0, 0, 0]), 8)
        assert torch.equal(lq, g_crop) and torch.equal(lab, labels[top : top + 4, left : left + 4])
        out_lq, out_gt, out_lab = augment((lq, g_crop, lab.float()), flip=True, rotate=True, generator=g)
        assert torch.equal(out_lq, out_gt)
        seen.add(tuple(out_lab.flatten().tolist()))
    assert len(seen) > 8  # windows and all 8 flips/rotations are reachable


# ------------------------------------------------------------------------------------------ synthetic


def test_synthetic_samples_are_pure_functions_of_the_seed(tmp_path: Path) -> None:
    _save(tmp_path / "clean" / "a.png", 40, 48)
    ds = SyntheticDataset(
        [tmp_path / "clean" / "a.png"], parse_steps(["noise:preset=ram"], "t"), patch_size=16
    )
    a, b = ds.sample(0, make_generator(1)), ds.sample(0, make_generator(1))
    c = ds.sample(0, make_generator(2))
    assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])
    assert not torch.equal(a["lq"], c["lq"])
    assert a["task"] == "noise" and a["lq"].shape == a["gt"].shape == (3, 16, 16)
    assert torch.equal(ds[0]["lq"], ds[0]["lq"])  # validation items are fixed


def test_synthetic_modes(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    _save(path, 32, 32)
    sr = SyntheticDataset([path], parse_steps(["pipeline:lr4_noise30"], "t"), patch_size=16)
    s = sr.sample(0, make_generator(0))
    assert sr.scale == 4 and s["lq"].shape == (3, 4, 4) and s["gt"].shape == (3, 16, 16)

    steps = parse_steps(["noise:sigma=50", "blur:sigma=3", "jpeg:quality=10"], "t")
    choice = SyntheticDataset([path], steps, mode="choice", patch_size=16)
    tasks = Counter(choice.sample(0, make_generator(i))["task"] for i in range(30))
    assert set(tasks) == {"noise", "blur", "jpeg"}

    regions = SyntheticDataset([path], steps[:2], mode="regions", patch_size=32, flip=False)
    assert regions.label_names == ("clean", "noise", "blur")
    s = regions.sample(0, make_generator(3))
    assert s["labels"].shape == (32, 32) and s["labels"].dtype == torch.int64
    clean_px = s["labels"] == 0
    assert clean_px.any() and torch.equal(s["lq"][:, clean_px], s["gt"][:, clean_px])
    noisy_px = s["labels"] == 1
    assert noisy_px.any() and (s["lq"][:, noisy_px] != s["gt"][:, noisy_px]).float().mean() > 0.9

    identity = SyntheticDataset([path], [], patch_size=16)
    s = identity.sample(0, make_generator(0))
    assert identity.task == "clean" and torch.equal(s["lq"], s["gt"])


def test_synthetic_before_is_the_image_before_that_step(tmp_path: Path) -> None:
    """``before: jpeg``: for noise then JPEG, the noisy image (JPEG of it gives the input exactly); for
    JPEG alone, the clean one; without a JPEG step, the input itself. Specs and batches carry it."""
    path = tmp_path / "clean" / "a.png"
    _save(path, 32, 32)
    from anyrestore.degrade import jpeg_compress

    noisy_jpeg = SyntheticDataset(
        [path], parse_steps(["noise:sigma=20", "jpeg:quality=30"], "t"), patch_size=24, before="jpeg"
    )
    s = noisy_jpeg.sample(0, make_generator(4))
    assert not torch.equal(s["before"], s["gt"]) and not torch.equal(s["before"], s["lq"])
    torch.testing.assert_close(jpeg_compress(s["before"][None], quality=30)[0], s["lq"], rtol=0, atol=0)
    plain = SyntheticDataset([path], parse_steps(["noise:sigma=20", "jpeg:quality=30"], "t"), patch_size=24)
    assert torch.equal(plain.sample(0, make_generator(4))["lq"], s["lq"])  # same draws as without it

    s = SyntheticDataset([path], parse_steps(["jpeg:quality=30"], "t"), patch_size=24, before="jpeg").sample(
        0, make_generator(0)
    )
    assert torch.equal(s["before"], s["gt"])
    s = SyntheticDataset([path], parse_steps(["noise:sigma=20"], "t"), patch_size=24, before="jpeg").sample(
        0, make_generator(0)
    )
    assert torch.equal(s["before"], s["lq"]) and not torch.equal(s["lq"], s["gt"])

    spec = SyntheticSetSpec(type="synthetic", clean="clean", degrade=["jpeg"], before="jpeg", patch_size=16)
    ds = build_dataset(spec, data_root=tmp_path, train=True)
    batch = collate([ds.sample(0, make_generator(i)) for i in range(2)])
    assert batch["before"].shape == (2, 3, 16, 16)
    without = {k: v for k, v in ds.sample(0, make_generator(1)).items() if k != "before"}
    with pytest.raises(DataError, match="without 'before'"):
        collate([ds.sample(0, make_generator(0)), without])
    with pytest.raises(DataError, match="'before' needs mode sequence"):
        SyntheticDataset([path], parse_steps(["jpeg"], "t"), mode="choice", patch_size=16, before="jpeg")


def test_synthetic_errors(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    _save(path, 20, 20)
    with pytest.raises(DataError, match="needs an explicit scale"):
        SyntheticDataset([path], parse_steps(["downsample"], "t"), patch_size=16)
    with pytest.raises(DataError, match="cannot be mixed by region"):
        SyntheticDataset([path], parse_steps(["downsample:scale=2"], "t"), mode="regions", patch_size=16)
    with pytest.raises(DataError, match=r"t: unknown degradation 'nois'"):
        parse_steps(["nois:sigma=3"], "t")
    with pytest.raises(DataError, match="unknown pipeline 'lr5'"):
        parse_steps(["pipeline:lr5"], "t")
    with pytest.raises(DataError, match=r"smaller than the noise crop \(32px\)"):
        SyntheticDataset([path], parse_steps(["noise"], "t"), patch_size=32)


def test_specs_build_datasets_and_prefix_errors(tmp_path: Path) -> None:
    _save(tmp_path / "rain" / "input" / "1.png", 24, 24)
    _save(tmp_path / "rain" / "target" / "1.png", 24, 24)
    spec = PairedSetSpec(type="paired", task="rain", root="rain", layout="input_target", patch_size=16)
    ds = build_dataset(spec, data_root=tmp_path, train=True)
    assert isinstance(ds, PairedImageDataset) and ds.flip and ds.crop == "random"
    val = build_dataset(spec, data_root=tmp_path, train=False)
    assert val.crop == "center" and not val.flip and val[0]["lq"].shape == (3, 16, 16)

    bad = SyntheticSetSpec(type="synthetic", clean="nowhere", degrade=["noise"], patch_size=8)
    with pytest.raises(DataError, match=r"^data.train.sets.3: .*nowhere: clean image folder does not exist"):
        build_dataset(bad, data_root=tmp_path, train=True, where="data.train.sets.3")
    no_patch = SyntheticSetSpec(type="synthetic", clean="rain/input")
    with pytest.raises(DataError, match="training sets need a patch_size"):
        build_dataset(no_patch, data_root=tmp_path, train=True)


# ------------------------------------------------------------------------------------------- stream


class _Items(RestorationDataset):
    """n items; a sample records its task, index and one draw of its generator."""

    def __init__(self, n: int, task: str) -> None:
        super().__init__()
        self.n, self.task = n, task

    def __len__(self) -> int:
        return self.n

    def sample(self, index: int, generator: torch.Generator) -> dict:
        z = torch.full((3, 2, 2), float(index))
        return {
            "lq": z,
            "gt": z,
            "task": self.task,
            "path": str(index),
            "draw": torch.rand(1, generator=generator),
        }


def test_stream_sampler_splits_each_global_batch_exactly() -> None:
    def take(sampler: StreamSampler, n: int) -> list[int]:
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    one = take(StreamSampler(8, start_iteration=3), 16)
    assert one == list(range(24, 40))
    ranks = [take(StreamSampler(8, start_iteration=3, rank=r, world_size=2, accumulate=2), 8) for r in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == one
    assert ranks[0][:2] == [24, 25] and ranks[1][:2] == [26, 27]  # micro-batch 2 per rank per step
    with pytest.raises(DataError, match="batch_size 6 does not split evenly over 4 process"):
        StreamSampler(6, world_size=4)


def test_shuffled_epochs_round_robin_and_weighted() -> None:
    source = Shuffled(_Items(5, "a"), seed=0)
    epochs = [[source.index(e * 5 + i) for i in range(5)] for e in range(3)]
    assert all(sorted(e) == list(range(5)) for e in epochs)
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]
    assert epochs == [[Shuffled(_Items(5, "a"), seed=0).index(e * 5 + i) for i in range(5)] for e in range(3)]

    mix = RoundRobin([Shuffled(_Items(3, "a"), seed=0, key="a"), Shuffled(_Items(4, "b"), seed=0, key="b")])
    stream = SampleStream(mix, seed=0)
    assert [stream[p]["task"] for p in range(6)] == ["a", "b"] * 3
    assert torch.equal(stream[5]["draw"], SampleStream(mix, seed=0)[5]["draw"])
    assert not torch.equal(stream[5]["draw"], SampleStream(mix, seed=1)[5]["draw"])

    weighted = SampleStream(
        Weighted([Shuffled(_Items(3, "a"), seed=0), Shuffled(_Items(3, "b"), seed=0)], [3, 1]), 0
    )
    share = Counter(weighted[p]["task"] for p in range(800))["a"] / 800
    assert 0.70 < share < 0.80


def test_groups_make_one_stream_and_collate_checks_sizes() -> None:
    sets = [_Items(2, "haze"), _Items(2, "lol_real"), _Items(2, "lol_syn")]
    source = build_source(sets, mix="round_robin", weights=None, seed=0, groups=[None, "lol", "lol"])
    tasks = [source.draw(p, make_generator(p))["task"] for p in range(8)]
    assert tasks[0::2] == ["haze"] * 4 and set(tasks[1::2]) == {"lol_real", "lol_syn"}

    mismatched = [_Items(2, "a"), _Items(2, "b")]
    mismatched[1].patch_size = 64
    with pytest.raises(DataError, match=r"data.train.sets.1: patch_size 64 at scale 1 differs from"):
        build_source(mismatched, mix="round_robin", weights=None, seed=0)

    a = {"lq": torch.zeros(3, 4, 4), "gt": torch.zeros(3, 4, 4), "task": "x", "path": "a"}
    b = {"lq": torch.zeros(3, 2, 2), "gt": torch.zeros(3, 4, 4), "task": "y", "path": "b"}
    batch = collate([a, a])
    assert batch["lq"].shape == (2, 3, 4, 4) and batch["task"] == ["x", "x"]
    with pytest.raises(DataError, match=r"a batch mixes 'lq' sizes \(x: \(3, 4, 4\), y: \(3, 2, 2\)\)"):
        collate([a, b])
    with pytest.raises(DataError, match="with and without 'labels'"):
        collate([a, {**a, "labels": torch.zeros(4, 4, dtype=torch.long)}])
