"""The committed photo manifest and the deterministic, atomic preparation of cached photos."""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anyrestore.data import photo_manifest as pm

# The frozen test split (docs/datasets.md): changing it means a new test split, scored afresh.
FROZEN_TEST = {
    "digikam-body_background",
    "kphotoalbum-donna",
    "kphotoalbum-donna_2",
    "kphotoalbum-jesper",
    "kphotoalbum-jesper_2",
    "kphotoalbum-qt_logo",
    "libjxl-cvo9xd_keong_macan_srgb8",
    "lomiri1604-bridge_by_sander_klootwijk",
    "lomiri1604-picture_1a_by_freespace",
    "lxqt-this_is_not_windows",
    "lxqt-valendas",
    "mate-garden",
    "mate-greenmeadow",
    "opencv-baboon",
    "opencv-data_home",
    "opencv-fruits",
    "opencv-rubberwhale1",
    "opencv-scenetext_segmented_word05",
    "opencv-stuff",
    "palapeli-european_honey_bee",
    "plasma-colorfulcups",
    "plasma-path",
    "skimage-coffee",
}
# Used to choose shipped parts before the manifest existed: validation, never test.
USED_BEFORE = {
    "skimage-astronaut",
    "skimage-chelsea",
    "skimage-motorcycle_left",
    "sporco-kodim23",
    "sporco-barbara",
    "sporco-monarch",
    "sporco-sail",
    "sporco-tulips",
}
SIZES = {"train": 80, "validation": 23, "test": 23}  # as docs/datasets.md states


@pytest.fixture(scope="module")
def entries() -> list[pm.PhotoEntry]:
    return pm.read_manifest()


def test_manifest_parses_with_unique_ids_and_hashes(entries: list[pm.PhotoEntry]) -> None:
    assert len(entries) >= 80
    assert len({e.id for e in entries}) == len(entries)
    assert len({e.sha256 for e in entries}) == len(entries)
    assert {e.kind for e in entries} == {"pypi", "debian"}


def test_splits_are_disjoint_sized_and_mixed(entries: list[pm.PhotoEntry]) -> None:
    by_split = {s: {e.id for e in entries if e.split == s} for s in pm.SPLITS}
    assert sum(len(ids) for ids in by_split.values()) == len(entries)
    assert {s: len(ids) for s, ids in by_split.items()} == SIZES
    assert by_split["test"] == FROZEN_TEST
    test_packages = Counter(e.package for e in entries if e.split == "test")
    assert len(test_packages) >= 3
    assert max(test_packages.values()) <= len(FROZEN_TEST) // 3


def test_photos_used_before_are_validation(entries: list[pm.PhotoEntry]) -> None:
    split = {e.id: e.split for e in entries}
    assert {split[i] for i in USED_BEFORE} == {"validation"}


def test_scikit_image_entries_verify_against_the_installed_wheel(entries: list[pm.PhotoEntry]) -> None:
    import skimage

    root = Path(skimage.__file__).parent
    checked = 0
    for entry in entries:
        if entry.package != "scikit-image":
            continue
        path = root / entry.path.split("/", 1)[1]
        pm.verify(path.read_bytes(), entry, path)
        located = pm.installed_file(entry)
        if located is not None:
            assert located.samefile(path)
        with Image.open(path) as image:
            assert image.size == (entry.width, entry.height)
        checked += 1
    assert checked == 5


def test_verify_names_the_file_on_mismatch(entries: list[pm.PhotoEntry]) -> None:
    with pytest.raises(pm.ManifestError, match=r"^some/file\.png: sha256 .* \(") as info:
        pm.verify(b"not the photo", entries[0], "some/file.png")
    assert "\n" not in str(info.value)


def test_malformed_manifest_is_refused(tmp_path: Path, entries: list[pm.PhotoEntry]) -> None:
    path = tmp_path / "photos.tsv"
    pm.write_manifest(entries[:3], path)
    assert pm.read_manifest(path) == sorted(entries[:3], key=lambda e: (pm.SPLITS.index(e.split), e.id))
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(pm.ManifestError, match="duplicate id"):
        pm.read_manifest(path)
    path.write_text("id\tsplit\n")
    with pytest.raises(pm.ManifestError, match="header"):
        pm.read_manifest(path)


def _encoded(size: tuple[int, int], fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("size", "fmt", "split", "expected"),
    [
        ((1000, 600), "PNG", "test", (768, 456)),  # fits 768x512: 768x461, cropped to multiples of 8
        ((600, 1000), "PNG", "validation", (456, 768)),
        ((2100, 1300), "PNG", "train", (1024, 632)),  # long side 1024: 1024x634
        ((300, 203), "JPEG", "train", (144, 96)),  # JPEG: at least 2x smaller (150x102)
        ((250, 130), "PNG", "train", (248, 128)),  # small lossless: only the crop
    ],
)
def test_preparation_rule(size: tuple[int, int], fmt: str, split: str, expected: tuple[int, int]) -> None:
    data = _encoded(size, fmt)
    first, second = pm.prepare_photo(data, split), pm.prepare_photo(data, split)
    assert first.mode == "RGB" and first.size == expected
    assert np.array_equal(np.asarray(first), np.asarray(second))


def _entry(sha: str) -> pm.PhotoEntry:
    return pm.PhotoEntry("synthetic-photo", "test", "pypi", "none", "0", "x.png", sha, 64, 48, "")


def test_cache_write_is_atomic_and_stamped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _encoded((64, 48), "PNG")
    entry = _entry(pm.sha256_bytes(data))
    image = pm.prepare_photo(data, entry.split)
    assert not pm.is_cached(entry, tmp_path)
    path = pm.write_cached(image, entry, tmp_path)
    assert path == tmp_path / "test" / "synthetic-photo.png"
    assert pm.is_cached(entry, tmp_path)
    assert not pm.is_cached(_entry("0" * 64), tmp_path)  # a different source file: rebuild
    assert pm.photo_files(tmp_path, "test") == [path]
    with Image.open(path) as written:
        assert np.array_equal(np.asarray(written), np.asarray(image))

    def fail(src: str, dst: str) -> None:
        raise OSError("disk full")

    path.unlink()
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        pm.write_cached(image, entry, tmp_path)
    assert list((tmp_path / "test").iterdir()) == []  # neither the photo nor a temporary file


def test_build_script_is_idempotent_and_refuses_a_bad_hash(
    tmp_path: Path, entries: list[pm.PhotoEntry], capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "build_photo_cache.py"
    spec = importlib.util.spec_from_file_location("build_photo_cache", script)
    assert spec is not None and spec.loader is not None
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    coffee = next(e for e in entries if e.id == "skimage-coffee")  # read from the installed wheel
    manifest, cache = tmp_path / "photos.tsv", tmp_path / "cache"
    pm.write_manifest([coffee], manifest)
    argv = ["--manifest", str(manifest), "--cache", str(cache), "--sources", str(tmp_path / "sources")]
    (cache / "test").mkdir(parents=True)
    (cache / "test" / "not-listed.png").write_bytes(b"")
    assert build.main(argv) == 0
    assert pm.photo_files(cache, "test") == [cache / "test" / "skimage-coffee.png"]
    assert build.main(argv) == 0
    assert "1 were cached already" in capsys.readouterr().out
    bad = pm.PhotoEntry(**{**coffee.__dict__, "sha256": "0" * 64})
    pm.write_manifest([bad], manifest)
    capsys.readouterr()
    assert build.main(argv) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith("error: ") and "coffee.png: sha256" in line for line in error)
