"""Build the default model v2 with the project's own methods, and the ablation that tests each step.

    python scripts/build_default_v2.py --photos ~/.cache/anyrestore/photos --out ~/.cache/anyrestore/v2 \
        [--budget smoke|cpu|gpu] [--seeds 0 1 2] [--device cpu|cuda] [--precision fp32|bf16] [--workers N]

``--photos`` is the photo cache that ``scripts/build_photo_cache.py`` writes from ``manifests/photos.tsv``
(``train/``, ``validation/``, ``test/``). Only train and validation are read here: train photos feed every
run, validation photos score them. The test split is never opened.

Every step is an ordinary, resumable engine run derived from the packaged recipe ``default_v2`` (the plain
L1 run). Each step is kept only if it pays on the validation split (mean PSNR), against the same compute
without it. Per seed, in ``OUT/seed<S>/``:

- ``pretrain``: RAM masked image modelling (50% pixel masks, 1x1 patches, L1 on the hidden pixels), P its;
- ``ram_mac``: MAC ranks the pre-trained units on train photos, the top 30% fine-tune with L1, F its;
- ``scratch``: the same compute without RAM (plain L1 from scratch for P + F its). The better of the two is
  the backbone;
- ``[scratch_]experts``: the backbone frozen, one low-rank expert per degradation trained on its own
  degradation (ABAIR Phase II), E its; ``[scratch_]estimator``: the estimator head learns to blend them
  (Phase III: cross-entropy on the degradation), S its; ``[scratch_]estimator_restore``: the same head
  from the same experts, S its, taught the blend by the restoration loss alone; ``[scratch_]experts_even``:
  no estimator at all, the experts blended evenly (ABAIR's averaging ablation), scored without training;
- ``<backbone>_long``: the same compute without the experts and estimator (``ram_mac_long``: MAC
  fine-tuning for F + E + S its; ``scratch_long``: plain training continued for E + S its). The best of
  the even blend, the two estimators and this is the v2 candidate, listed in ``OUT/candidates.txt``.

``OUT/decisions.json`` records both choices with the validation PSNR they were made on. The remaining arms
of the ablation (``--steps ablation``) test MAC's selection: ``ram_full`` / ``ram_random``, all units or a
random 30% fine-tuned instead of MAC's top 30%, and ``ram_mac_long`` when scratch won the backbone.

Interrupt it at any time and run the same command again: finished runs are kept, the interrupted one
resumes from its last checkpoint exactly. Every step that starts from another's weights averages them
with the EMA warm-up (``ema.warmup``), so that its short run ends with its own weights, not its start's.
``OUT/ablation.json`` and ``OUT/ablation.md`` collect each arm's final validation scores, iterations and
wall time, and the decisions. ``--budget smoke`` runs every step
for a couple of iterations on a tiny network (the test suite does this); ``cpu`` is sized for two CPU cores
over several sessions; ``gpu`` for one H200 in under 10 minutes (bf16, channels-last, 12 loader workers).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

import anyrestore.methods.ram.objectives  # noqa: F401  (registers ram_pretrain, ram_finetune)
from anyrestore.devices import resolve_device
from anyrestore.io import atomic_output, write_atomically
from anyrestore.methods.abair.pipeline import run_phase
from anyrestore.models.checkpoint import load_model, save_model
from anyrestore.models.context_nafnet import DEGRADATIONS
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.train import FINAL_WEIGHTS, recipe_from_dict, validate_recipe
from anyrestore.train.monitor import METRICS_FILE
from anyrestore.train.recipe import find_recipe, read_recipe_data

SINGLE_TASKS = (*DEGRADATIONS, "clean")
MIXTURES = {"blur_noise": ["blur", "noise"], "noise_jpeg": ["noise", "jpeg"]}
MAC_OPS = "noise:sigma=25+blur:sigma=2.0+jpeg:quality=20+haze:beta=1.5+rain+low_light+motion_blur"
SCENE_SIDE = 72  # whole-scene miniatures: short side, so a 64 px crop sees nearly the whole photo


@dataclass(frozen=True)
class Budget:
    pretrain: int
    finetune: int
    experts: int
    estimator: int
    batch: int
    patch: int
    network: dict[str, Any]
    val_patch: int
    mac_per_task: int
    mac_steps: int
    checkpoint_every: int


BUDGETS = {
    "smoke": Budget(
        2,
        2,
        2,
        2,
        2,
        32,
        {"width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]},
        32,
        1,
        4,
        1,
    ),
    "cpu": Budget(3000, 1500, 600, 300, 8, 64, {}, 128, 4, 50, 100),
    # For a plain backbone once RAM has lost at the cpu budget (--backbone scratch): 12,000 iterations.
    "cpu_long": Budget(8000, 4000, 600, 300, 8, 64, {}, 128, 4, 50, 100),
    "gpu": Budget(6000, 3000, 1200, 600, 32, 96, {}, 192, 10, 200, 500),
}


def prepare_data(photos: Path, root: Path) -> Path:
    """``root/{train,val}`` linked to the cache's train and validation photos, ``root/scenes`` made."""
    root.mkdir(parents=True, exist_ok=True)
    for name, split in (("train", "train"), ("val", "validation")):
        source = (photos / split).resolve()
        if not source.is_dir() or not any(source.iterdir()):
            sys.exit(f"{source}: no photos (run scripts/build_photo_cache.py first)")
        link = root / name
        if not link.exists():
            link.symlink_to(source, target_is_directory=True)
    scenes = root / "scenes"
    scenes.mkdir(exist_ok=True)
    for path in sorted((root / "train").glob("*.png")):
        target = scenes / path.name
        if target.exists():
            continue
        with Image.open(path) as im:
            w, h = im.size
            factor = SCENE_SIDE / min(w, h)
            small = im.convert("RGB").resize((round(w * factor), round(h * factor)), Image.Resampling.LANCZOS)
        with atomic_output(target) as tmp:
            small.save(tmp, format="PNG")
    return root


def base_recipe(budget: Budget, data_root: Path, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    data = copy.deepcopy(read_recipe_data(find_recipe("default_v2")))
    data.update(seed=seed, data_root=str(data_root), device=args.device, precision=args.precision)
    data["channels_last"] = args.channels_last
    data["model"]["config"].update(budget.network)
    train = data["data"]["train"]
    train.update(batch_size=budget.batch, num_workers=args.workers)
    for spec in train["sets"]:
        spec["patch_size"] = budget.patch
    for spec in data["data"]["val"]["sets"]:
        spec["patch_size"] = budget.val_patch
    data["checkpoint"]["every"] = budget.checkpoint_every
    if budget is BUDGETS["smoke"]:
        data["log"]["every"] = 1
        data["ema"] = None
    return data


def derive(
    base: dict[str, Any],
    iterations: int,
    *,
    method: dict[str, Any] | None = None,
    loss: str = "l1",
    pretrained: Path | None = None,
    lr: float | None = None,
    tasks: tuple[str, ...] | None = None,
    experts: bool = False,
) -> dict[str, Any]:
    """A step's recipe: ``base`` with its own length, method, loss, start weights and streams."""
    data = copy.deepcopy(base)
    warmup = min(data["schedule"]["warmup"], max(iterations // 10, 0))
    data["schedule"].update(iterations=iterations, warmup=warmup)
    # Five validations per run give its learning curve; the masked pre-training is scored at its end only
    # (it is not trained to restore whole inputs).
    pretraining = (method or {}).get("name") == "ram_pretrain"
    data["data"]["val"]["every"] = iterations if pretraining else max(1, iterations // 5)
    data["method"] = method or {"name": "restore", "options": {}}
    data["loss"] = [{"name": loss}]
    if lr is not None:
        data["optim"]["lr"] = lr
    if pretrained is not None:
        data["model"]["pretrained"] = str(pretrained)
        if data.get("ema") is not None:
            # A step that starts from other weights is short (300 to 4,000 iterations): without the ramp
            # its average would still be mostly the weights it started from (74% after 300 at 0.999).
            data["ema"]["warmup"] = True
    if experts:
        data["model"]["config"]["experts"] = list(DEGRADATIONS)
    if tasks is not None:
        train = data["data"]["train"]
        keep = [i for i, spec in enumerate(train["sets"]) if spec["task"] in tasks]
        train["sets"] = [train["sets"][i] for i in keep]
        train["weights"] = [train["weights"][i] for i in keep]
    return data


def run(name: str, data: dict[str, Any], folder: Path, log: dict[str, Any]) -> Path:
    """Train (or resume, or skip when finished) one step; record its iterations, wall time and scores."""
    recipe = recipe_from_dict({**data, "name": f"default_v2_{name}"}, f"{name} recipe")
    wall_file = folder / "wall.json"
    before = json.loads(wall_file.read_text())["seconds"] if wall_file.exists() else 0.0
    start = time.perf_counter()
    print(f"== {folder.parent.name}/{name}: {recipe.schedule.iterations} iterations", flush=True)
    weights = run_phase(recipe, folder)
    spent = time.perf_counter() - start
    if spent > 1.0 or not wall_file.exists():
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(wall_file, json.dumps({"seconds": before + spent}))
    log[f"{folder.parent.name}/{name}"] = {
        "iterations": recipe.schedule.iterations,
        "wall_seconds": round(before + spent, 1),
        "val": last_validation(folder),
    }
    return weights


def blend_evenly(name: str, experts: Path, data: dict[str, Any], folder: Path, log: dict[str, Any]) -> Path:
    """The trained experts blended evenly for every image, as ABAIR's ablation averages its adapters: the
    estimator's last layer zeroed, so that clean and each of the seven experts get 1/8 whatever the image.
    No training: scored on the validation sets of ``data`` as a run is, its scores in its own
    ``metrics.jsonl``, so that it competes for the candidate like the trained steps."""
    final = folder / FINAL_WEIGHTS
    if not (final.exists() and last_validation(folder)):
        print(f"== {folder.parent.name}/{name}: no training, scored on validation", flush=True)
        start = time.perf_counter()
        recipe = recipe_from_dict({**data, "name": f"default_v2_{name}"}, f"{name} recipe")
        loaded = load_model(experts)  # the experts run's EMA weights
        module = loaded.module
        with torch.no_grad():
            module.estimator[-1].weight.zero_()
            module.estimator[-1].bias.zero_()
        scores = validate_recipe(module, loaded.descriptor, recipe, device=resolve_device(recipe.device))
        save_model(final, loaded.descriptor, module.cpu().state_dict())
        write_atomically(folder / METRICS_FILE, json.dumps({"kind": "val", "iter": 0, **scores}) + "\n")
        write_atomically(folder / "wall.json", json.dumps({"seconds": time.perf_counter() - start}))
    log[f"{folder.parent.name}/{name}"] = {
        "iterations": 0,
        "wall_seconds": round(json.loads((folder / "wall.json").read_text())["seconds"], 1),
        "val": last_validation(folder),
    }
    return final


def last_validation(folder: Path) -> dict[str, float]:
    """The last validation scores that a run logged."""
    last: dict[str, float] = {}
    path = folder / METRICS_FILE
    if path.exists():
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("phase", entry.get("kind")) == "val":
                last = {k: v for k, v in entry.items() if isinstance(v, float)}
    return last


def with_experts(backbone: Path, target: Path, config: dict[str, Any]) -> Path:
    """The trained backbone inside a network with (fresh) experts and estimator, as start weights."""
    if target.exists():
        return target
    loaded = load_model(backbone)
    descriptor = ModelDescriptor.for_architecture("context_nafnet", {**config, "experts": list(DEGRADATIONS)})
    model = descriptor.build()
    own = model.state_dict()
    fresh = [k for k in own if ".experts." in k or k.startswith("estimator.")]
    state = {k: v for k, v in loaded.module.state_dict().items() if k not in fresh}
    if sorted(state) != sorted(k for k in own if k not in fresh):
        raise SystemExit(f"{backbone}: not a ContextNAFNet backbone of this configuration")
    own.update(state)
    model.load_state_dict(own, strict=True)
    save_model(target, descriptor, model.state_dict())  # atomically, creating the folder
    return target


def build_seed(
    budget: Budget,
    data_root: Path,
    seed: int,
    out: Path,
    args: argparse.Namespace,
    log: dict[str, Any],
    decisions: dict[str, Any],
) -> Path:
    base = base_recipe(budget, data_root, seed, args)
    folder = out / f"seed{seed}"
    p, f, e, s = budget.pretrain, budget.finetune, budget.experts, budget.estimator
    mac_data = f"clean={data_root / 'train'},ops={MAC_OPS}"

    def finetune(method: str, ratio: float) -> dict[str, Any]:
        options: dict[str, Any] = {"method": method, "ratio": ratio, "seed": seed}
        if method == "mac":
            options.update(data=mac_data, per_task=budget.mac_per_task, steps=budget.mac_steps, crop=64)
        return {"name": "ram_finetune", "options": options}

    steps = set(args.steps)
    pretrained: Path | None = None
    backbones: dict[str, Path] = {}
    if args.backbone == "best":
        pretrained = run(
            "pretrain",
            derive(
                base,
                p,
                method={"name": "ram_pretrain", "options": {"ratio": 0.5, "patch": 1}},
                loss="masked_l1",
            ),
            folder / "pretrain",
            log,
        )
        backbones["ram_mac"] = run(
            "ram_mac",
            derive(base, f, method=finetune("mac", 0.3), pretrained=pretrained, lr=5e-4),
            folder / "ram_mac",
            log,
        )
    # The same compute without RAM: needed by the keep-or-drop decision below, so always run.
    backbones["scratch"] = run("scratch", derive(base, p + f), folder / "scratch", log)
    # Keep RAM (pre-training + MAC fine-tuning) only if it beats plain training on the validation split.
    backbone = keep_best(backbones, folder, decisions, "backbone")
    prefix = "" if backbone == "ram_mac" else f"{backbone}_"
    start = with_experts(
        backbones[backbone], folder / f"{prefix}experts_init" / FINAL_WEIGHTS, base["model"]["config"]
    )
    tasks = {"tasks": MIXTURES}
    experts = run(
        f"{prefix}experts",
        derive(
            base,
            e,
            method={"name": "abair_experts", "options": tasks},
            pretrained=start,
            lr=1e-3,
            tasks=SINGLE_TASKS,
            experts=True,
        ),
        folder / f"{prefix}experts",
        log,
    )
    even = blend_evenly(
        f"{prefix}experts_even", experts, derive(base, 1, experts=True), folder / f"{prefix}experts_even", log
    )
    with_adapters = run(
        f"{prefix}estimator",
        derive(
            base,
            s,
            method={"name": "abair_experts_estimator", "options": tasks},
            pretrained=experts,
            lr=2e-3,
            experts=True,
        ),
        folder / f"{prefix}estimator",
        log,
    )
    # The estimator's blend learned from restoration alone (no cross-entropy), from the same experts:
    # a confident wrong blend can restore worse than a soft one.
    with_blend = run(
        f"{prefix}estimator_restore",
        derive(
            base,
            s,
            method={
                "name": "abair_experts_estimator",
                "options": {**tasks, "choice_weight": 0.0, "restore_weight": 1.0},
            },
            pretrained=experts,
            lr=2e-3,
            experts=True,
        ),
        folder / f"{prefix}estimator_restore",
        log,
    )
    # The same compute without the experts and estimator: the backbone's run given their iterations too
    # (RAM: MAC fine-tuning lengthened from the same pre-training; plain: training continued).
    ram_mac_long = None
    if pretrained is not None:
        ram_mac_long = derive(base, f + e + s, method=finetune("mac", 0.3), pretrained=pretrained, lr=5e-4)
    if backbone == "ram_mac":
        assert ram_mac_long is not None
        longer = ram_mac_long
    else:
        longer = derive(base, e + s, pretrained=backbones[backbone], lr=5e-4)
    without = run(f"{backbone}_long", longer, folder / f"{backbone}_long", log)
    candidates = {
        f"{prefix}experts_even": even,
        f"{prefix}estimator": with_adapters,
        f"{prefix}estimator_restore": with_blend,
        f"{backbone}_long": without,
    }
    final = candidates[keep_best(candidates, folder, decisions, "adapters")]
    if "ablation" in steps and pretrained is not None:
        run("ram_full", derive(base, f, pretrained=pretrained, lr=5e-4), folder / "ram_full", log)
        run(
            "ram_random",
            derive(base, f, method=finetune("random", 0.3), pretrained=pretrained, lr=5e-4),
            folder / "ram_random",
            log,
        )
        if backbone != "ram_mac" and ram_mac_long is not None:
            run("ram_mac_long", ram_mac_long, folder / "ram_mac_long", log)
    return final


def keep_best(runs: dict[str, Path], folder: Path, decisions: dict[str, Any], step: str) -> str:
    """The run with the best mean validation PSNR (ties: the first); the decision is recorded."""
    scores = {name: last_validation(path.parent).get("psnr", float("-inf")) for name, path in runs.items()}
    best = max(scores, key=lambda name: scores[name])
    decisions[f"{folder.name}/{step}"] = {"kept": best, "validation_psnr": scores}
    print(f"== {folder.name}/{step}: keep {best} (validation PSNR {scores})", flush=True)
    return best


def write_summary(log: dict[str, Any], decisions: dict[str, Any], out: Path) -> None:
    write_atomically(out / "ablation.json", json.dumps(log, indent=2) + "\n")
    write_atomically(out / "decisions.json", json.dumps(decisions, indent=2) + "\n")
    metrics = sorted({k for entry in log.values() for k in entry["val"] if k.startswith("psnr")})
    lines = [
        "| run | iterations | wall time | " + " | ".join(metrics) + " |",
        "|---" * (3 + len(metrics)) + "|",
    ]
    for name, entry in log.items():
        cells = [f"{entry['val'][m]:.2f}" if m in entry["val"] else "" for m in metrics]
        lines.append(
            f"| {name} | {entry['iterations']} | {entry['wall_seconds'] / 60:.1f} min | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "| seed/step | kept | validation PSNR of each |", "|---|---|---|"]
    for name, entry in decisions.items():
        each = ", ".join(f"{run} {psnr:.2f}" for run, psnr in entry["validation_psnr"].items())
        lines.append(f"| {name} | {entry['kept']} | {each} |")
    write_atomically(out / "ablation.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path("~/.cache/anyrestore/photos").expanduser())
    parser.add_argument("--out", type=Path, default=Path("~/.cache/anyrestore/v2").expanduser())
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes per run")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory order (GPUs)")
    parser.add_argument(
        "--steps",
        nargs="+",
        choices=("model", "ablation"),
        default=["model", "ablation"],
        help="model: the v2 pipeline and its keep-or-drop arms; ablation: also MAC's selection arms",
    )
    parser.add_argument(
        "--backbone",
        choices=("best", "scratch"),
        default="best",
        help="best: RAM (pretrain + ram_mac) against plain training, the better kept; scratch: plain only "
        "(no RAM runs, no ablation), for a budget where RAM was already tested and lost",
    )
    args = parser.parse_args(argv)
    if args.backbone == "scratch" and "ablation" in args.steps:
        print("--backbone scratch: no RAM runs, so no ablation arms")
    budget = BUDGETS[args.budget]
    out = args.out.expanduser()
    data_root = prepare_data(args.photos.expanduser(), out / "data")
    log: dict[str, Any] = {}
    decisions: dict[str, Any] = {}
    finals = []
    for seed in args.seeds:
        finals.append(build_seed(budget, data_root, seed, out, args, log, decisions))
        write_summary(log, decisions, out)
    write_atomically(out / "candidates.txt", "".join(f"{p}\n" for p in finals))
    print(f"v2 candidates: {', '.join(map(str, finals))}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    raise SystemExit(main())
