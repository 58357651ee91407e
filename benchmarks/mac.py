"""Time MAC on RAM's PromptIR: the batched implementation against the step-by-step reference loop.

The paper's setting is 70 images (7 tasks x 10) of 64x64 with T = 200 steps on the full RAM PromptIR; that
is the default on a GPU. On a CPU the defaults shrink everything (a narrow, shallow PromptIR, few images and
steps); every size is a command-line option. Both implementations run in this process on the same images,
and the speed-up is the ratio of their per-image times. The reference can be timed on a subset of the
images (``--reference-images``) because it is slow; the scores of the common images are compared.

    python benchmarks/mac.py                         # GPU: full setting; CPU: reduced
    python benchmarks/mac.py --images 4 --steps 16 --crop 32 --dim 8 --blocks 1 1 1 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from anyrestore.attribution import mac, mac_reference
from anyrestore.models import build_model
from anyrestore.models.normalize import ImageNetNormalized


def _images(count: int, crop: int, seed: int) -> torch.Tensor:
    """Random crops of scikit-image's photos (random pixels when scikit-image is missing)."""
    generator = np.random.default_rng(seed)
    try:
        from skimage import data

        photos = [
            getattr(data, n)() for n in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry")
        ]
    except ImportError:
        return torch.from_numpy(generator.random((count, 3, crop, crop), dtype=np.float32))
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        top = int(generator.integers(0, photo.shape[0] - crop + 1))
        left = int(generator.integers(0, photo.shape[1] - crop + 1))
        out.append(photo[top : top + crop, left : left + crop, :3])
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if gpu else "cpu")
    parser.add_argument("--images", type=int, default=70 if gpu else 2)
    parser.add_argument("--steps", type=int, default=200 if gpu else 8)
    parser.add_argument("--crop", type=int, default=64 if gpu else 32)
    parser.add_argument("--dim", type=int, default=48 if gpu else 8, help="PromptIR width (paper: 48)")
    parser.add_argument("--blocks", type=int, nargs=4, default=[4, 6, 6, 8] if gpu else [1, 1, 1, 1])
    parser.add_argument("--refinement", type=int, default=4 if gpu else 1)
    parser.add_argument("--batch", type=int, default=50 if gpu else 16, help="path points per forward pass")
    parser.add_argument("--reference-images", type=int, default=2 if gpu else None, help="default: all")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (tiny convs dislike many)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    small = args.dim < 48
    cfg = {"dim": args.dim, "num_blocks": tuple(args.blocks), "num_refinement_blocks": args.refinement}
    if small:  # heads and prompt widths must shrink with the width
        cfg.update(heads=(1, 1, 1, 1), prompt_dims=(args.dim, 2 * args.dim, 4 * args.dim))
    model = ImageNetNormalized(build_model("ram_promptir", **cfg)).to(device).eval()
    params = sum(p.numel() for p in model.parameters())
    images = _images(args.images, args.crop, args.seed).to(device)
    n_ref = min(args.images, args.reference_images or args.images)
    print(
        f"RAM PromptIR ({params:,} parameters, {cfg}) on {device}: {args.images} images "
        f"{args.crop}x{args.crop}, T={args.steps}, batch {args.batch} points; reference on {n_ref} image(s)"
    )

    mac(model, images[:1], steps=min(args.steps, 4), batch_size=args.batch)  # warm-up (allocator, kernels)
    _sync(device)
    start = time.perf_counter()
    batched = mac(model, images, steps=args.steps, batch_size=args.batch, seed=args.seed, progress=True)
    _sync(device)
    t_batched = time.perf_counter() - start

    start = time.perf_counter()
    reference = mac_reference(model, images[:n_ref], steps=args.steps, seed=args.seed, progress=True)
    _sync(device)
    t_reference = time.perf_counter() - start

    diff = (batched.scores[:n_ref] - reference.scores).abs().max() / reference.scores.abs().max()
    per_b, per_r = t_batched / args.images, t_reference / n_ref
    print(f"batched    {t_batched:9.2f} s total, {per_b:8.3f} s/image")
    print(f"reference  {t_reference:9.2f} s on {n_ref} image(s), {per_r:8.3f} s/image", end="")
    print(f" (~{per_r * args.images:.1f} s for all {args.images})" if n_ref < args.images else "")
    print(f"speed-up   {per_r / per_b:.2f}x   (max relative score difference {float(diff):.1e})")


if __name__ == "__main__":
    main()
