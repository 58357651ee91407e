"""GPU check: inference speed and memory, training throughput, MAC and the GPU tests, in one run.

Writes ``gpu_check.json`` (every figure, and why anything was skipped) and ``gpu_check.log`` (what it
printed) under ``--out`` (default ``$OUT``, else ``out/gpu_check``). Sections, each timed and caught on its
own so one failure leaves the others standing; the JSON is rewritten after each:

- ``tests``: ``pytest -m gpu`` (the GPU-marked tests), summary line and exit code;
- ``train``: RAM PromptIR's training step at 128 px (``ram_promptir_finetune``, its global batch on one
  device), fp32 against bf16 (``benchmarks/train_throughput.py``'s step);
- ``mac``: MAC on RAM PromptIR (10 images of 64 px, T = 200), the batched implementation against the
  step-by-step loop (on the first 5 images: seconds per image), and the Spearman correlation of the two
  layer rankings of those images;
- ``inference``: images/s and peak memory of PromptIR, SwinIR, Restormer, NAFNet (paper configurations,
  random weights) and the default model, through :class:`~anyrestore.inference.Restorer`, at fp32 and bf16,
  eager and ``torch.compile``, with and without channels-last; and, where ``--official DIR`` holds the
  authors' repository, their forward pass on our weights: output difference and speed (fp32, bf16).

``--official DIR`` is a folder holding ``PromptIR/`` (va1shn9v/PromptIR), ``SwinIR/`` (JingyunLiang/SwinIR),
``Restormer/`` (swz30/Restormer) and ``NAFNet/`` (megvii-research/NAFNet), checked out beforehand (never
committed: ``official/`` is ignored); a missing one is skipped and the JSON says so. The compile variants
run last and only while the time budget (``--budget``, seconds) lasts; skipped ones are listed.

    python benchmarks/gpu_check.py --official official            # one GPU, under 8 minutes on an H200
    python benchmarks/gpu_check.py --reduced --out /tmp/check     # everything tiny, on the CPU
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import inspect
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
import traceback
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # train_throughput, mac helpers
if not importlib.util.find_spec("anyrestore"):  # a bare checkout (the device machine): use its sources
    sys.path.insert(0, str(ROOT / "src"))

ARCHS = ("promptir", "swinir", "restormer", "nafnet")
# Tiny configurations for --reduced (the paper configurations are the descriptors' defaults).
TINY = {
    "promptir": {
        "dim": 8,
        "num_blocks": [1, 1, 1, 1],
        "num_refinement_blocks": 1,
        "heads": [1, 1, 2, 2],
        "prompt_dims": [8, 8, 16],
        "prompt_sizes": [8, 4, 2],
    },
    "swinir": {"img_size": 32, "embed_dim": 12, "depths": [1, 1], "num_heads": [2, 2]},
    "restormer": {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "heads": [1, 1, 2, 2]},
    "nafnet": {"width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]},
    "ram_promptir": {
        "dim": 8,
        "num_blocks": [1, 1, 1, 1],
        "num_refinement_blocks": 1,
        "heads": [1, 1, 1, 1],
        "prompt_dims": [8, 16, 32],
    },
}
# The authors' repositories: folder under --official, file, class, our argument names -> theirs, extras.
OFFICIAL = {
    "promptir": ("PromptIR", "net/model.py", "PromptIR", {"in_channels": "inp_channels",
                 "layernorm_type": "LayerNorm_type"}, {"decoder": True}),
    "swinir": ("SwinIR", "models/network_swinir.py", "SwinIR", {}, {}),
    "restormer": ("Restormer", "basicsr/models/archs/restormer_arch.py", "Restormer", {}, {}),
    "nafnet": ("NAFNet", "basicsr/models/archs/NAFNet_arch.py", "NAFNet", {}, {}),
}  # fmt: skip
# Inference variants: (precision, compile, channels_last); compiled ones run last, within the budget.
VARIANTS = [(p, False, cl) for p in ("fp32", "bf16") for cl in (False, True)]
COMPILED = [(p, True, cl) for p in ("bf16", "fp32") for cl in (False, True)]
COMPILE_MARGIN_S = 60  # a compiled variant starts only with this much of the budget left

log = logging.getLogger("gpu_check")


class Skip(Exception):
    """A comparison that cannot run here; the JSON records why."""


class Report:
    """The JSON being built, written after every section, and the deadline of the compile variants."""

    def __init__(self, out: Path, budget: float) -> None:
        self.path = out / "gpu_check.json"
        self.started = time.monotonic()
        self.budget = budget
        self.data: dict[str, Any] = {"sections": {}}

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.started)

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[dict[str, Any]]:
        entry: dict[str, Any] = {}
        self.data["sections"][name] = entry
        start = time.monotonic()
        log.info("== %s", name)
        try:
            yield entry
        except Exception as exc:  # one section's failure must not end the check
            entry["error"] = f"{type(exc).__name__}: {exc}"
            log.error("%s failed: %s\n%s", name, entry["error"], traceback.format_exc())
        entry["seconds"] = round(time.monotonic() - start, 2)
        self.write()

    def write(self) -> None:
        self.data["total_seconds"] = round(time.monotonic() - self.started, 2)
        self.path.write_text(json.dumps(self.data, indent=1, default=str))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> float:
    """Peak GPU memory since the last reset; on a CPU, the process's peak resident memory."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def time_calls(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> dict[str, float]:
    """Seconds of the first call (compilation included), then the best of ``repeats`` timed calls."""
    _reset_peak(device)
    start = time.perf_counter()
    for _ in range(max(1, warmup)):
        fn()
    _sync(device)
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return {"warmup_s": round(first, 3), "best_s": best, "peak_mb": _peak_mb(device)}


# ------------------------------------------------------------------------------------------- tests


def run_gpu_tests(entry: dict[str, Any], timeout: float) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "gpu",
        "-q",
        "-p",
        "no:cacheprovider",
        str(ROOT / "tests"),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    entry.update(command=" ".join(command[2:]), exit_code=proc.returncode, summary=lines[-1] if lines else "")
    entry["failures"] = [line for line in lines if line.startswith(("FAILED", "ERROR"))][:50]
    log.info("pytest -m gpu: %s (exit %d)", entry["summary"], proc.returncode)


# -------------------------------------------------------------------------------------------- train


def run_train(entry: dict[str, Any], device: torch.device, reduced: bool) -> None:
    from train_throughput import measure

    overrides = []
    if reduced:  # a tiny RAM PromptIR on 32 px crops, batch 2
        cfg = json.dumps(TINY["ram_promptir"])
        overrides = [f"model.config={cfg}", "data.train.batch_size=2", "data.train.sets.0.patch_size=32"]
    steps, warmup = (2, 1) if reduced else (20, 5)
    rows = {}
    for precision in ("fp32", "bf16"):
        r = measure("ram_promptir_finetune", precision, 1, steps, warmup, device, overrides)
        rows[precision] = r
        log.info("train %s: %s", precision, r)
    entry["rows"] = rows
    entry["bf16_over_fp32_speed"] = round(rows["bf16"]["it_s"] / rows["fp32"]["it_s"], 3)
    if device.type == "cuda":
        entry["bf16_over_fp32_memory"] = round(rows["bf16"]["peak_gib"] / rows["fp32"]["peak_gib"], 3)


# ---------------------------------------------------------------------------------------------- MAC


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two score vectors (average ranks for ties)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a.double().numpy(), b.double().numpy()).statistic)


def run_mac(entry: dict[str, Any], device: torch.device, reduced: bool) -> None:
    from mac import _images

    from anyrestore.attribution import mac, mac_reference
    from anyrestore.models import build_model
    from anyrestore.models.normalize import ImageNetNormalized

    images_n, crop, steps, batch = (2, 32, 8, 8) if reduced else (10, 64, 200, 50)
    n_ref = images_n if reduced else 5  # the loop is slow: timed per image on half the images
    cfg = TINY["ram_promptir"] if reduced else {}
    torch.manual_seed(0)
    model = ImageNetNormalized(build_model("ram_promptir", **cfg)).to(device).eval()
    images = _images(images_n, crop, 0).to(device)
    mac(model, images[:1], steps=4, batch_size=batch)  # warm-up
    _sync(device)
    start = time.perf_counter()
    batched = mac(model, images, steps=steps, batch_size=batch, seed=0)
    _sync(device)
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    reference = mac_reference(model, images[:n_ref], steps=steps, seed=0)
    _sync(device)
    t_reference = time.perf_counter() - start
    a, b = batched.scores[:n_ref].sum(0), reference.unit_scores()  # the same images' layer scores
    entry.update(
        images=images_n,
        reference_images=n_ref,
        crop=crop,
        steps=steps,
        points_per_pass=batch,
        units=len(batched.units),
        batched_s=round(t_batched, 2),
        reference_s=round(t_reference, 2),
        speedup_per_image=round((t_reference / n_ref) / (t_batched / images_n), 2),
        spearman=round(spearman(a, b), 6),
        max_relative_score_difference=float((a - b).abs().max() / b.abs().max()),
    )
    log.info("MAC: %s", entry)


# ---------------------------------------------------------------------------------------- inference


def _stub_packages(repo: Path) -> None:
    """Make ``basicsr.models.archs.*`` of an official repository importable without running its package
    ``__init__`` files (which import the whole training framework); ``basicsr.utils`` gets a logger only."""
    for name in [m for m in sys.modules if m == "basicsr" or m.startswith("basicsr.")]:
        del sys.modules[name]
    for name, folder in (
        ("basicsr", "basicsr"),
        ("basicsr.models", "basicsr/models"),
        ("basicsr.models.archs", "basicsr/models/archs"),
    ):
        module = types.ModuleType(name)
        module.__path__ = [str(repo / folder)]
        sys.modules[name] = module
    utils = types.ModuleType("basicsr.utils")
    utils.get_root_logger = lambda *a, **k: logging.getLogger("basicsr")  # type: ignore[attr-defined]
    sys.modules["basicsr.utils"] = utils


def _stub_timm() -> None:
    """The three helpers the official SwinIR imports from timm, for machines without it (forward passes
    are in eval mode, where DropPath is the identity)."""
    layers = types.ModuleType("timm.models.layers")
    layers.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)  # type: ignore[attr-defined]
    layers.trunc_normal_ = nn.init.trunc_normal_  # type: ignore[attr-defined]

    class DropPath(nn.Module):
        def __init__(self, drop_prob: float = 0.0) -> None:
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not self.training or self.drop_prob == 0.0:
                return x
            keep = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device) >= self.drop_prob
            return x * keep / (1 - self.drop_prob)

    layers.DropPath = DropPath  # type: ignore[attr-defined]
    for name in ("timm", "timm.models"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["timm.models.layers"] = layers


def load_official(arch: str, official: Path | None, model: nn.Module, config: dict[str, Any]) -> nn.Module:
    """The authors' module for ``arch`` with ``model``'s hyper-parameters (its signature's defaults and
    ``config``) and weights; raises :class:`Skip` when that cannot be."""
    folder, file, cls_name, renames, extra = OFFICIAL[arch]
    repo = (official / folder) if official is not None else None
    if repo is None or not (repo / file).is_file():
        raise Skip(f"{folder}/{file} not under --official {official}")
    if arch == "swinir" and importlib.util.find_spec("timm") is None:
        _stub_timm()
    if arch == "promptir" and any(k.startswith(("dim", "prompt")) for k in config):
        raise Skip("the official PromptIR fixes dim 48 and its prompt widths; this configuration differs")
    if (repo / "basicsr").is_dir():
        _stub_packages(repo)
    spec = importlib.util.spec_from_file_location(f"official_{arch}", repo / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = getattr(module, cls_name)
    ours = {
        k: v.default for k, v in inspect.signature(type(model).__init__).parameters.items() if k != "self"
    }
    ours.update(config)
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {renames.get(k, k): list(v) if isinstance(v, tuple) else v for k, v in ours.items()}
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    official_model = cls(**kwargs, **extra)
    official_model.load_state_dict(model.state_dict(), strict=True)
    return official_model


def _build(arch: str, reduced: bool):
    from anyrestore.models.descriptor import ModelDescriptor

    config = TINY[arch] if reduced else {}
    descriptor = ModelDescriptor.for_architecture(arch, config)
    torch.manual_seed(0)
    return descriptor.build().eval(), descriptor


def bench_variant(
    model: nn.Module, descriptor: Any, x: torch.Tensor, device: torch.device, variant: tuple, repeats: int
) -> dict[str, Any]:
    """One (precision, compile, channels_last) variant through the Restorer, on a copy of ``model``
    (channels-last and compilation change the module they are given)."""
    from anyrestore.inference import Restorer

    precision, compiled, channels_last = variant
    restorer = Restorer(
        copy.deepcopy(model),
        descriptor,
        device=device,
        precision=precision,
        tile=0,
        self_ensemble="off",
        channels_last=channels_last,
        compile=compiled,
    )
    with torch.inference_mode(not compiled):
        timing = time_calls(lambda: restorer(x), device, repeats, warmup=2 if compiled else 1)
    return {
        "precision": precision,
        "compile": compiled,
        "channels_last": channels_last,
        "images_per_s": round(x.shape[0] / timing["best_s"], 3),
        "peak_mb": timing["peak_mb"],
        "first_call_s": timing["warmup_s"],
    }


def compare_official(
    arch: str,
    model: nn.Module,
    config: dict[str, Any],
    official: Path | None,
    x: torch.Tensor,
    device: torch.device,
    repeats: int,
) -> dict[str, Any]:
    """Both forward passes on the same input and weights: output difference, images/s at fp32 and bf16."""
    try:
        theirs = load_official(arch, official, model, config).to(device).eval()
    except Skip as exc:
        return {"skipped": str(exc)}
    ours = model.to(device).eval()
    result: dict[str, Any] = {}
    with torch.inference_mode():
        a, b = ours(x), theirs(x)
        result["max_abs_difference_fp32"] = float((a.float() - b.float()).abs().max())
        for precision in ("fp32", "bf16"):
            for name, net in (("ours", ours), ("official", theirs)):

                def forward(net: nn.Module = net, precision: str = precision) -> torch.Tensor:
                    with _autocast(device, precision):
                        return net(x)

                timing = time_calls(forward, device, repeats, warmup=1)
                result[f"{name}_{precision}_images_per_s"] = round(x.shape[0] / timing["best_s"], 3)
                result[f"{name}_{precision}_peak_mb"] = timing["peak_mb"]
            result[f"ours_over_official_{precision}"] = round(
                result[f"ours_{precision}_images_per_s"] / result[f"official_{precision}_images_per_s"], 3
            )
    theirs.cpu()
    return result


def run_inference(
    report: Report, entry: dict[str, Any], device: torch.device, reduced: bool, official: Path | None
) -> None:
    from anyrestore.models.zoo import resolve_model

    size, batch, repeats = (32, 1, 1) if reduced else (256, 4, 5)
    entry.update(size=size, batch=batch, repeats=repeats, models={})
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    models: dict[str, tuple[nn.Module, Any]] = {arch: _build(arch, reduced) for arch in ARCHS}
    default = resolve_model(None)
    models["default"] = (default.module, default.descriptor)
    entry["default_model"] = default.descriptor.architecture

    variants = VARIANTS + ([("fp32", True, False)] if reduced else COMPILED)
    compiled_models = ("nafnet",) if reduced else tuple(models)  # compiling on a CPU takes minutes
    for name in models:
        entry["models"][name] = {"variants": []}
    for variant in variants:
        for name, (model, descriptor) in models.items():
            rows = entry["models"][name]["variants"]
            if variant[1] and name not in compiled_models:
                continue
            if variant[1] and report.left() < COMPILE_MARGIN_S:
                rows.append({"variant": list(variant), "skipped": "time budget spent"})
                log.info("%-10s %s skipped: time budget spent", name, variant)
                continue
            if variant[0] not in descriptor.precisions:
                rows.append({"variant": list(variant), "skipped": f"{name} does not support {variant[0]}"})
                continue
            try:
                row = bench_variant(model, descriptor, x, device, variant, repeats)
            except Exception as exc:
                row = {"variant": list(variant), "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
            rows.append(row)
            log.info("%-10s %s", name, row)
            torch._dynamo.reset()
        report.write()
        if variant == VARIANTS[-1]:  # eager done: the official comparisons, before the compile variants
            for arch in ARCHS:
                try:
                    model, descriptor = models[arch]
                    result = compare_official(arch, model, descriptor.config, official, x, device, repeats)
                except Exception as exc:
                    result = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
                entry["models"][arch]["official"] = result
                log.info("%-10s official: %s", arch, result)
                models[arch][0].cpu()
                report.write()


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "out/gpu_check"))
    parser.add_argument("--official", type=Path, default=None, help="folder of the authors' repositories")
    parser.add_argument("--reduced", action="store_true", help="tiny models and sizes, on the CPU")
    parser.add_argument("--device", default=None, help="default: cuda when available (cpu with --reduced)")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds before compiled variants stop; default 400 (600 reduced)",
    )
    parser.add_argument(
        "--sections", nargs="+", default=["tests", "train", "mac", "inference"], help="which to run, in order"
    )
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        handlers=[logging.StreamHandler(sys.stdout), logging.FileHandler(args.out / "gpu_check.log", "w")],
        force=True,
    )
    device = torch.device(args.device or ("cpu" if args.reduced or not torch.cuda.is_available() else "cuda"))
    if device.type == "cpu":
        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here
        torch.backends.cudnn.allow_tf32 = False
    report = Report(args.out, args.budget or (600.0 if args.reduced else 400.0))
    report.data.update(
        reduced=args.reduced,
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        torch=torch.__version__,
        python=platform.python_version(),
        numpy=np.__version__,
        official=str(args.official) if args.official else None,
        command=" ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    )
    log.info("gpu_check on %s (torch %s), out %s", report.data["device"], torch.__version__, args.out)
    for name in args.sections:
        with report.section(name) as entry:
            if name == "tests":
                run_gpu_tests(entry, timeout=300 if args.reduced else 150)
            elif name == "train":
                run_train(entry, device, args.reduced)
            elif name == "mac":
                run_mac(entry, device, args.reduced)
            elif name == "inference":
                run_inference(report, entry, device, args.reduced, args.official)
            else:
                raise ValueError(f"unknown section {name!r}")
    report.write()
    failed = [n for n, e in report.data["sections"].items() if "error" in e]
    log.info("done in %.0f s: %s", report.data["total_seconds"], f"failed: {failed}" if failed else "all ran")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
