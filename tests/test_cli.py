from __future__ import annotations

import json
import os
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


# ------------------------------------------------------------------ restore: outputs, checks, limits


def _restore(*args: str | Path) -> int:
    return main(["restore", *map(str, args), "--quiet"])


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def test_restore_refuses_colliding_outputs_before_any_work(tmp_path: Path, capsys) -> None:
    for folder in ("d1", "d2"):
        write_image(tmp_path / folder / "p.png", torch.rand(3, 16, 16))
    out = tmp_path / "out"
    never = tmp_path / "never-loaded.safetensors"  # the model would fail to load: it must not be reached
    assert _restore(tmp_path / "d1" / "p.png", tmp_path / "d2" / "p.png", "-o", out, "--model", never) == 1
    err = _one_line(capsys)
    assert f"both {tmp_path / 'd1' / 'p.png'} and {tmp_path / 'd2' / 'p.png'} would be written" in err
    assert not out.exists()
    write_image(tmp_path / "d1" / "p.jpg", torch.rand(3, 16, 16))  # p.jpg and p.png -> out/p.png
    assert _restore(tmp_path / "d1", "-o", out, "--format", "png", "--model", never) == 1
    assert "p.jpg and" in _one_line(capsys) and not out.exists()


def test_restore_never_overwrites_a_file_it_did_not_write(
    tmp_path: Path, tiny_checkpoint: Path, capsys
) -> None:
    write_image(tmp_path / "x.jpg", torch.rand(3, 16, 16))
    out = tmp_path / "out"
    write_image(out / "x.png", torch.zeros(3, 8, 8))  # someone's different x.png
    before = (out / "x.png").read_bytes()
    assert _restore(tmp_path / "x.jpg", "-o", out, "--format", "png", "--model", tiny_checkpoint) == 1
    err = _one_line(capsys)
    assert f"{out / 'x.png'}: exists and this run did not write it; pass --overwrite" in err
    assert (out / "x.png").read_bytes() == before
    args = [tmp_path / "x.jpg", "-o", out, "--format", "png", "--model", tiny_checkpoint, "--overwrite"]
    assert _restore(*args) == 0
    assert read_image(out / "x.png").size == (16, 16)


def test_restore_checks_output_and_device_before_the_model_loads(tmp_path: Path, capsys) -> None:
    write_image(tmp_path / "a.png", torch.rand(3, 16, 16))
    (tmp_path / "file.txt").write_text("not a folder")
    never = tmp_path / "never-loaded.safetensors"
    assert _restore(tmp_path / "a.png", "-o", tmp_path / "file.txt", "--model", never) == 1
    assert "file.txt: exists and is not a folder" in _one_line(capsys)
    assert _restore(tmp_path / "a.png", "-o", tmp_path / "file.txt" / "sub", "--model", never) == 1
    assert "cannot create a folder here" in _one_line(capsys)
    for device, expected in (("gpu0", "unknown device 'gpu0'"), ("cuda:x", "unknown device 'cuda:x'")):
        assert _restore(tmp_path / "a.png", "--device", device, "--model", never) == 1
        assert expected in _one_line(capsys)
    if not torch.cuda.is_available():
        assert _restore(tmp_path / "a.png", "--device", "cuda", "--model", never) == 1
        assert "no cuda device is available" in _one_line(capsys)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_restore_refuses_an_unwritable_output_folder(tmp_path: Path, capsys) -> None:
    write_image(tmp_path / "a.png", torch.rand(3, 16, 16))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert _restore(tmp_path / "a.png", "-o", locked / "out", "--model", tmp_path / "never.pth") == 1
    assert f"cannot write into {locked}" in _one_line(capsys)


def test_restore_refuses_a_folder_it_cannot_write_into(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """As root every folder is writable, so the refusal (a read-only mount, say) is simulated."""
    import anyrestore.cli.outputs

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    write_image(tmp_path / "a.png", torch.rand(3, 16, 16))
    monkeypatch.setattr(anyrestore.cli.outputs.tempfile, "TemporaryFile", refused)
    assert (
        _restore(tmp_path / "a.png", "-o", tmp_path / "out" / "deeper", "--model", tmp_path / "never.pth")
        == 1
    )
    assert f"out/deeper: cannot write into {tmp_path} (Permission denied)" in _one_line(capsys)


def test_restore_reports_missing_inputs_and_restores_the_rest(
    tmp_path: Path, tiny_checkpoint: Path, capsys
) -> None:
    write_image(tmp_path / "good.png", torch.rand(3, 16, 16))
    out = tmp_path / "out"
    out.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    stale = out / f".good.png.{child.pid}-abcdefgh.tmp"  # left by a writer killed before its rename
    stale.write_bytes(b"half")
    args = [tmp_path / "nope.png", tmp_path / "good.png", "-o", out, "--model", tiny_checkpoint]
    assert _restore(*args) == 1
    assert f"{tmp_path / 'nope.png'}: no such file or folder" in _one_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]
    assert not stale.exists()


@pytest.mark.parametrize("tile", ["-5", "8", "40"])
def test_restore_refuses_a_useless_tile_size(tmp_path: Path, tile: str, capsys) -> None:
    write_image(tmp_path / "a.png", torch.rand(3, 16, 16))
    assert _restore(tmp_path / "a.png", "--tile", tile, "--model", tmp_path / "never.pth") == 1
    assert f"tile size {tile} is below the minimum of 64 px" in _one_line(capsys)
    args = [tmp_path / "a.png", "--tile", "64", "--tile-overlap", "40", "--model", tmp_path / "never.pth"]
    assert _restore(*args) == 1
    assert "tile size 64 must be at least twice the overlap (40)" in _one_line(capsys)


def test_restore_max_megapixels(tmp_path: Path, tiny_checkpoint: Path, capsys) -> None:
    from anyrestore.cli.main import build_parser
    from anyrestore.serve.app import DEFAULT_MAX_PIXELS

    default = build_parser().parse_args(["restore", "x.png"]).max_megapixels
    assert default * 1e6 == DEFAULT_MAX_PIXELS  # the same limit as serve
    write_image(tmp_path / "big.png", torch.rand(3, 40, 50))  # 2,000 pixels
    write_image(tmp_path / "small.png", torch.rand(3, 20, 20))  # 400 pixels
    out = tmp_path / "out"
    args = [tmp_path / "big.png", tmp_path / "small.png", "-o", out, "--max-megapixels", "0.001"]
    assert _restore(*args, "--model", tiny_checkpoint) == 1
    assert "big.png: image too large: 50x40 is over 1,000 pixels" in _one_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["small.png"]


def test_restore_non_finite_output_is_an_error_naming_the_file(
    tmp_path: Path, tiny_checkpoint: Path, capsys
) -> None:
    from anyrestore.models.checkpoint import load_model, save_model

    loaded = load_model(tiny_checkpoint)
    with torch.no_grad():
        loaded.module.intro.weight.fill_(3e38)  # finite weights whose output overflows
    blown = save_model(tmp_path / "blown.safetensors", loaded.descriptor, loaded.module)
    write_image(tmp_path / "a.png", torch.rand(3, 16, 16))
    out = tmp_path / "out"
    assert _restore(tmp_path / "a.png", "-o", out, "--model", blown) == 1
    err = _one_line(capsys)
    assert f"{tmp_path / 'a.png'}: {blown}: the model's output holds NaN or Inf values" in err
    assert not out.exists() or not any(out.iterdir())

    with torch.no_grad():
        loaded.module.intro.weight.fill_(float("nan"))
    nan = save_model(tmp_path / "nan.safetensors", loaded.descriptor, loaded.module)
    assert _restore(tmp_path / "a.png", "-o", out, "--model", nan) == 1
    assert f"{nan}: 1 tensor(s) hold NaN or Inf values: intro.weight" in _one_line(capsys)


# ------------------------------------------------------------------ analyze: outputs and checks


def test_analyze_refuses_colliding_or_existing_outputs_before_the_model_loads(tmp_path: Path, capsys) -> None:
    for folder in ("d1", "d2"):
        write_image(tmp_path / folder / "p.png", torch.rand(3, 16, 16))
    never = str(tmp_path / "never-loaded.safetensors")
    inputs = [str(tmp_path / "d1" / "p.png"), str(tmp_path / "d2" / "p.png")]
    assert main(["analyze", *inputs, "-o", str(tmp_path / "maps"), "--model", never]) == 1
    err = _one_line(capsys)
    assert f"both {inputs[0]} and {inputs[1]} would be written" in err and not (tmp_path / "maps").exists()
    (tmp_path / "mixes.json").write_text("{}")
    assert main(["analyze", inputs[0], "--json", str(tmp_path / "mixes.json"), "--model", never]) == 1
    assert "mixes.json: exists and this run did not write it; pass --overwrite" in _one_line(capsys)
    assert (tmp_path / "mixes.json").read_text() == "{}"
    assert main(["analyze", inputs[0], "--tile", "8", "--model", never]) == 1
    assert "tile size 8 is below the minimum of 64 px" in _one_line(capsys)
    assert main(["analyze", inputs[0], "--device", "gpu0", "--model", never]) == 1
    assert "unknown device 'gpu0'" in _one_line(capsys)


def test_analyze_reports_missing_inputs_and_analyzes_the_rest(tmp_path: Path, capsys) -> None:
    write_image(tmp_path / "good.png", torch.rand(3, 32, 32))
    mixes = tmp_path / "mixes.json"
    assert (
        main(["analyze", str(tmp_path / "nope.png"), str(tmp_path / "good.png"), "--json", str(mixes)]) == 1
    )
    assert f"{tmp_path / 'nope.png'}: no such file or folder" in capsys.readouterr().err
    assert list(json.loads(mixes.read_text())) == [str(tmp_path / "good.png")]
