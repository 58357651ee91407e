from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from anyrestore.cli.main import main
from anyrestore.evaluate import PairingError, evaluate_folders, get_preset, psnr, ssim
from anyrestore.evaluate.reference import psnr_reference, ssim_reference, to_y


def _noisy(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 255).round().astype(np.uint8)


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1).float() / 255.0


@pytest.fixture(scope="module")
def pair(photo_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return photo_uint8, _noisy(photo_uint8, 15, 0)


@pytest.mark.parametrize("crop", [0, 4])
def test_matches_skimage_on_y_channel(pair, crop: int) -> None:
    clean, noisy = pair
    c = slice(crop, -crop) if crop else slice(None)
    y_clean, y_noisy = to_y(clean)[c, c], to_y(noisy)[c, c]
    expected_ssim = structural_similarity(
        y_noisy, y_clean, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    expected_psnr = peak_signal_noise_ratio(y_clean, y_noisy, data_range=255)
    got_ssim = float(ssim(_tensor(noisy), _tensor(clean), "basicsr", crop_border=crop))
    got_psnr = float(psnr(_tensor(noisy), _tensor(clean), "basicsr", crop_border=crop))
    assert abs(got_ssim - expected_ssim) < 1e-4
    assert abs(got_psnr - expected_psnr) < 1e-6


def test_rgb_matches_skimage_channel_mean(pair) -> None:
    clean, noisy = pair
    expected = np.mean(
        [
            structural_similarity(
                noisy[..., i].astype(float),
                clean[..., i].astype(float),
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=255,
            )
            for i in range(3)
        ]
    )
    assert abs(float(ssim(_tensor(noisy), _tensor(clean), "rgb")) - expected) < 1e-4
    expected_psnr = peak_signal_noise_ratio(clean, noisy, data_range=255)
    assert abs(float(psnr(_tensor(noisy), _tensor(clean), "rgb")) - expected_psnr) < 1e-6


@pytest.mark.parametrize("preset", ["basicsr", "rgb"])
@pytest.mark.parametrize("crop", [0, 3])
def test_matches_float64_reference_formula(pair, preset: str, crop: int) -> None:
    clean, noisy = pair
    y = preset == "basicsr"
    got_p = float(psnr(_tensor(noisy), _tensor(clean), preset, crop_border=crop))
    got_s = float(ssim(_tensor(noisy), _tensor(clean), preset, crop_border=crop))
    assert abs(got_p - psnr_reference(noisy, clean, y_channel=y, crop_border=crop)) < 1e-6
    assert abs(got_s - ssim_reference(noisy, clean, y_channel=y, crop_border=crop)) < 1e-6


def test_batched_equals_one_at_a_time(photo_uint8: np.ndarray) -> None:
    clean = np.stack([photo_uint8, photo_uint8[::-1]])
    noisy = np.stack([_noisy(clean[0], 10, 1), _noisy(clean[1], 30, 2)])
    cb, nb = (
        torch.from_numpy(clean).permute(0, 3, 1, 2) / 255.0,
        torch.from_numpy(noisy).permute(0, 3, 1, 2) / 255.0,
    )
    batch_p, batch_s = psnr(nb, cb), ssim(nb, cb)
    assert batch_p.shape == (2,) and batch_p[0] > batch_p[1]
    for i in range(2):
        assert float(batch_p[i]) == pytest.approx(float(psnr(nb[i], cb[i])), abs=1e-9)
        assert float(batch_s[i]) == pytest.approx(float(ssim(nb[i], cb[i])), abs=1e-9)


def test_quantisation_is_part_of_the_preset(photo: torch.Tensor) -> None:
    shifted = (photo + 0.4 / 255).clamp(0, 1)  # rounds back to the same uint8 values
    assert math.isinf(float(psnr(shifted, photo)))
    assert float(ssim(shifted, photo)) == pytest.approx(1.0)


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown metric preset"):
        get_preset("matlab")
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 17))
    with pytest.raises(ValueError, match="crop_border 8 leaves nothing"):
        psnr(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16), crop_border=8)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 3, 10, 16), torch.zeros(1, 3, 10, 16))


# ------------------------------------------------------------------------------------------ folders + CLI


def _write_set(root: Path, photo_uint8: np.ndarray) -> tuple[Path, Path]:
    gt, pred = root / "gt", root / "pred"
    gt.mkdir()
    pred.mkdir()
    for i, name in enumerate(["one", "two"]):
        img = np.roll(photo_uint8, 7 * i, axis=1)
        Image.fromarray(img).save(gt / f"{name}.png")
        Image.fromarray(_noisy(img, 5 + 10 * i, i)).save(pred / f"{name}.png")
    return pred, gt


def test_evaluate_folders_and_cli(tmp_path: Path, photo_uint8: np.ndarray, capsys) -> None:
    pred, gt = _write_set(tmp_path, photo_uint8)
    table = evaluate_folders(pred, gt, "rgb", crop_border=4)
    assert [s.name for s in table.images] == ["one", "two"]
    assert table.images[0].psnr > table.images[1].psnr
    assert table.mean_psnr == pytest.approx((table.images[0].psnr + table.images[1].psnr) / 2)

    out_json = tmp_path / "scores.json"
    code = main(
        [
            "evaluate",
            "--pred",
            str(pred),
            "--gt",
            str(gt),
            "--preset",
            "rgb",
            "--crop-border",
            "4",
            "--json",
            str(out_json),
            "--quiet",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "one" in printed and "mean" in printed and "preset rgb, crop border 4, 2 images" in printed
    data = json.loads(out_json.read_text())
    assert data["preset"] == "rgb" and data["crop_border"] == 4 and data["mean"]["count"] == 2
    assert data["mean"]["psnr"] == pytest.approx(table.mean_psnr)


def test_evaluate_cli_reports_bad_pairs(tmp_path: Path, photo_uint8: np.ndarray, capsys) -> None:
    pred, gt = _write_set(tmp_path, photo_uint8)
    (pred / "two.png").unlink()
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "no prediction for 1 ground-truth image(s): two" in err and "\n" not in err


def test_evaluate_scores_every_valid_pair_and_reports_the_bad_ones(
    tmp_path: Path, photo_uint8: np.ndarray, capsys
) -> None:
    pred, gt = _write_set(tmp_path, photo_uint8)
    for name in ("three", "four"):
        Image.fromarray(photo_uint8).save(gt / f"{name}.png")
    Image.fromarray(photo_uint8[:50]).save(pred / "one.png")  # wrong size, first in order
    (pred / "three.png").write_bytes(b"not an image")
    Image.fromarray(photo_uint8).save(pred / "four.png")
    table = evaluate_folders(pred, gt)
    assert [s.name for s in table.images] == ["four", "two"]
    assert table.problems[0].endswith("one.png: size 96x50 differs from ground truth one.png (96x96)")
    assert "three.png: not an image" in table.problems[1] and len(table.problems) == 2

    out_json = tmp_path / "scores.json"
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json", str(out_json), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 2 and "one.png: size 96x50" in captured.err
    assert "2 images, 2 pair(s) not scored" in captured.out
    data = json.loads(out_json.read_text())
    assert data["mean"]["count"] == 2 and len(data["problems"]) == 2


def test_evaluate_refuses_two_files_of_one_name(tmp_path: Path, photo_uint8: np.ndarray, capsys) -> None:
    pred, gt = _write_set(tmp_path, photo_uint8)
    Image.fromarray(photo_uint8).save(pred / "one.jpg")
    with pytest.raises(PairingError, match=r"pred: one\.jpg and one\.png have the same name 'one'"):
        evaluate_folders(pred, gt)
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "one.jpg and one.png" in err and "\n" not in err
