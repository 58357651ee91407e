"""Reading and writing image files: the only place in anyrestore that knows file formats.

Inside the library an image is a float32 RGB tensor (3, H, W) in [0, 1]. Reading keeps what a writer
needs to give the file back as it came: alpha (split off, returned unchanged), bit depth (8 or 16),
whether it was grayscale, the format and the ICC profile. EXIF orientation is applied on reading, so
pixels are always upright. Pillow reads and writes everything but 16-bit colour, which Pillow cannot
hold; OpenCV reads and writes that.
"""

from __future__ import annotations

import contextlib
import io as _io
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from anyrestore.color import LUMA
from anyrestore.errors import ImageError

# Pillow's own decompression-bomb error threshold (2 x Image.MAX_IMAGE_PIXELS).
MAX_PIXELS = 178_956_970

READ_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")
WRITE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}
SIXTEEN_BIT_FORMATS = ("PNG", "TIFF")
ALPHA_FORMATS = ("PNG", "TIFF", "WEBP")
SUFFIX_OF_FORMAT = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp", "BMP": ".bmp"}

_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageData:
    """A decoded image: upright RGB pixels plus what is needed to write it back faithfully."""

    pixels: torch.Tensor  # (3, H, W) float32 in [0, 1]
    alpha: torch.Tensor | None = None  # (H, W) float32 in [0, 1]
    bit_depth: int = 8
    grayscale: bool = False
    format: str = "PNG"
    icc_profile: bytes | None = None
    path: Path | None = None
    # A JPEG file's (luma, chroma) quantisation tables, (8, 8) each in natural order, as the pixels are
    # oriented; None for other formats. Models that take side information read them (models/side.py).
    jpeg_tables: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.pixels.shape[-2]), int(self.pixels.shape[-1])

    def with_pixels(self, pixels: torch.Tensor) -> ImageData:
        """The same image facts with new pixels (e.g. a restored or degraded version)."""
        if pixels.dim() == 4:
            pixels = pixels[0]
        alpha = self.alpha
        if alpha is not None and tuple(alpha.shape) != tuple(pixels.shape[-2:]):
            alpha = _resize_plane(alpha, pixels.shape[-2:])
        return replace(self, pixels=pixels.detach().float().cpu(), alpha=alpha)


def _resize_plane(plane: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    out = torch.nn.functional.interpolate(plane[None, None], size=tuple(size), mode="bicubic", antialias=True)
    return out[0, 0].clamp(0, 1)


# ----------------------------------------------------------------------------------------------- reading


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageError(path, "no such file")
    if path.is_dir():
        raise ImageError(path, "is a directory, not an image file")
    if path.stat().st_size == 0:
        raise ImageError(path, "empty file (0 bytes)")


def _is_sixteen_bit_colour(im: Image.Image, header: bytes) -> bool:
    """True for 16-bit RGB(A) PNG/TIFF, which Pillow would silently reduce to 8 bits."""
    if im.format == "PNG" and header[:8] == b"\x89PNG\r\n\x1a\n" and len(header) >= 26:
        bit_depth, colour_type = header[24], header[25]
        return bit_depth == 16 and colour_type in (2, 6)
    if im.format == "TIFF":
        bits = im.tag_v2.get(258)
        samples = im.tag_v2.get(277, 1)
        if isinstance(bits, tuple | list):
            bits = bits[0] if bits else None
        return bits == 16 and samples in (3, 4)
    return False


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an (H, W, C) array, as ImageOps.exif_transpose does."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(array)) if op else array


def _opencv():
    """Import OpenCV lazily (only 16-bit colour needs it) with its console warnings silenced."""
    import cv2

    with contextlib.suppress(AttributeError):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return cv2


def _read_sixteen_bit_colour(path: Path, data: bytes, orientation: int) -> np.ndarray:
    cv2 = _opencv()
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16 or array.ndim != 3:
        raise ImageError(path, "truncated or corrupt 16-bit image data")
    order = [2, 1, 0, 3] if array.shape[2] == 4 else [2, 1, 0]
    return _orient(array[:, :, order], orientation)


def _pillow_to_array(im: Image.Image) -> tuple[np.ndarray, int, bool]:
    """Convert any Pillow mode to an (H, W, C) uint8/uint16 array; returns (array, bit depth, grayscale)."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im, dtype=np.uint16)[:, :, None], 16, True
    if mode == "I":
        values = np.asarray(im, dtype=np.int64)
        depth = 8 if values.max(initial=0) <= 255 and values.min(initial=0) >= 0 else 16
        dtype = np.uint8 if depth == 8 else np.uint16
        return np.clip(values, 0, 255 if depth == 8 else 65535).astype(dtype)[:, :, None], depth, True
    if mode == "F":
        values = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
        return np.round(values * 65535).astype(np.uint16)[:, :, None], 16, True
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"))[:, :, None], 8, True
    if mode in ("LA", "La"):
        return np.asarray(im.convert("LA")), 8, True
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in im.info
        return np.asarray(im.convert("RGBA" if has_alpha else "RGB")), 8, False
    if mode in ("RGBA", "RGBa"):
        return np.asarray(im.convert("RGBA")), 8, False
    # RGB, CMYK, YCbCr, LAB, HSV: Pillow converts to RGB.
    return np.asarray(im.convert("RGB")), 8, False


def read_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> ImageData:
    """Read an image file into an :class:`ImageData`.

    Every failure (missing, empty, not an image, truncated, absurdly large) raises :class:`ImageError`
    whose message names the file and the problem.
    """
    path = Path(path)
    _check_file(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(path, f"cannot read file ({exc.strerror or exc})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(_io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(path, "not an image (unrecognised or unsupported format)") from None
    except Image.DecompressionBombError:
        raise ImageError(path, f"image too large (over {max_pixels:,} pixels)") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(path, f"corrupt image header ({exc})") from None

    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageError(path, f"invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise ImageError(path, f"image too large: {width}x{height} is over {max_pixels:,} pixels")

    fmt = im.format or "PNG"
    icc = im.info.get("icc_profile")
    try:
        orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF must not make a readable image unreadable
        orientation = 1
    tables = _jpeg_tables(im, orientation)
    try:
        if _is_sixteen_bit_colour(im, data[:32]):
            array, depth, gray = _read_sixteen_bit_colour(path, data, orientation), 16, False
        else:
            im.load()
            if orientation != 1:
                im = ImageOps.exif_transpose(im)
            array, depth, gray = _pillow_to_array(im)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(path, f"truncated or corrupt image data ({exc})") from None

    scale = 255.0 if depth == 8 else 65535.0
    planes = torch.from_numpy(array.astype(np.float32) / scale).permute(2, 0, 1).contiguous()
    colour_planes = 1 if gray else 3
    pixels = planes[:colour_planes]
    if gray:
        pixels = pixels.expand(3, -1, -1).contiguous()
    alpha = planes[colour_planes] if planes.shape[0] > colour_planes else None
    return ImageData(pixels, alpha, depth, gray, fmt, icc, path, tables)


def _jpeg_tables(im: Image.Image, orientation: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The (luma, chroma) quantisation tables of a JPEG, transposed when EXIF turns the image by 90°."""
    quantization = getattr(im, "quantization", None) if im.format == "JPEG" else None
    if not quantization or 0 not in quantization:
        return None
    luma = torch.tensor(list(quantization[0]), dtype=torch.float32).reshape(8, 8)
    chroma = torch.tensor(list(quantization.get(1, quantization[0])), dtype=torch.float32).reshape(8, 8)
    if orientation in (5, 6, 7, 8):  # these orientations transpose the pixels, and so the DCT indices
        luma, chroma = luma.T.contiguous(), chroma.T.contiguous()
    return luma, chroma


def read_tensor(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an image as a (1, 3, H, W) float32 tensor in [0, 1] (alpha dropped)."""
    return read_image(path).pixels[None]


# ----------------------------------------------------------------------------------------------- writing


def format_for_suffix(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in WRITE_FORMATS:
        known = ", ".join(sorted(WRITE_FORMATS))
        raise ImageError(path, f"cannot write '{suffix or '(no suffix)'}' files (supported: {known})")
    return WRITE_FORMATS[suffix]


def _quantise(planes: torch.Tensor, bit_depth: int) -> np.ndarray:
    top = 255 if bit_depth == 8 else 65535
    values = torch.round(planes.detach().float().cpu().clamp(0, 1) * top)
    return values.numpy().astype(np.uint8 if bit_depth == 8 else np.uint16)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# The hidden temporary of an atomic write: ".NAME.PID-XXXXXXXX.tmp" (PID: the writing process).
_TEMP_NAME = re.compile(r"\..+\.(?P<pid>\d+)-[a-z0-9_]{8}\.tmp")
_SWEPT: set[Path] = set()


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # on Windows os.kill(pid, 0) would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, under another user
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the hidden temporaries that atomic writes into ``folder`` left when their process was
    killed before the rename (the writer's PID, in the name, no longer runs); returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.fullmatch(entry.name)
        if match and entry.is_file(follow_symlinks=False) and not _process_alive(int(match["pid"])):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_output(path: Path):
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else remove it.

    The first write of a process into a folder also removes the temporaries that killed writers left
    there (:func:`remove_stale_temporaries`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent.resolve()
    if folder not in _SWEPT:
        _SWEPT.add(folder)
        remove_stale_temporaries(folder)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes 0600 files (and some writers replace the file): give outputs the usual permissions.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomically(path: Path, data: bytes | str) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through :func:`atomic_output`: whole, or not at all."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def write_image(
    path: str | os.PathLike[str],
    pixels: torch.Tensor | ImageData,
    *,
    alpha: torch.Tensor | None = None,
    bit_depth: int | None = None,
    grayscale: bool | None = None,
    quality: int = 95,
    icc_profile: bytes | None = None,
) -> Path:
    """Write an image atomically (temporary file, then rename); the format follows the suffix.

    ``pixels`` is a (3, H, W) or (1, 3, H, W) tensor in [0, 1], or an :class:`ImageData` whose alpha,
    bit depth, grayscale flag and ICC profile are used unless given here. 16-bit output is for PNG and
    TIFF; alpha is kept for PNG, TIFF and WebP. Impossible requests raise :class:`ImageError`.
    """
    path = Path(path)
    if isinstance(pixels, ImageData):
        image = pixels
        pixels = image.pixels
        alpha = image.alpha if alpha is None else alpha
        bit_depth = image.bit_depth if bit_depth is None else bit_depth
        grayscale = image.grayscale if grayscale is None else grayscale
        icc_profile = image.icc_profile if icc_profile is None else icc_profile
    bit_depth = 8 if bit_depth is None else bit_depth
    grayscale = bool(grayscale)
    if pixels.dim() == 4:
        if pixels.shape[0] != 1:
            raise ValueError(f"write_image takes one image, got a batch of {pixels.shape[0]}")
        pixels = pixels[0]
    if pixels.dim() != 3 or pixels.shape[0] not in (1, 3):
        raise ValueError(f"expected pixels of shape (3, H, W), got {tuple(pixels.shape)}")
    fmt = format_for_suffix(path)
    if bit_depth not in (8, 16):
        raise ImageError(path, f"bit depth must be 8 or 16, not {bit_depth}")
    if bit_depth == 16 and fmt not in SIXTEEN_BIT_FORMATS:
        raise ImageError(path, f"{fmt} cannot store 16-bit images (use .png or .tif)")
    if alpha is not None and fmt not in ALPHA_FORMATS:
        raise ImageError(path, f"{fmt} cannot store an alpha channel (use .png, .tif or .webp)")

    if grayscale or pixels.shape[0] == 1:
        # ITU-R BT.601 luma, as Pillow's RGB -> L conversion uses.
        weights = torch.tensor(LUMA).view(3, 1, 1)
        colour = pixels if pixels.shape[0] == 1 else (pixels.float().cpu() * weights).sum(0, keepdim=True)
    else:
        colour = pixels
    planes = colour if alpha is None else torch.cat([colour.float().cpu(), alpha[None].float().cpu()], 0)
    array = np.ascontiguousarray(_quantise(planes, bit_depth).transpose(1, 2, 0))

    with atomic_output(path) as tmp:
        if bit_depth == 16:
            _write_sixteen_bit(path, tmp, array, fmt)
        else:
            _write_eight_bit(tmp, array, fmt, quality, icc_profile)
    return path


def _write_sixteen_bit(path: Path, tmp: Path, array: np.ndarray, fmt: str) -> None:
    cv2 = _opencv()

    if array.shape[2] == 3:
        array = array[:, :, ::-1]
    elif array.shape[2] == 4:
        array = array[:, :, [2, 1, 0, 3]]
    elif array.shape[2] == 2:  # OpenCV has no gray+alpha PNG: store as RGBA
        array = array[:, :, [0, 0, 0, 1]]
    elif array.shape[2] == 1:
        array = array[:, :, 0]
    ok, encoded = cv2.imencode(SUFFIX_OF_FORMAT[fmt], np.ascontiguousarray(array))
    if not ok:
        raise ImageError(path, f"OpenCV could not encode a 16-bit {fmt}")
    tmp.write_bytes(encoded.tobytes())


def _write_eight_bit(tmp: Path, array: np.ndarray, fmt: str, quality: int, icc: bytes | None) -> None:
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]]
    im = Image.fromarray(array[:, :, 0] if mode == "L" else array, mode=mode)
    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if fmt in ("JPEG", "WEBP"):
        options["quality"] = int(quality)
    if fmt == "JPEG":
        options["subsampling"] = 0 if quality >= 90 else 2
    if fmt == "BMP":
        options.pop("icc_profile", None)
    im.save(tmp, format=fmt, **options)


# ------------------------------------------------------------------------------------------ finding files


def list_images(
    inputs: list[str | os.PathLike[str]] | str,
    *,
    recursive: bool = False,
    problems: list[ImageError] | None = None,
) -> list[Path]:
    """Expand files, folders (their images, sorted) and glob patterns into a list of image paths.

    A path that does not exist and matches nothing raises :class:`ImageError`, or with ``problems``
    given is appended to it and skipped, so a caller can report each and go on with the rest. Files are
    returned as given even when their suffix is not an image's, so the reader can report them.
    """
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found.extend(
                p for p in sorted(path.glob(pattern)) if p.is_file() and p.suffix.lower() in READ_EXTENSIONS
            )
        elif path.exists():
            found.append(path)
        elif any(ch in str(item) for ch in "*?["):
            matches = sorted(Path(m) for m in _glob(str(item)))
            if not matches:
                _problem(ImageError(path, "pattern matches no file"), problems)
            found.extend(m for m in matches if m.is_file())
        else:
            _problem(ImageError(path, "no such file or folder"), problems)
    unique: dict[Path, None] = {}
    for p in found:
        unique.setdefault(p, None)
    return list(unique)


def _problem(error: ImageError, problems: list[ImageError] | None) -> None:
    if problems is None:
        raise error
    problems.append(error)


def _glob(pattern: str) -> list[str]:
    import glob

    return glob.glob(pattern, recursive=True)
