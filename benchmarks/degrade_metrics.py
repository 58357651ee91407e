"""Throughput of the degradation operators and the metrics on a batch of 256x256 photo crops.

Prints images/s per operator and for PSNR/SSIM (both presets), and the ratio of our batched torch SSIM
to scikit-image's (one image at a time), measured in the same run. GPU figures too when CUDA is present.

    python benchmarks/degrade_metrics.py [--batch 16] [--size 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def photo_batch(batch: int, size: int) -> torch.Tensor:
    """Random ``size`` crops of scikit-image photographs (no download)."""
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(0)
    crops = []
    for i in range(batch):
        p = photos[i % len(photos)]
        y, x = rng.integers(0, p.shape[0] - size + 1), rng.integers(0, p.shape[1] - size + 1)
        crops.append(p[y : y + size, x : x + size])
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0


def rate(fn, images: int, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return images / best


def bench(device: torch.device, batch: int, size: int, repeats: int) -> None:
    from anyrestore.degrade import OPERATORS, apply_op, apply_pipeline, apply_regions
    from anyrestore.evaluate import psnr, ssim

    x = photo_batch(batch, size).to(device)
    g = torch.Generator(device=device).manual_seed(0)
    print(f"\n== {device.type}: batch {batch} x 3 x {size} x {size}, best of {repeats} ==")
    print(f"{'operation':<28}{'images/s':>12}")
    for name in OPERATORS:
        r = rate(lambda n=name: apply_op(x, n, generator=g), batch, repeats, device)
        print(f"{'degrade ' + name:<28}{r:>12.1f}")
    r = rate(lambda: apply_pipeline(x, "lr4_noise30", generator=g), batch, repeats, device)
    print(f"{'pipeline lr4_noise30':<28}{r:>12.1f}")
    steps = [("noise", {"sigma": 25}), ("blur", {"sigma": 2.0}), ("haze", {"beta": 1.5})]
    r = rate(lambda: apply_regions(x, steps, generator=g), batch, repeats, device)
    print(f"{'cutmix 3 regions':<28}{r:>12.1f}")
    noisy = apply_op(x, "noise", sigma=25, generator=g)
    for preset in ("basicsr", "rgb"):
        r = rate(lambda p=preset: psnr(noisy, x, p), batch, repeats, device)
        print(f"{'psnr ' + preset:<28}{r:>12.1f}")
        r = rate(lambda p=preset: ssim(noisy, x, p), batch, repeats, device)
        print(f"{'ssim ' + preset:<28}{r:>12.1f}")

    if device.type == "cpu":
        from skimage.metrics import structural_similarity

        from anyrestore.evaluate.reference import to_y

        a = (noisy * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        b = (x * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()

        def skimage_ssim() -> None:
            for i in range(batch):
                structural_similarity(
                    to_y(a[i]),
                    to_y(b[i]),
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                    data_range=255,
                )

        ours = rate(lambda: ssim(noisy, x, "basicsr"), batch, repeats, device)
        peer = rate(skimage_ssim, batch, repeats, device)
        print(f"{'ssim skimage (Y, looped)':<28}{peer:>12.1f}")
        print(f"ratio ours/skimage SSIM: {ours / peer:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    bench(torch.device("cpu"), args.batch, args.size, args.repeats)
    if torch.cuda.is_available():
        print(f"GPU: {torch.cuda.get_device_name()}")
        bench(torch.device("cuda"), args.batch, args.size, args.repeats)


if __name__ == "__main__":
    main()
