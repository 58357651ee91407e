from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anyrestore.cli.main import COMMANDS, main
from anyrestore.evaluate import psnr
from anyrestore.io import read_image, write_image


def test_help_lists_every_subcommand() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "anyrestore", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in COMMANDS:
        assert name in out


@pytest.fixture
def photo_dir(tmp_path: Path, photo_uint8: np.ndarray) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo_uint8).save(src / "astronaut.png")
    Image.fromarray(np.ascontiguousarray(photo_uint8[::-1])).save(src / "flipped.jpg", quality=95)
    return src


def test_degrade_end_to_end(tmp_path: Path, photo_dir: Path) -> None:
    out = tmp_path / "out"
    args = [
        "degrade",
        str(photo_dir),
        "-o",
        str(out),
        "--op",
        "noise:sigma=25",
        "--op",
        "jpeg:quality=30",
        "--seed",
        "3",
        "--save-labels",
        "--quiet",
    ]
    assert main(args) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["astronaut.png", "astronaut_labels.png", "flipped.png", "flipped_labels.png"]
    clean = read_image(photo_dir / "astronaut.png").pixels
    degraded = read_image(out / "astronaut.png").pixels
    assert 15 < float(psnr(degraded, clean, "rgb")) < 30
    labels = np.asarray(Image.open(out / "astronaut_labels.png"))
    assert set(np.unique(labels)) == {2}  # both steps touch every pixel; the index map names the last
    first = (out / "astronaut.png").read_bytes()
    assert main(args) == 0
    assert (out / "astronaut.png").read_bytes() == first  # same seed, same file


def test_degrade_regions_label_map(tmp_path: Path, photo_dir: Path) -> None:
    out = tmp_path / "out"
    assert (
        main(
            [
                "degrade",
                str(photo_dir / "astronaut.png"),
                "-o",
                str(out),
                "--op",
                "noise:sigma=200",
                "--op",
                "haze:beta=3",
                "--regions",
                "--save-labels",
                "--quiet",
            ]
        )
        == 0
    )
    labels = np.asarray(Image.open(out / "astronaut_labels.png"))
    clean = read_image(photo_dir / "astronaut.png").pixels
    degraded = read_image(out / "astronaut.png").pixels
    changed = (degraded - clean).abs().amax(0).numpy() > 0
    assert not changed[labels == 0].any()  # pixels labelled clean are untouched
    assert changed[labels > 0].mean() > 0.95


def test_degrade_keeps_16_bit_and_never_overwrites_inputs(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in"
    write_image(src / "deep.png", torch.rand(3, 32, 32), bit_depth=16)
    before = (src / "deep.png").read_bytes()
    assert main(["degrade", str(src / "deep.png"), "-o", str(src), "--op", "blur", "--quiet"]) == 1
    assert "refusing to overwrite an input file" in capsys.readouterr().err
    assert (src / "deep.png").read_bytes() == before
    assert main(["degrade", str(src / "deep.png"), "-o", str(tmp_path / "o"), "--op", "blur", "--quiet"]) == 0
    assert read_image(tmp_path / "o" / "deep.png").bit_depth == 16


def test_degrade_bad_spec_is_one_line(tmp_path: Path, photo_dir: Path, capsys) -> None:
    assert main(["degrade", str(photo_dir), "-o", str(tmp_path / "o"), "--op", "noise:sigmaa=3"]) == 1
    err = capsys.readouterr().err.strip()
    assert "sigmaa" in err and "\n" not in err
    assert not (tmp_path / "o").exists()
