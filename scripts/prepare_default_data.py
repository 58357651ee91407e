"""Lay out the data the default model trains and validates on, from photos that packages ship.

    python scripts/prepare_default_data.py PHOTOS_DIR DATA_ROOT

PHOTOS_DIR holds the wallpaper photographs that ``scripts/fetch_training_photos.sh`` fetches (Debian
packages, real photos). Each is downscaled so its short side is 640 px (removing the source JPEG's
blocking, as ``../shared/design/data.md`` advises) and saved losslessly to DATA_ROOT/train, and as
whole-scene miniatures (short side 72, 96 and 128 px) to DATA_ROOT/scenes. DATA_ROOT/val
gets two held-out scikit-image photos (coffee, rocket), used only to watch training; the
evaluation photos of docs/results.md (astronaut, chelsea, ...) are never written here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

SHORT_SIDE = 640
SCENE_SHORT_SIDES = (72, 96, 128)
VAL_PHOTOS = ("coffee", "rocket")


def main(photos: Path, root: Path) -> None:
    train, val, scenes = root / "train", root / "val", root / "scenes"
    train.mkdir(parents=True, exist_ok=True)
    scenes.mkdir(parents=True, exist_ok=True)
    val.mkdir(parents=True, exist_ok=True)
    sources = sorted(p for p in photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not sources:
        raise SystemExit(f"{photos}: no photos (run scripts/fetch_training_photos.sh first)")
    for path in sources:
        im = Image.open(path).convert("RGB")
        scale = SHORT_SIDE / min(im.size)
        if scale < 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
        im.save(train / f"{path.stem}.png")
        # Whole-scene miniatures: a 64 px crop of these shows most of the scene, which is what haze and
        # exposure are properties of (the default model's curve stage learns them here).
        for short in SCENE_SHORT_SIDES:
            f = short / min(im.size)
            small = im.resize((round(im.width * f), round(im.height * f)), Image.Resampling.LANCZOS)
            small.save(scenes / f"{path.stem}_{short}.png")
    from skimage import data

    for name in VAL_PHOTOS:
        Image.fromarray(np.asarray(getattr(data, name)())).save(val / f"{name}.png")
    print(
        f"{len(sources)} training photos in {train} (and {len(SCENE_SHORT_SIDES)} miniatures each in "
        f"{scenes}), {len(VAL_PHOTOS)} validation photos in {val}"
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
