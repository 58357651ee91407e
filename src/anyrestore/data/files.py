"""Finding training images on disk and checking them before a run starts, not hours into it."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from anyrestore.errors import AnyRestoreError
from anyrestore.io import READ_EXTENSIONS

_EXIF_ORIENTATION = 0x0112
_SHOWN = 3  # offending files named in a message


class DataError(AnyRestoreError):
    """A dataset is unusable (missing folder, no images, unpaired or too small files); the message says
    which file or folder and why."""


def format_examples(items: Sequence[object]) -> str:
    shown = ", ".join(str(i) for i in items[:_SHOWN])
    return shown + (f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else "")


def list_folder(
    folder: str | os.PathLike[str], *, recursive: bool = False, what: str = "image"
) -> list[Path]:
    """The image files of ``folder`` (sorted; recursive when asked); a missing or empty folder is an error."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"{folder}: {what} folder does not exist")
    if not folder.is_dir():
        raise DataError(f"{folder}: expected a folder of {what}s, found a file")
    pattern = "**/*" if recursive else "*"
    files = [p for p in sorted(folder.glob(pattern)) if p.is_file() and p.suffix.lower() in READ_EXTENSIONS]
    if not files:
        hint = "" if recursive else " (images in sub-folders need recursive: true)"
        raise DataError(f"{folder}: no {what}s found ({', '.join(READ_EXTENSIONS)}){hint}")
    return files


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(height, width) of an image as :func:`anyrestore.io.read_image` will return it (EXIF rotation
    applied), read from the file header only, so a whole dataset is checked in seconds. Remembered per
    process: recipes that synthesise several tasks from one clean folder check it once."""
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    return _header_size(path, stat.st_mtime_ns, stat.st_size)


@functools.cache
def _header_size(path: Path, mtime_ns: int, size: int) -> tuple[int, int]:
    """Keyed by modification time and size too, so a replaced file is read again."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            try:
                orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1))
            except Exception:  # malformed EXIF: read_image ignores it too
                orientation = 1
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def image_sizes(
    paths: Sequence[Path], *, progress: bool = False, desc: str = "checking"
) -> list[tuple[int, int]]:
    """:func:`image_size` of every path, with a progress bar for large datasets."""
    return [image_size(p) for p in tqdm(paths, desc=desc, unit="img", disable=not progress, leave=False)]


def check_min_size(paths: Sequence[Path], sizes: Sequence[tuple[int, int]], minimum: int, why: str) -> None:
    """Raise :class:`DataError` naming the images whose height or width is below ``minimum``."""
    small = [f"{p} ({w}x{h})" for p, (h, w) in zip(paths, sizes, strict=True) if min(h, w) < minimum]
    if small:
        raise DataError(f"{len(small)} image(s) smaller than {why} ({minimum}px): {format_examples(small)}")
