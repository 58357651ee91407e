from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from anyrestore.io import (
    ImageError,
    atomic_output,
    list_images,
    read_image,
    read_tensor,
    remove_stale_temporaries,
    write_image,
)
from anyrestore.io.image import _orient


def _uint8(t: torch.Tensor) -> np.ndarray:
    return np.round(t.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ round trips


def test_png_8bit_round_trip_is_exact(tmp_path: Path, photo_uint8: np.ndarray) -> None:
    Image.fromarray(photo_uint8).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.pixels.shape == (3, 96, 96) and image.pixels.dtype == torch.float32
    assert image.bit_depth == 8 and image.format == "PNG" and not image.grayscale and image.alpha is None
    np.testing.assert_array_equal(_uint8(image.pixels), photo_uint8)
    write_image(tmp_path / "b.png", image)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png")), photo_uint8)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_colour_round_trip(tmp_path: Path, suffix: str) -> None:
    gen = torch.Generator().manual_seed(0)
    values = torch.randint(0, 65536, (3, 17, 23), generator=gen)
    pixels = values.float() / 65535
    write_image(tmp_path / f"a{suffix}", pixels, bit_depth=16)
    image = read_image(tmp_path / f"a{suffix}")
    assert image.bit_depth == 16 and not image.grayscale
    assert torch.equal(torch.round(image.pixels.double() * 65535).long(), values)


def test_16bit_grayscale_png_is_read_as_16bit(tmp_path: Path) -> None:
    values = (np.arange(40 * 30, dtype=np.uint32) * 53 % 65536).astype(np.uint16).reshape(30, 40)
    Image.fromarray(values).save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    assert image.bit_depth == 16 and image.grayscale
    assert torch.equal(image.pixels[0], image.pixels[2])
    np.testing.assert_array_equal(np.round(image.pixels[1].numpy() * 65535).astype(np.uint16), values)
    write_image(tmp_path / "g2.png", image)
    again = read_image(tmp_path / "g2.png")
    assert again.bit_depth == 16 and again.grayscale
    np.testing.assert_array_equal(np.round(again.pixels[0].numpy() * 65535).astype(np.uint16), values)


def test_grayscale_8bit_written_back_as_grayscale(tmp_path: Path, photo_uint8: np.ndarray) -> None:
    gray = photo_uint8[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    assert image.grayscale and image.bit_depth == 8 and image.pixels.shape == (3, 96, 96)
    write_image(tmp_path / "out.png", image)
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "L"
    np.testing.assert_array_equal(np.asarray(out), gray)


def test_rgba_alpha_split_and_returned_unchanged(tmp_path: Path, photo_uint8: np.ndarray) -> None:
    alpha = (np.arange(96 * 96) % 256).astype(np.uint8).reshape(96, 96)
    Image.fromarray(np.dstack([photo_uint8, alpha]), mode="RGBA").save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.pixels.shape == (3, 96, 96) and image.alpha is not None
    np.testing.assert_array_equal(np.round(image.alpha.numpy() * 255).astype(np.uint8), alpha)
    write_image(tmp_path / "b.png", image.with_pixels(image.pixels * 0.5))
    out = np.asarray(Image.open(tmp_path / "b.png"))
    assert out.shape == (96, 96, 4)
    np.testing.assert_array_equal(out[..., 3], alpha)


def test_palette_with_and_without_transparency(tmp_path: Path, photo_uint8: np.ndarray) -> None:
    pal = Image.fromarray(photo_uint8).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    assert image.alpha is None and not image.grayscale
    np.testing.assert_array_equal(_uint8(image.pixels), np.asarray(pal.convert("RGB")))
    pal.save(tmp_path / "pt.png", transparency=0)
    assert read_image(tmp_path / "pt.png").alpha is not None


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_cmyk_is_converted_to_rgb(tmp_path: Path, photo_uint8: np.ndarray, suffix: str) -> None:
    Image.fromarray(photo_uint8).convert("CMYK").save(tmp_path / f"c{suffix}")
    image = read_image(tmp_path / f"c{suffix}")
    assert image.pixels.shape == (3, 96, 96)
    expected = np.asarray(Image.open(tmp_path / f"c{suffix}").convert("RGB")).astype(float)
    assert np.abs(_uint8(image.pixels).astype(float) - expected).max() <= 1


def test_exif_orientation_is_applied(tmp_path: Path, photo_uint8: np.ndarray) -> None:
    wide = photo_uint8[:40, :]  # 40 x 96
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(wide).save(tmp_path / "r.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "r.jpg")
    assert image.size == (96, 40)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "r.jpg")))
    np.testing.assert_array_equal(_uint8(image.pixels), expected)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_array_orientation_matches_pillow(orientation: int) -> None:
    array = np.arange(5 * 7, dtype=np.uint8).reshape(5, 7)
    im = Image.fromarray(array)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(_orient(array[:, :, None], orientation)[:, :, 0], expected)


def _with_exif_chunk(png: bytes, orientation: int) -> bytes:
    """Insert a PNG eXIf chunk carrying an orientation tag after the IHDR chunk."""
    import zlib

    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes()
    payload = payload[6:] if payload.startswith(b"Exif\x00\x00") else payload
    chunk = len(payload).to_bytes(4, "big") + b"eXIf" + payload
    chunk += zlib.crc32(chunk[4:]).to_bytes(4, "big")
    return png[:33] + chunk + png[33:]


def test_16bit_colour_exif_orientation(tmp_path: Path) -> None:
    values = (np.arange(6 * 4 * 3, dtype=np.uint16).reshape(6, 4, 3) * 900).astype(np.uint16)
    write_image(tmp_path / "a.png", torch.from_numpy(values / 65535.0).float().permute(2, 0, 1), bit_depth=16)
    (tmp_path / "r.png").write_bytes(_with_exif_chunk((tmp_path / "a.png").read_bytes(), 6))
    image = read_image(tmp_path / "r.png")
    assert image.bit_depth == 16 and image.size == (4, 6)
    got = np.round(image.pixels.permute(1, 2, 0).numpy() * 65535).astype(np.uint16)
    np.testing.assert_array_equal(got, np.rot90(values, -1))


@pytest.mark.parametrize("suffix", [".webp", ".bmp", ".jpg", ".tif"])
def test_other_formats_read(tmp_path: Path, photo_uint8: np.ndarray, suffix: str) -> None:
    kwargs = {"lossless": True} if suffix == ".webp" else {}
    Image.fromarray(photo_uint8).save(tmp_path / f"a{suffix}", **kwargs)
    image = read_image(tmp_path / f"a{suffix}")
    assert image.size == (96, 96) and image.bit_depth == 8
    if suffix != ".jpg":
        np.testing.assert_array_equal(_uint8(image.pixels), photo_uint8)
    assert read_tensor(tmp_path / f"a{suffix}").shape == (1, 3, 96, 96)


# ------------------------------------------------------------------------------------------ bad input


def _truncated(tmp_path: Path, photo_uint8: np.ndarray, fmt: str) -> Path:
    path = tmp_path / f"t.{fmt}"
    Image.fromarray(photo_uint8).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d, p: d / "missing.png", "no such file"),
        (lambda d, p: d, "is a directory"),
        (lambda d, p: (d / "e.png").write_bytes(b"") and d / "e.png" or d / "e.png", "empty file"),
        (lambda d, p: (d / "x.png").write_text("hello, not an image") and d / "x.png", "not an image"),
        (lambda d, p: _truncated(d, p, "png"), "truncated or corrupt"),
        (lambda d, p: _truncated(d, p, "jpg"), "truncated or corrupt"),
    ],
    ids=["missing", "directory", "empty", "not-an-image", "truncated-png", "truncated-jpeg"],
)
def test_bad_input_raises_one_clear_error(
    tmp_path: Path, photo_uint8: np.ndarray, make, message: str
) -> None:
    path = make(tmp_path, photo_uint8)
    with pytest.raises(ImageError) as info:
        read_image(path)
    text = str(info.value)
    assert message in text and str(path) in text
    assert "\n" not in text


def test_absurd_size_is_refused(tmp_path: Path, photo_uint8: np.ndarray) -> None:
    Image.fromarray(photo_uint8).save(tmp_path / "a.png")
    with pytest.raises(ImageError, match=r"a\.png: image too large: 96x96 is over 1,000 pixels"):
        read_image(tmp_path / "a.png", max_pixels=1000)
    # A header claiming 100000 x 100000 pixels: refused before any pixel is decoded.
    data = bytearray((tmp_path / "a.png").read_bytes())
    data[16:24] = (100000).to_bytes(4, "big") * 2
    import zlib

    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    (tmp_path / "huge.png").write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"huge\.png: image too large"):
        read_image(tmp_path / "huge.png")


# ------------------------------------------------------------------------------------------ writing


def test_write_refuses_what_a_format_cannot_hold(tmp_path: Path) -> None:
    x = torch.rand(3, 8, 8)
    with pytest.raises(ImageError, match="cannot store 16-bit"):
        write_image(tmp_path / "a.jpg", x, bit_depth=16)
    with pytest.raises(ImageError, match="cannot store an alpha"):
        write_image(tmp_path / "a.jpg", x, alpha=x[0])
    with pytest.raises(ImageError, match="cannot write '.gif'"):
        write_image(tmp_path / "a.gif", x)
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.png"
    write_image(target, torch.zeros(3, 8, 8))
    before = target.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half an image")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_image(target, torch.ones(3, 8, 8))
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["out.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_write_quantises_and_clips(tmp_path: Path) -> None:
    x = torch.tensor([-0.5, 0.0, 0.5, 1.0, 1.5]).view(1, 1, 5).expand(3, 1, 5)
    write_image(tmp_path / "a.png", x[None])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png"))[0, :, 0], [0, 0, 128, 255, 255])


def test_list_images(tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images([tmp_path])] == ["a.jpg", "b.png"]
    assert [p.name for p in list_images([str(tmp_path / "*.png")])] == ["b.png"]
    assert [p.name for p in list_images([tmp_path / "b.png", tmp_path])] == ["b.png", "a.jpg"]
    with pytest.raises(ImageError, match="no such file or folder"):
        list_images([tmp_path / "nope.png"])
    with pytest.raises(ImageError, match="pattern matches no file"):
        list_images([str(tmp_path / "*.webp")])
    problems: list[ImageError] = []
    found = list_images(
        [tmp_path / "nope.png", str(tmp_path / "*.webp"), tmp_path / "b.png"], problems=problems
    )
    assert [p.name for p in found] == ["b.png"]
    assert [str(e) for e in problems] == [
        f"{tmp_path / 'nope.png'}: no such file or folder",
        f"{tmp_path / '*.webp'}: pattern matches no file",
    ]


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / f".out.png.{_dead_pid()}-k3x_9abc.tmp"  # a writer killed between write and rename
    live = tmp_path / f".out.png.{os.getppid()}-abcdefgh.tmp"  # a running writer's
    foreign = tmp_path / ".notes.tmp"  # not ours
    for path in (stale, live, foreign):
        path.write_bytes(b"half")
    with atomic_output(tmp_path / "other.png") as tmp:
        assert tmp.name.startswith(f".other.png.{os.getpid()}-") and tmp.name.endswith(".tmp")
        tmp.write_bytes(b"x")
    assert not stale.exists() and live.exists() and foreign.exists()
    stale.write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path) == [stale]


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_write_atomically_writes_text_and_bytes_whole(tmp_path) -> None:
    from anyrestore.io import write_atomically

    target = tmp_path / "sub" / "scores.json"
    write_atomically(target, "σ 1\n")
    assert target.read_bytes() == "σ 1\n".encode()
    write_atomically(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert [p.name for p in target.parent.iterdir()] == ["scores.json"]  # no temporaries left
