"""Inference speed, peak memory and tiling fidelity of every architecture at their paper configurations.

For each architecture at 256x256 and 512x512: images/s and peak memory in fp32 (and bf16 on GPU), and the
agreement of a tiled pass (tile = half the side, overlap 32) with the whole-image pass, as the PSNR between
the two outputs and as the difference of their PSNRs against the clean photo. Weights are random unless a
checkpoint is given (``--model``), so only the agreement figures, not the PSNRs, mean anything for them.

``--big`` restores a 4000x3000 photo with PromptIR on the CPU in a child process and reports its peak
resident memory (the limit to stay under is 8 GB). ``--default`` restores one with the embedded default
model, in one pass and with the flips self-ensemble, each in a child process: seconds, peak resident
memory, and the ensemble's time over one pass.

``--flops`` measures ``default-v1`` (the default model until v2) against its FLOP bound: FLOPs of one pass per
megapixel (``torch.utils.flop_counter``: convolutions and matrix products; element-wise work, pooling and
resampling are not counted), a plain float32 matmul's GFLOP/s, and the 4000x3000 restore (``--ensemble``: one
pass or flips) timed in child processes with the code of this tree and of ``--before REV`` (``git archive`` of
its ``src``), interleaved, all in one run: achieved GFLOP/s, fraction of the bound, and the ratios.

    python benchmarks/inference.py [--archs promptir,swinir,...] [--sizes 256,512] [--model FILE] [--big]
    python benchmarks/inference.py --archs none --default
    python benchmarks/inference.py --archs none --flops --before REV [--ensemble off|flips]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
# sigma 15) or "default_jpeg" (the embedded model, the photo as a JPEG of quality 30: v2 reads its tables
# from the pixels; v1's dequantisation stage and JPEG finish ran), argv[2] the self-ensemble mode.
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


# One timed restore of the noisy astronaut (argv[3]: WxH) by the embedded default model, with whatever
# anyrestore is first on the path (this tree, or an older one through PYTHONPATH); argv[1] is the
# self-ensemble mode, argv[2] where to save the output. Also a 2048^2 float32 matmul's GFLOP/s.
FLOPS_CHILD = """
import json, sys, time, torch
import anyrestore.models
from anyrestore.inference import Restorer
from anyrestore.models.zoo import resolve_model
from PIL import Image
from skimage import data
import numpy as np
a = torch.randn(2048, 2048)
for _ in range(3):
    a @ a
start = time.perf_counter()
for _ in range(10):
    a @ a
matmul = 10 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9
w, h = (int(v) for v in sys.argv[3].split("x"))
im = Image.fromarray(data.astronaut()).resize((w, h), Image.Resampling.BICUBIC)
x = torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255.0
x = (x + 15 / 255 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
r = Restorer(resolve_model(sys.argv[4]), device="cpu", self_ensemble=sys.argv[1])
start = time.perf_counter()
y = r(x)
seconds = time.perf_counter() - start
torch.save(y, sys.argv[2])
print(json.dumps({"seconds": seconds, "tile": r.tile, "matmul_gflops": matmul,
                  "threads": torch.get_num_threads(), "source": anyrestore.__file__}))
"""


def default_model_flops(width: int, height: int) -> dict[str, float]:
    """GFLOPs of default-v1's parts (the model this bound was written for) on the noisy ``width`` x ``height``
    astronaut: the stages in front of the NAFNet (run once per image, flips or not; counted on the photo
    itself, as some of their work does not grow with its size) and one pass of the NAFNet (counted per pixel
    on 512 x 512, where it is exactly proportional, times the photo padded to the size multiple)."""
    from PIL import Image
    from skimage import data
    from torch.utils.flop_counter import FlopCounterMode

    import anyrestore.models  # noqa: F401
    from anyrestore.models.zoo import resolve_model

    loaded = resolve_model("default-v1")
    model, multiple = loaded.module.eval(), loaded.descriptor.size_multiple
    im = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255.0
    x = (x + 15 / 255 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    padded = (-(-width // multiple) * multiple) * (-(-height // multiple) * multiple)
    gflops = {}
    with torch.no_grad():
        for name, part, sample, scale in (
            ("front", lambda t: model._front(t)[0][-1], x, 1.0),
            ("nafnet", model.restorer, photo(512), padded / 512**2),
        ):
            counter = FlopCounterMode(display=False)
            with counter:
                part(sample)
            gflops[name] = counter.get_total_flops() * scale / 1e9
    return gflops


def flops(args: argparse.Namespace) -> None:
    width, height = (int(v) for v in args.photo.split("x"))
    megapixels = width * height / 1e6
    gflops = default_model_flops(width, height)
    passes = {"off": 1, "flips": 4}[args.ensemble]
    work = gflops["front"] + passes * gflops["nafnet"]  # tile overlaps not counted
    print(
        f"default model on {args.photo}: {gflops['front'] / megapixels:.2f} GFLOP/MP in front of the NAFNet "
        f"(once per image), {gflops['nafnet'] / megapixels:.2f} GFLOP/MP the NAFNet (once per pass); "
        f"self-ensemble {args.ensemble}: {work:.0f} GFLOP; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    # The same file for both trees (a path: older trees name it "default"), so only the code differs.
    from anyrestore.models.zoo import embedded_path

    v1_weights = str(embedded_path("default-v1"))
    with tempfile.TemporaryDirectory() as tmp:
        before_src = Path(tmp) / "before"
        before_src.mkdir()
        archive = subprocess.run(["git", "archive", args.before, "src"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(before_src)], input=archive.stdout, check=True)
        trees = {"before": str(before_src / "src"), "after": None}
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for _ in range(args.repeats):
            for name, path in trees.items():
                env = dict(os.environ)
                if path is not None:
                    env["PYTHONPATH"] = path
                out_file = str(Path(tmp) / f"{name}.pt")
                done = subprocess.run(
                    [sys.executable, "-c", FLOPS_CHILD, args.ensemble, out_file, args.photo, v1_weights],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=env,
                )
                runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
        difference = float(
            (torch.load(Path(tmp) / "before.pt") - torch.load(Path(tmp) / "after.pt")).abs().max()
        )
    print(f"{'code':<8}{'s':>8}{'GFLOP/s':>9}{'matmul GFLOP/s':>16}{'of bound':>10}  tile")
    best = {}
    for name, results in runs.items():
        result = min(results, key=lambda r: r["seconds"])
        best[name] = result
        achieved = work / result["seconds"]
        print(
            f"{name:<8}{result['seconds']:>8.1f}{achieved:>9.2f}{result['matmul_gflops']:>16.1f}"
            f"{achieved / result['matmul_gflops']:>10.3f}  {result['tile']}"
        )
    print(
        f"after / before: {best['before']['seconds'] / best['after']['seconds']:.2f}x faster; "
        f"bound = {work:.0f} GFLOP at the matmul's rate; largest output difference {difference:.1e}"
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
    parser.add_argument("--flops", action="store_true", help="the default model against its FLOP bound")
    parser.add_argument("--before", default="HEAD", help="with --flops: the revision to compare with")
    parser.add_argument("--ensemble", default="off", choices=["off", "flips"], help="with --flops")
    parser.add_argument("--photo", default="4000x3000", help="with --flops: WxH of the photo")
    args = parser.parse_args()
    if args.flops:
        flops(args)
    if args.archs != "none" or args.model:
        bench(args)
    if args.big:
        big()
    if args.default:
        default_model()


if __name__ == "__main__":
    main()
