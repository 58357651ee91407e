"""Inference speed, peak memory and tiling fidelity of every architecture at their paper configurations.

For each architecture at 256x256 and 512x512: images/s and peak memory in fp32 (and bf16 on GPU), and the
agreement of a tiled pass (tile = half the side, overlap 32) with the whole-image pass, as the PSNR between
the two outputs and as the difference of their PSNRs against the clean photo. Weights are random unless a
checkpoint is given (``--model``), so only the agreement figures, not the PSNRs, mean anything for them.

``--big`` restores a 4000x3000 photo with PromptIR on the CPU in a child process and reports its peak
resident memory (the limit to stay under is 8 GB). ``--default`` restores one with the embedded default
model, in one pass and with the flips self-ensemble it recommends, each in a child process: seconds, peak
resident memory, and the ensemble's time over one pass.

    python benchmarks/inference.py [--archs promptir,swinir,...] [--sizes 256,512] [--model FILE] [--big]
    python benchmarks/inference.py --archs none --default
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

PAPER_ARCHS = ("promptir", "ram_promptir", "swinir", "ram_swinir", "restormer", "nafnet")


def photo(size: int) -> torch.Tensor:
    from PIL import Image
    from skimage import data

    im = Image.fromarray(data.astronaut()).resize((size, size), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255.0


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(restorer, x: torch.Tensor, repeats: int) -> tuple[float, int]:
    device = restorer.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    restorer(x)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        restorer(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return x.shape[0] / best, peak_bytes(device)


def bench(args: argparse.Namespace) -> None:
    import anyrestore.models  # noqa: F401
    from anyrestore.evaluate import psnr
    from anyrestore.inference import Restorer
    from anyrestore.models.checkpoint import load_model
    from anyrestore.models.descriptor import ModelDescriptor

    device = torch.device(args.device)
    precisions = ["fp32", "bf16"] if device.type == "cuda" else ["fp32"]
    if args.model:
        loaded = load_model(args.model)
        models = [(loaded.descriptor.architecture, loaded.module, loaded.descriptor)]
    else:
        models = []
        for name in args.archs.split(","):
            descriptor = ModelDescriptor.for_architecture(name)
            torch.manual_seed(0)
            models.append((name, descriptor.build().eval(), descriptor))
    header = (
        f"{'model':<14}{'size':>6}{'prec':>6}{'img/s':>9}{'peak MB':>10}{'tiled~whole dB':>16}{'gap dB':>9}"
    )
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads\n{header}")
    for name, module, descriptor in models:
        for size in (int(s) for s in args.sizes.split(",")):
            clean = photo(size)
            noisy = (
                clean + 25 / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
            ).clamp(0, 1)
            for precision in precisions:
                if precision not in descriptor.precisions:
                    continue
                whole = Restorer(module, descriptor, device=device, precision=precision, tile=0)
                ips, peak = measure(whole, noisy.to(device), args.repeats)
                tiled = Restorer(
                    module, descriptor, device=device, precision=precision, tile=size // 2, tile_overlap=32
                )
                a, b = whole(noisy).cpu(), tiled(noisy).cpu()
                agreement = float(psnr(b, a, "rgb"))
                gap = abs(float(psnr(a, clean, "rgb")) - float(psnr(b, clean, "rgb")))
                row = f"{name:<14}{size:>6}{precision:>6}{ips:>9.2f}{peak / 2**20:>10.0f}"
                print(f"{row}{agreement:>16.2f}{gap:>9.4f}")


# Restores a 4000x3000 astronaut in a fresh process (so its peak RSS is the restore's own): argv[1] is
# "promptir" (random weights, the clean photo), "default" (the embedded model, the photo with noise
# sigma 15) or "default_jpeg" (the embedded model, the photo as a JPEG of quality 30: its dequantisation
# stage and JPEG finish run), argv[2] the self-ensemble mode.
BIG_CHILD = """
import json, resource, sys, time, torch
import anyrestore.models
from anyrestore.inference import Restorer
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.zoo import resolve_model
from PIL import Image
from skimage import data
import numpy as np
im = Image.fromarray(data.astronaut()).resize((4000, 3000), Image.Resampling.BICUBIC)
x = torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255.0
if sys.argv[1] == "default":
    x = (x + 15 / 255 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    r = Restorer(resolve_model(None), device="cpu", self_ensemble=sys.argv[2])
elif sys.argv[1] == "default_jpeg":
    from anyrestore.degrade import jpeg_compress
    x = jpeg_compress(x, quality=30)
    r = Restorer(resolve_model(None), device="cpu", self_ensemble=sys.argv[2])
else:
    d = ModelDescriptor.for_architecture(sys.argv[1])
    torch.manual_seed(0)
    r = Restorer(d.build().eval(), d, device="cpu", self_ensemble=sys.argv[2])
start = time.perf_counter()
y = r(x)
print(json.dumps({"seconds": time.perf_counter() - start, "tile": r.tile, "shape": list(y.shape),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def restore_big(model: str, ensemble: str = "off") -> dict:
    """Seconds, tile and peak RSS of restoring the 4000x3000 photo (``BIG_CHILD``) in a child process."""
    out = subprocess.run(
        [sys.executable, "-c", BIG_CHILD, model, ensemble], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def big() -> None:
    print("\n4000x3000 photo, PromptIR (35.6M params), CPU, automatic tiling:")
    result = restore_big("promptir")
    verdict = "under" if result["peak_rss_mb"] < 8 * 1024 else "OVER"
    print(
        f"tile {result['tile']} px, {result['seconds']:.0f} s, peak resident memory "
        f"{result['peak_rss_mb']:.0f} MB ({verdict} the 8 GB limit)"
    )


def default_model() -> None:
    print("\n4000x3000 noisy photo, embedded default model, CPU, automatic tiling:")
    seconds = {}
    for mode in ("off", "flips"):
        result = restore_big("default", mode)
        seconds[mode] = result["seconds"]
        print(
            f"self-ensemble {mode:<6} tile {result['tile']} px, {result['seconds']:.1f} s, "
            f"peak resident memory {result['peak_rss_mb']:.0f} MB"
        )
    print(f"flips / one pass time: {seconds['flips'] / seconds['off']:.2f}x")
    result = restore_big("default_jpeg", "off")
    print(
        f"the photo as a JPEG (q30), one pass: tile {result['tile']} px, {result['seconds']:.1f} s, "
        f"peak resident memory {result['peak_rss_mb']:.0f} MB (JPEG table found: dequantisation, finish)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=",".join(PAPER_ARCHS))
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--model", default=None, help="benchmark this checkpoint instead of random weights")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--big", action="store_true", help="also the 4000x3000 PromptIR CPU memory check")
    parser.add_argument("--default", action="store_true", help="also the default model on a 4000x3000 photo")
    args = parser.parse_args()
    if args.archs != "none" or args.model:
        bench(args)
    if args.big:
        big()
    if args.default:
        default_model()


if __name__ == "__main__":
    main()
