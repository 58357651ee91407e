"""The embedded models, `default` (v2) and `default-v1`: shipped, loadable by name, and restoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anyrestore.cli.main import main
from anyrestore.evaluate import psnr
from anyrestore.io import read_image, write_image
from anyrestore.models.checkpoint import CheckpointError
from anyrestore.models.zoo import DEFAULT_MODEL, EMBEDDED, embedded_path, resolve_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "chelsea-noise25.png"


def test_default_model_ships_with_the_package() -> None:
    """``default`` is v2 (one ContextNAFNet, the file ``default-v2`` also names); v1 ships beside it as
    ``default-v1`` with its five stages."""
    path = embedded_path(DEFAULT_MODEL)
    assert path == embedded_path("default-v2") and path.stat().st_size < 20 * 2**20
    loaded = resolve_model(None)
    assert DEFAULT_MODEL in EMBEDDED
    assert loaded.descriptor.architecture == "context_nafnet"
    assert loaded.module.classes == (
        "clean",
        "noise",
        "blur",
        "motion_blur",
        "jpeg",
        "haze",
        "rain",
        "low_light",
    )
    assert sum(p.numel() for p in loaded.module.parameters()) < 5_000_000

    v1 = resolve_model("default-v1")
    assert v1.descriptor.architecture == "curve_nafnet"
    assert v1.module.deblur is not None and len(v1.module.deblur.kernels) == 6
    assert v1.module.deblock is not None and len(v1.module.deblock.kernels) == 5
    assert v1.module.dequant is not None
    assert sum(p.numel() for p in v1.module.parameters()) < 5_000_000


def test_default_model_restores_the_example(tmp_path: Path) -> None:
    from skimage import data

    clean = torch.from_numpy(np.array(data.chelsea())).permute(2, 0, 1)[None].float() / 255.0
    assert main(["restore", str(EXAMPLE), "-o", str(tmp_path), "--quiet"]) == 0
    restored = read_image(tmp_path / EXAMPLE.name).pixels[None]
    noisy = read_image(EXAMPLE).pixels[None]
    before, after = float(psnr(noisy, clean)), float(psnr(restored, clean))
    assert after > before + 3.0, (before, after)


@pytest.mark.parametrize(
    ("model", "spec", "gain"),
    [
        # default (v2), measured on this photo: +13.5, +7.9, +5.2, +0.7, +0.35 dB; +0.08 on blur σ2 and
        # +0.03 on motion blur, which it leaves alone rather than restores (docs/default-model-v2.md).
        ("default", "low_light", 10.0),
        ("default", "rain", 6.0),
        ("default", "noise:sigma=25", 4.0),
        ("default", "haze:beta=1.5", 0.4),
        ("default", "jpeg:quality=20", 0.2),
        ("default", "blur:kernel_size=15,sigma=2.0", -0.1),
        ("default", "motion_blur", -0.1),
        # default-v1, where its hand-built stages gain most: +7.2, +3.4 and +0.9 dB on this photo.
        ("default-v1", "haze:beta=1.5", 3.0),
        ("default-v1", "blur:kernel_size=15,sigma=2.0", 3.0),
        ("default-v1", "jpeg:quality=20", 0.75),
    ],
)
def test_embedded_models_restore_held_out_degradations(model: str, spec: str, gain: float) -> None:
    """A photo never trained on (a validation photo of the manifest), degraded as on the results page:
    each embedded model gains at least ``gain`` dB (basicsr preset), run as ``restore`` runs it."""
    from skimage import data

    from anyrestore.degrade import apply_sequence, parse_op_spec
    from anyrestore.inference import Restorer

    clean = torch.from_numpy(np.array(data.astronaut())).permute(2, 0, 1)[None].float() / 255.0
    lq, _ = apply_sequence(clean, [parse_op_spec(spec)], generator=torch.Generator().manual_seed(7))
    out = Restorer(resolve_model(model), device="cpu", tile=0)(lq)
    before, after = float(psnr(lq, clean, "basicsr")), float(psnr(out, clean, "basicsr"))
    assert after > before + gain, (before, after)


def test_default_model_keeps_clean_photos() -> None:
    """A clean photo, a clean 128 px crop and a grayscale one come back nearly unchanged (measured 40.1,
    39.5 and 39.2 dB on this validation photo; 40.9, 41.0 and 40.2 on the test split's means)."""
    from skimage import data

    from anyrestore.inference import Restorer

    restorer = Restorer(resolve_model(None), device="cpu", tile=0)
    whole = torch.from_numpy(np.array(data.astronaut())).permute(2, 0, 1)[None].float() / 255.0
    crop = whole[..., 96:224, 160:288]
    gray = (crop.mean(1, keepdim=True) * 255).round().div(255).expand(-1, 3, -1, -1)
    with torch.no_grad():
        kept = [float(psnr(restorer(x).clamp(0, 1), x, "basicsr")) for x in (whole, crop, gray)]
    assert kept[0] > 39.5 and kept[1] > 38.5 and kept[2] > 38.5, kept


def test_default_v1_analysis_tells_jpeg_from_blur() -> None:
    """The web demo's analysis of default-v1: its JPEG estimator acts on a JPEG q20 photo and not
    on a blurred one, its blur estimator the other way round (held-out photo)."""
    from skimage import data

    from anyrestore.degrade import gaussian_blur, jpeg_compress
    from anyrestore.serve.pool import find_analyzer

    clean = torch.from_numpy(np.array(data.astronaut())).permute(2, 0, 1)[None].float() / 255.0
    analyze = find_analyzer(resolve_model("default-v1"))
    assert analyze is not None
    with torch.no_grad():
        jpeg = analyze(jpeg_compress(clean, quality=20))
        blur = analyze(gaussian_blur(clean, kernel_size=15, sigma=2.0))
    assert jpeg["JPEG"] > 0.5 > blur["JPEG"], (jpeg, blur)
    assert blur["blur"] > 0.5 > jpeg["blur"], (jpeg, blur)
    assert jpeg["JPEG table, quality 20"] > 0.4 and not any(k.startswith("JPEG table") for k in blur)


def test_default_v1_deblocks_a_jpeg_cropped_off_its_grid() -> None:
    """default-v1's deblocking stage: a JPEG cropped after decoding (3 rows, 5 columns off) has its grid
    found and moved back to the corner: the stage gains as much as on the uncropped file (it gained nothing
    before); an uncompressed or noisy photo, and the uncropped JPEG, are left where they are."""
    from skimage import data

    from anyrestore.degrade import jpeg_compress

    model = resolve_model("default-v1").module.eval()
    clean = torch.from_numpy(np.array(data.astronaut())).permute(2, 0, 1)[None].float() / 255.0
    jpeg = jpeg_compress(clean, quality=20)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    cropped, cropped_clean = jpeg[..., 3:, 5:], clean[..., 3:, 5:]
    stage = model.deblock
    assert stage.grid_shifts(torch.cat([jpeg, clean, noisy])) == [(0, 0)] * 3
    assert stage.grid_shifts(cropped) == [(3, 5)]

    def gain(lq: torch.Tensor, target: torch.Tensor, out: torch.Tensor) -> float:
        return float(psnr(out.clamp(0, 1), target, "basicsr") - psnr(lq, target, "basicsr"))

    with torch.no_grad():
        aligned = gain(jpeg, clean, stage(jpeg))
        moved = gain(cropped, cropped_clean, stage(cropped))
        unmoved = gain(cropped, cropped_clean, stage.apply_weights(cropped, stage.weights(cropped)))
        weights, out = stage.run(torch.cat([cropped, cropped.flip(-1)]))  # a batch: each its own shift
    assert aligned > 0.4 and abs(moved - aligned) < 0.1 and unmoved < 0.2, (aligned, moved, unmoved)
    torch.testing.assert_close(out[:1], stage(cropped))
    assert weights.shape == (2, 6) and (weights[:, 0] < 0.5).all()  # both read as JPEG


def test_unknown_model_name_is_a_clear_error() -> None:
    with pytest.raises(CheckpointError, match="neither a file nor an embedded model"):
        resolve_model("no-such-model")


def test_every_model_option_takes_the_default_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`--model default` (and `anyrestore.load_model("default")`) work in every command that loads a
    model. `analyze` refuses the default model in one line (its estimator tells too little apart) and
    without --model analyses with default-v1, whose `-o` is refused (no segmentation head) before any
    image is read."""
    import anyrestore

    loaded = anyrestore.load_model("default")
    assert (
        loaded.descriptor.architecture == "context_nafnet" and anyrestore.load_model(None).path == loaded.path
    )
    ranking = tmp_path / "rank.tsv"
    assert main(["mac", "--model", "default", "--method", "random", "-o", str(ranking), "--quiet"]) == 0
    assert ranking.read_text().count("\n") > 10
    capsys.readouterr()
    crop = tmp_path / "crop.png"
    write_image(crop, read_image(EXAMPLE).pixels[:, :96, :96])
    assert main(["analyze", str(crop), "--model", "default"]) == 1
    assert capsys.readouterr().err.strip() == (
        "anyrestore analyze: error: default: this model has no degradation estimator (analyze needs an "
        "ABAIR bundle with its estimator trained, or default-v1)"
    )
    assert main(["analyze", str(crop)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{crop}: ") and "blur" in out and "JPEG" in out
    assert main(["analyze", str(crop), "-o", str(tmp_path / "maps")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "anyrestore analyze: error: default-v1: this model has no segmentation head for per-pixel maps (-o)"
    )
    assert not (tmp_path / "maps").exists()
    assert main(["info", "default"]) == 0 and "context_nafnet" in capsys.readouterr().out
    assert main(["info", "default-v1"]) == 0 and "curve_nafnet" in capsys.readouterr().out


def test_served_capabilities_agree_with_what_the_server_does() -> None:
    """/api/models lists the embedded models once per file (default and default-v2 are one), each with
    whether it can analyze before anything loaded it; /api/analyze (the pool's analyze) indeed works on
    default-v1."""
    from anyrestore.serve import ModelPool

    pool = ModelPool(device="cpu")
    listed = {m["id"]: m for m in pool.describe()}
    assert {DEFAULT_MODEL, "default-v1"} <= set(listed) and "default-v2" not in listed
    assert listed[DEFAULT_MODEL]["analyze"] is False
    assert listed[DEFAULT_MODEL]["architecture"] == "context_nafnet"
    assert listed["default-v1"]["analyze"] is True
    noisy = read_image(EXAMPLE).pixels[None][..., :64, :64]
    assert {"JPEG", "blur"} <= set(pool.analyze("default-v1", noisy))
