"""Write manifests/photos.tsv from the curated photo selection below (a maintainer's tool, run once).

    python scripts/make_photo_manifest.py SOURCES [--out manifests/photos.tsv]

SOURCES is a folder laid out as ``scripts/build_photo_cache.py`` leaves it: wheels in ``SOURCES/pypi/``
(or the same version installed) and Debian packages extracted to ``SOURCES/debian/<package>_<version>/``.

The selection was made by looking at every image of the packages in ../shared/design/data.md and of the
other Debian packages that ship photographs, keeping real photographs in colour and dropping renders,
illustrations, paintings, screenshots, grayscale photos, already-degraded photos (motion blur, defocus),
near-duplicates (stereo pairs, the second view of a scene, an image that is a crop of another one) and
photos stored upside down.
This script also refuses two entries whose 24x24 grayscale thumbnails correlate above 0.95.

Splits are drawn per stratum (a package; packages with fewer than 5 photos form one stratum): photos
(or groups of photos of one scene) are ordered by sha256("anyrestore-photos-v1:" + group), the first
round(0.18 n) go to test, the next round(0.12 n), less the stratum's forced ones, to validation, the rest
to train. The eight photos used to choose shipped parts before this manifest existed are forced to
validation. The test split is frozen: new photos go to train or validation only.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from anyrestore.data.photo_manifest import (
    PhotoEntry,
    debian_file,
    installed_file,
    sha256_bytes,
    write_manifest,
)

FRACTIONS = {"test": 0.18, "validation": 0.12}
MIN_STRATUM = 5
SALT = "anyrestore-photos-v1:"
DUPLICATE_CORRELATION = 0.95
# Used to choose shipped parts (docs/results.md before issue 18): validation, never test.
FORCED_VALIDATION = {
    "skimage-astronaut",
    "skimage-chelsea",
    "skimage-motorcycle_left",
    "sporco-kodim23",
    "sporco-barbara",
    "sporco-monarch",
    "sporco-sail",
    "sporco-tulips",
}
PREFIX = {
    "scikit-image": "skimage",
    "sporco": "sporco",
    "scikit-learn": "sklearn",
    "matplotlib": "matplotlib",
    "lomiri-wallpapers-16.04": "lomiri1604",
    "lomiri-wallpapers-20.04": "lomiri2004",
    "lxqt-themes": "lxqt",
    "mate-backgrounds": "mate",
    "palapeli-data": "palapeli",
    "plasma-workspace-wallpapers": "plasma",
    "libjxl-testdata": "libjxl",
    "opencv-doc": "opencv",
    "kphotoalbum": "kphotoalbum",
    "digikam-data": "digikam",
}

_BG = "usr/share/backgrounds/"
_CV = "usr/share/doc/opencv-doc/examples/"
# (kind, package, version, licence, paths)
SELECTION: list[tuple[str, str, str, str, list[str]]] = [
    (
        "pypi",
        "scikit-image",
        "0.26.0",
        "public domain or free to redistribute (skimage/data/README.txt)",
        [f"skimage/data/{n}" for n in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")]
        + ["skimage/data/motorcycle_left.png"],
    ),
    (
        "pypi",
        "sporco",
        "0.2.2.post1",
        "free of copyright restrictions (sporco/data/README.rst)",
        [f"sporco/data/{n}.png" for n in ("kodim23", "barbara", "monarch", "sail", "tulips")],
    ),
    (
        "pypi",
        "scikit-learn",
        "1.9.1",
        "CC-BY-2.0",
        [f"sklearn/datasets/images/{n}.jpg" for n in ("china", "flower")],
    ),
    (
        "pypi",
        "matplotlib",
        "3.11.2",
        "public domain (US Navy photograph)",
        ["matplotlib/mpl-data/sample_data/grace_hopper.jpg"],
    ),
    (
        "debian",
        "lomiri-wallpapers-16.04",
        "20.04.0-2",
        "CC-BY-4.0",
        [
            _BG + n
            for n in (
                "Picture_0B_by_freespace.jpg",
                "Picture_1A_by_freespace.jpg",
                "Wine_by_Jakkub_Mede.jpg",
                "aitzgorri_by_Aitzol_Berasategi.jpg",
                "friends_by_Aitzol_Berasategi.jpg",
                "life_by_Aitzol_Berasategi.jpg",
                "picosdeeuropa_by_Aitzol_Berasategi.jpg",
                "sunset_by_Aitzol_Berasategi.jpg",
            )
        ],
    ),
    (
        "debian",
        "lomiri-wallpapers-16.04",
        "20.04.0-2",
        "CC-BY-SA-4.0",
        [
            _BG + n
            for n in (
                "Bridge_by_Sander_Klootwijk.jpg",
                "Dragonfly_by_Bolly.jpg",
                "free_by_Peter_Nerlich.jpg",
                "greentock_by_Peter_Nerlich.jpg",
            )
        ],
    ),
    (
        "debian",
        "lomiri-wallpapers-16.04",
        "20.04.0-2",
        "CC0-1.0",
        [_BG + "seeding_by_Clements_Engelhardt.jpg"],
    ),
    (
        "debian",
        "lomiri-wallpapers-20.04",
        "20.04.0-2",
        "CC-BY-SA-3.0",
        [_BG + "Kleiber_by_Lukas_Baubkus.jpg"],
    ),
    (
        "debian",
        "lxqt-themes",
        "1.2.0-1",
        "LGPL-2.1+ (package copyright)",
        ["usr/share/lxqt/themes/silver/beam.png"]
        + [
            "usr/share/lxqt/wallpapers/" + n
            for n in (
                "Butterfly-Kenneth-Wimer.jpg",
                "Valendas.png",
                "after-the-rain.jpg",
                "appleflower.png",
                "butterfly.png",
                "cloud.png",
                "drop.png",
                "flowers.png",
                "fog.jpg",
                "this-is-not-windows.jpg",
            )
        ],
    ),
    (
        "debian",
        "mate-backgrounds",
        "1.26.0-1",
        "GPL-2+",
        [
            "usr/share/backgrounds/mate/nature/" + n
            for n in (
                "Aqua.jpg",
                "Blinds.jpg",
                "Dune.jpg",
                "FreshFlower.jpg",
                "Garden.jpg",
                "GreenMeadow.jpg",
                "LadyBird.jpg",
                "RainDrops.jpg",
                "Storm.jpg",
                "TwoWings.jpg",
                "Wood.jpg",
                "YellowFlower.jpg",
            )
        ],
    ),
    (
        "debian",
        "palapeli-data",
        "4:22.12.3-1",
        "GPL-2+ (package copyright)",
        [
            f"usr/share/palapeli/collection/{n}.jpg"
            for n in (
                "castle-maintenon",
                "cincinnati-bridge",
                "citrus-fruits",
                "european-honey-bee",
                "panther-chameleon-female",
            )
        ],
    ),
    (
        "debian",
        "plasma-workspace-wallpapers",
        "4:5.27.5-2",
        "GPL-2+ (package copyright)",
        [
            f"usr/share/wallpapers/{n}/contents/images/2560x1600.jpg"
            for n in (
                "BytheWater",
                "ColdRipple",
                "ColorfulCups",
                "DarkestHour",
                "EveningGlow",
                "FallenLeaf",
                "Kite",
                "OneStandsOut",
                "Path",
                "summer_1am",
            )
        ],
    ),
    (
        "debian",
        "libjxl-testdata",
        "0.0~git20230110.d6168ff-1",
        "BSD-3-Clause (package copyright)",
        ["usr/share/libjxl-testdata/jxl/flower/flower.png", "usr/share/libjxl-testdata/jxl/hdr_room.png"],
    ),
    (
        "debian",
        "libjxl-testdata",
        "0.0~git20230110.d6168ff-1",
        "CC0-1.0 (wesaturate)",
        [
            f"usr/share/libjxl-testdata/external/wesaturate/500px/{n}_srgb8.png"
            for n in ("cvo9xd_keong_macan", "tmshre_riaphotographs", "u76c0g_bliznaca")
        ],
    ),
    (
        "debian",
        "opencv-doc",
        "4.6.0+dfsg-12",
        "BSD-3-Clause (package copyright, data/*)",
        [_CV + "alphamat/input_images/plant.jpg", _CV + "reg/home.png"]
        + [
            _CV + "data/" + n
            for n in (
                "aero1.jpg",
                "aloeL.jpg",
                "apple.jpg",
                "baboon.jpg",
                "board.jpg",
                "building.jpg",
                "butterfly.jpg",
                "chicky_512.png",
                "ela_original.jpg",
                "fruits.jpg",
                "graf1.png",
                "home.jpg",
                "left.jpg",
                "leuvenA.jpg",
                "messi5.jpg",
                "orange.jpg",
                "rubberwhale1.png",
                "smarties.png",
                "squirrel_cls.jpg",
                "stuff.jpg",
                "sudoku.png",
            )
        ]
        + [f"{_CV}text/scenetext0{i}.jpg" for i in range(1, 7)]
        + [f"{_CV}text/scenetext_segmented_word0{i}.jpg" for i in range(1, 6)],
    ),
    (
        "debian",
        "kphotoalbum",
        "5.9.1-1",
        "GPL-2+ (package copyright)",
        [
            f"usr/share/kphotoalbum/demo/{n}.jpg"
            for n in (
                "anne_helene",
                "bar55",
                "blackie",
                "cold_water",
                "donna",
                "donna_2",
                "grand_canyon_2",
                "grand_canyon_3",
                "jesper",
                "jesper_2",
                "new_wave_1",
                "new_wave_2",
                "pool",
                "qt-logo",
                "skagen",
                "skagen_2",
                "snow",
                "spiff",
                "spiff_2",
                "sunset",
                "wayne",
            )
        ],
    ),
    (
        "debian",
        "digikam-data",
        "4:7.9.0-1",
        "GPL-2+ (package copyright)",
        ["usr/share/digikam/about/images/body-background.jpg"],
    ),
]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _photo_id(package: str, path: str, taken: set[str]) -> str:
    p = Path(path)
    stem = p.parts[3] if package == "plasma-workspace-wallpapers" else p.stem
    photo_id = f"{PREFIX[package]}-{_slug(stem)}"
    if photo_id in taken:
        photo_id = f"{PREFIX[package]}-{_slug(p.parent.name)}_{_slug(stem)}"
    return photo_id


def _group(photo_id: str) -> str:
    # A series of one scene (kphotoalbum's donna, donna_2; grand_canyon_1..3) shares a split.
    return re.sub(r"_\d+$", "", photo_id) if photo_id.startswith("kphotoalbum-") else photo_id


def _read(kind: str, package: str, version: str, path: str, sources: Path) -> bytes:
    probe = PhotoEntry("x", "train", kind, package, version, path, "0" * 64, 1, 1, "")
    if kind == "debian":
        return debian_file(probe, sources).read_bytes()
    installed = installed_file(probe)
    if installed is not None:
        return installed.read_bytes()
    wheel_prefix = package.replace("-", "_") + "-" + version + "-"
    wheels = sorted(
        w for w in (sources / "pypi").glob("*.whl") if w.name.lower().startswith(wheel_prefix.lower())
    )
    if not wheels:
        raise SystemExit(f"{sources / 'pypi'}: no wheel {wheel_prefix}*.whl")
    with zipfile.ZipFile(wheels[0]) as archive:
        return archive.read(path)


def assign_splits(ids_by_stratum: dict[str, list[str]]) -> dict[str, str]:
    """The split of every id, by the rule in the module docstring."""
    split: dict[str, str] = {}
    for ids in ids_by_stratum.values():
        n = len(ids)
        forced = [i for i in ids if i in FORCED_VALIDATION]
        split.update(dict.fromkeys(forced, "validation"))
        want = {
            "test": round(FRACTIONS["test"] * n),
            "validation": round(FRACTIONS["validation"] * n) - len(forced),
        }
        groups: dict[str, list[str]] = defaultdict(list)
        for i in ids:
            if i not in FORCED_VALIDATION:
                groups[_group(i)].append(i)
        order = sorted(groups, key=lambda g: hashlib.sha256((SALT + g).encode()).hexdigest())
        counts = {"test": 0, "validation": 0}
        for g in order:
            target = next((s for s in ("test", "validation") if counts[s] < want[s]), "train")
            if target != "train":
                counts[target] += len(groups[g])
            split.update(dict.fromkeys(groups[g], target))
    return split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", type=Path)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "manifests" / "photos.tsv"
    )
    args = parser.parse_args()
    rows = []
    taken: set[str] = set()
    for kind, package, version, licence, paths in SELECTION:
        for path in paths:
            data = _read(kind, package, version, path, args.sources)
            photo_id = _photo_id(package, path, taken)
            taken.add(photo_id)
            with Image.open(io.BytesIO(data)) as image:
                size = image.size
                thumb = ImageOps.exif_transpose(image).convert("L").resize((24, 24), Image.Resampling.BOX)
            rows.append((photo_id, kind, package, version, path, sha256_bytes(data), size, licence, thumb))
    vectors = np.stack([np.asarray(r[-1], np.float64).ravel() for r in rows])
    vectors -= vectors.mean(axis=1, keepdims=True)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
    corr = np.triu(vectors @ vectors.T, 1)
    duplicates = np.argwhere(corr > DUPLICATE_CORRELATION)
    for i, j in duplicates:
        print(f"near-duplicates ({corr[i, j]:.3f}): {rows[i][0]} {rows[j][0]}", file=sys.stderr)
    if len(duplicates):
        raise SystemExit(1)
    strata: dict[str, list[str]] = defaultdict(list)
    count = defaultdict(int)
    for r in rows:
        count[r[2]] += 1
    for r in rows:
        strata[r[2] if count[r[2]] >= MIN_STRATUM else "small packages"].append(r[0])
    split = assign_splits(strata)
    entries = [
        PhotoEntry(r[0], split[r[0]], r[1], r[2], r[3], r[4], r[5], r[6][0], r[6][1], r[7]) for r in rows
    ]
    write_manifest(entries, args.out)
    tally = defaultdict(int)
    for e in entries:
        tally[e.split] += 1
    print(f"{len(entries)} photos -> {args.out}: " + ", ".join(f"{s} {tally[s]}" for s in tally))


if __name__ == "__main__":
    main()
