"""Score a restorer against its inputs and the strongest classical baseline, row by row (docs/results.md).

    python scripts/evaluate_model.py --photos ~/.cache/anyrestore/photos/validation --out docs/results
    python scripts/evaluate_model.py --photos DIR --choose-on VALIDATION_DIR --save-choice choice.json
    python scripts/evaluate_model.py --photos DIR --choice choice.json [--model FILE]

Photos: every PNG of ``--photos`` (``skimage`` takes scikit-image's astronaut, chelsea and the left stereo
motorcycle, for a quick look), cut to multiples of 16 (or centre-cropped to ``--crop`` px). Each row's
degradations (``anyrestore.degrade`` spec strings) get a fixed seed per photo (CRC-32 of its name), and
are rounded to 8 bits as a saved image would be. Scored per row: the input; the model in one pass
(``--self-ensemble off``) and as ``anyrestore restore`` runs it; every candidate classical baseline (blind;
a chain ``a>b`` runs ``a`` then ``b``), and the deconvolution baselines given the true kernel (oracle,
reported beside, never chosen). The "strongest baseline" of a row is the blind candidate with the best
mean PSNR on the split named by ``--choose-on`` (or read from ``--choice``); without either it is chosen
on the photos being scored, and the output says so; with a choice, only the chosen candidate (and the
oracles) run. Metric preset ``basicsr``; times are wall seconds per megapixel on this machine, for the model
and every baseline. Writes ``scores.json`` (every photo's PSNR/SSIM and every time) and ``table.md`` under
``--out``.

Besides the 14 degradation rows, three clean rows check that a clean input comes back unchanged: the whole
photo, its centre 96 x 128 crop, and its grayscale version (luma in all three channels, as ``anyrestore.io``
reads a grayscale file). Baselines are slow (CBM3D: minutes per megapixel), and they do not depend on the
model: ``--no-model --out B`` scores them once, ``--baselines-from B/scores.json`` reuses them beside a model
(the inputs are checked to be the same, photo for photo), and ``--no-baselines`` leaves them out;
``--model-from M/scores.json`` likewise reuses a model's scores, so that the two can run side by side and
be joined into one table.

Choices are made on train or validation photos only: the test split is scored once per shipped model.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

PRESET = "basicsr"
ROWS: dict[str, list[str]] = {
    "noise σ15": ["noise:sigma=15"],
    "noise σ25": ["noise:sigma=25"],
    "noise σ50": ["noise:sigma=50"],
    "blur σ1": ["blur:kernel_size=15,sigma=1.0"],
    "blur σ2": ["blur:kernel_size=15,sigma=2.0"],
    "motion blur 15 px": ["motion_blur:length=15,angle=30"],
    "JPEG q10": ["jpeg:quality=10"],
    "JPEG q20": ["jpeg:quality=20"],
    "JPEG q40": ["jpeg:quality=40"],
    "haze β1.5": ["haze:beta=1.5"],
    "rain": ["rain"],
    "low light": ["low_light"],
    "blur σ1.5 + noise σ15": ["blur:kernel_size=15,sigma=1.5", "noise:sigma=15"],
    "noise σ15 + JPEG q40": ["noise:sigma=15", "jpeg:quality=40"],
}
# Clean rows: a view of the photo, scored against itself after the model.
CLEAN_ROWS: dict[str, str] = {"clean": "whole", "clean 96×128 crop": "crop", "clean grayscale": "gray"}
# The blind candidates of each row, by its degradations; "a>b" runs a, then b on a's output.
NOISE = ["cbm3d", "bilateral", "nlm"]
DEBLOCK = ["cbm3d", "deblock_dct", "deblock"]
CANDIDATES: dict[tuple[str, ...], list[str]] = {
    ("noise",): NOISE,
    ("blur",): ["wiener_gaussian", "rl_gaussian"],
    ("motion_blur",): ["wiener_motion", "rl_motion"],
    ("jpeg",): DEBLOCK,
    ("haze",): ["dcp"],
    ("rain",): ["derain_median"],
    ("low_light",): ["gamma", "gamma_clahe", "clahe"],
    ("blur", "noise"): [*NOISE, "cbm3d>wiener_gaussian", "cbm3d>rl_gaussian"],
    ("noise", "jpeg"): ["cbm3d", "bilateral", "deblock_dct", "deblock"],
}
# Oracle runs: the baseline given the true parameters of the row's degradation it undoes.
ORACLES: dict[tuple[str, ...], list[str]] = {
    ("blur",): ["wiener_gaussian", "rl_gaussian"],
    ("motion_blur",): ["wiener_motion", "rl_motion"],
}
ORACLE_SUFFIX = " (true kernel)"


def load_photos(source: str, crop: int | None, limit: int | None) -> dict[str, torch.Tensor]:
    """name -> (1, 3, H, W) float in [0, 1]: the PNGs of a folder, or ``skimage``'s three photos."""
    arrays: dict[str, np.ndarray] = {}
    if source == "skimage":
        from skimage import data

        arrays = {
            "astronaut": data.astronaut(),
            "chelsea": data.chelsea(),
            "motorcycle": data.stereo_motorcycle()[0],
        }
    else:
        folder = Path(source).expanduser()
        paths = sorted(folder.glob("*.png"))
        if not paths:
            raise SystemExit(f"{folder}: no PNG photos")
        for path in paths:
            arrays[path.stem] = np.asarray(Image.open(path).convert("RGB"))
    items = list(arrays.items())
    if limit is not None and 0 < limit < len(items):
        # An even spread: the names group by source.
        items = [items[i * len(items) // limit] for i in range(limit)]
    photos = {}
    for name, array in items:
        h, w = array.shape[:2]
        if crop:
            top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
            array = array[top : top + crop, left : left + crop]
            h, w = array.shape[:2]
        array = array[: h - h % 16, : w - w % 16]  # even sizes keep every operator's geometry simple
        photos[name] = torch.from_numpy(np.array(array)).permute(2, 0, 1)[None].float() / 255.0
    return photos


def clean_view(x: torch.Tensor, view: str) -> torch.Tensor:
    """A clean row's view of a photo: whole, its centre 96 x 128 crop, or its 8-bit luma in 3 channels."""
    if view == "crop":
        h, w = x.shape[-2:]
        top, left = max(0, (h - 96) // 2), max(0, (w - 128) // 2)
        return x[..., top : top + 96, left : left + 128]
    if view == "gray":
        from anyrestore.classical.jpeg_format import luma_255

        return (torch.round(luma_255(x)) / 255.0).expand_as(x).contiguous()
    return x


def photo_seed(name: str) -> int:
    """The fixed seed of a photo's degradations: independent of which other photos are scored."""
    return zlib.crc32(name.encode())


def degrade(x: torch.Tensor, steps: list[str], seed: int) -> torch.Tensor:
    """``steps`` applied with ``seed``, rounded to 8 bits."""
    from anyrestore.degrade import apply_sequence, parse_op_spec

    g = torch.Generator().manual_seed(seed)
    y, _ = apply_sequence(x, [parse_op_spec(s) for s in steps], generator=g)
    return torch.round(y.clamp(0, 1) * 255.0) / 255.0


def operators(steps: list[str]) -> tuple[str, ...]:
    return tuple(s.split(":")[0] for s in steps)


MODEL_KEYS = ("model", "model, one pass")


def merge_saved(scores: dict[str, Any], saved: dict[str, Any], row: str, models: bool) -> None:
    """Add a saved run's model (or baseline) entries of ``row`` to ``scores``, after checking the inputs."""
    old = saved["scores"]
    what = "model" if models else "baselines"
    if old["input"]["per_photo"] != scores["input"]["per_photo"]:
        raise SystemExit(f"{row}: the saved {what} were scored on other inputs (per-photo PSNR differs)")
    for key, entry in old.items():
        if key != "input" and (key in MODEL_KEYS) == models:
            scores[key] = entry


def oracle_params(name: str, steps: list[str]) -> dict[str, Any]:
    """The true parameters, under ``name``'s keywords, of the degradation in ``steps`` that it targets."""
    from anyrestore.classical import BASELINES, ORACLE_KEYWORDS
    from anyrestore.degrade import parse_op_spec

    for step in steps:
        op, params = parse_op_spec(step)
        if op == BASELINES[name].target:
            full = {**_defaults(op), **params}
            return {key: full[param] for key, param in ORACLE_KEYWORDS[name].items() if param in full}
    raise ValueError(f"{name}: no {BASELINES[name].target} in {steps}")


def _defaults(op: str) -> dict[str, Any]:
    from anyrestore.degrade import get_operator

    return dict(get_operator(op).defaults)


def baseline_runner(candidate: str, steps: list[str]) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function running ``candidate`` ("a", "a>b", or an oracle "a (true kernel)") on a degraded image."""
    from anyrestore.classical import run_baseline

    if candidate.endswith(ORACLE_SUFFIX):
        name = candidate[: -len(ORACLE_SUFFIX)]
        params = oracle_params(name, steps)
        return lambda y: run_baseline(name, y, **params)
    chain = candidate.split(">")

    def run(y: torch.Tensor) -> torch.Tensor:
        for name in chain:
            y = run_baseline(name, y)
        return y

    return run


def candidates_for(steps: list[str], available: set[str]) -> tuple[list[str], list[str]]:
    """(blind candidates, oracle runs) of a row, leaving out baselines that cannot run here."""
    ops = operators(steps)
    blind = [c for c in CANDIDATES.get(ops, []) if all(n in available for n in c.split(">"))]
    oracles = [o + ORACLE_SUFFIX for o in ORACLES.get(ops, []) if o in available]
    return blind, oracles


def summarise(per_photo: dict[str, tuple[float, float]], seconds: float, megapixels: float) -> dict[str, Any]:
    values = list(per_photo.values())
    return {
        "psnr": sum(p for p, _ in values) / len(values),
        "ssim": sum(s for _, s in values) / len(values),
        "s_per_mp": seconds / megapixels if megapixels else math.nan,
        "per_photo": {k: [round(p, 4), round(s, 5)] for k, (p, s) in per_photo.items()},
    }


def score_row(
    steps: list[str],
    photos: dict[str, torch.Tensor],
    runners: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    row: str = "",
) -> dict[str, dict[str, Any]]:
    """Every runner's mean PSNR/SSIM, per-photo scores and seconds per megapixel on one row.

    ``steps`` are degradation specs, or ``[view]`` for a clean row (a key of ``CLEAN_ROWS``' values).
    """
    from anyrestore.evaluate import psnr, ssim

    scores: dict[str, dict[str, tuple[float, float]]] = {"input": {}, **{k: {} for k in runners}}
    seconds = dict.fromkeys(scores, 0.0)
    megapixels = 0.0
    view = steps[0] if len(steps) == 1 and steps[0] in CLEAN_ROWS.values() else None
    for name, photo in tqdm(photos.items(), desc=row, unit="photo", leave=False):
        if view is not None:
            clean = lq = clean_view(photo, view)
        else:
            clean, lq = photo, degrade(photo, steps, photo_seed(name))
        megapixels += lq.shape[-2] * lq.shape[-1] / 1e6
        outputs = {"input": lq}
        spent: dict[str, float] = {}
        for key, fn in runners.items():
            # A chain "a>b" whose first link ran alone starts from that output, and is charged its time.
            head, _, tail = key.partition(">")
            start = time.perf_counter()
            if tail and head in outputs:
                outputs[key] = baseline_runner(tail, steps)(outputs[head]).clamp(0, 1)
                spent[key] = spent[head] + time.perf_counter() - start
            else:
                outputs[key] = fn(lq).clamp(0, 1)
                spent[key] = time.perf_counter() - start
            seconds[key] += spent[key]
        for key, out in outputs.items():
            scores[key][name] = (float(psnr(out, clean, PRESET)), float(ssim(out, clean, PRESET)))
    return {k: summarise(v, seconds[k], megapixels) for k, v in scores.items()}


def choose(row_scores: dict[str, dict[str, Any]], blind: list[str]) -> str | None:
    """The blind candidate with the best mean PSNR (ties: the first listed)."""
    return max(blind, key=lambda c: row_scores[c]["psnr"]) if blind else None


def fmt(entry: dict[str, Any] | None) -> str:
    return "n/a" if entry is None else f"{entry['psnr']:.2f} / {entry['ssim']:.3f}"


def row_means(result: dict[str, Any]) -> dict[str, float]:
    """Mean PSNR over the scored degradation rows (not the clean ones) of the input, the model in one pass and
    as ``restore`` runs it, and each row's strongest baseline; a column missing from any row is left out."""
    rows = [r for name, r in result["rows"].items() if name in ROWS]
    if not rows:
        return {}
    out: dict[str, float] = {"rows": len(rows)}
    for key in ("input", "model, one pass", "model"):
        if all(key in r["scores"] for r in rows):
            out[key] = sum(r["scores"][key]["psnr"] for r in rows) / len(rows)
    if "model" in out and "model, one pass" not in out:
        out["model, one pass"] = out["model"]
    if all(r["strongest"] for r in rows):
        out["strongest"] = sum(r["scores"][r["strongest"]]["psnr"] for r in rows) / len(rows)
    return out


def table(result: dict[str, Any]) -> str:
    """The Markdown tables: one line per row, then every candidate."""
    chosen_on = result["meta"]["chosen_on"]
    lines = [
        f"| degradation | input | model, one pass | model as `restore` runs it | strongest baseline "
        f"(chosen on {chosen_on}) | model s/MP | baseline s/MP | true kernel (oracle) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row, r in result["rows"].items():
        s = r["scores"]
        best = r["strongest"]
        model = s.get("model")
        one = s.get("model, one pass", model)
        base = f"{fmt(s[best])} ({best})" if best else "n/a"
        oracles = [k for k in s if k.endswith(ORACLE_SUFFIX)]
        oracle = max(oracles, key=lambda k: s[k]["psnr"]) if oracles else None
        oracle_cell = f"{fmt(s[oracle])} ({oracle[: -len(ORACLE_SUFFIX)]})" if oracle else ""
        model_t = f"{model['s_per_mp']:.1f}" if model else ""
        base_t = f"{s[best]['s_per_mp']:.1f}" if best else ""
        models = f"{fmt(one) if one else ''} | {fmt(model) if model else ''}"
        lines.append(
            f"| {row} | {fmt(s['input'])} | {models} | {base} | {model_t} | {base_t} | {oracle_cell} |"
        )
    means = row_means(result)
    if means:
        cells = [f"{means[k]:.2f}" if k in means else "" for k in ("input", "model, one pass", "model")]
        base = f"{means['strongest']:.2f}" if "strongest" in means else ""
        lines.append(f"| mean of the {means['rows']} degradation rows | {' | '.join(cells)} | {base} | | | |")
    lines += ["", "| degradation | candidate | PSNR / SSIM | s/MP |", "|---|---|---|---|"]
    for row, r in result["rows"].items():
        for key, entry in r["scores"].items():
            if key in ("input", "model", "model, one pass"):
                continue
            mark = " (strongest)" if key == r["strongest"] else ""
            lines.append(f"| {row} | {key}{mark} | {fmt(entry)} | {entry['s_per_mp']:.1f} |")
    return "\n".join(lines) + "\n"


def baselines_only(
    photos: dict[str, torch.Tensor], rows: dict[str, list[str]], available: set[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    out = {}
    for row, steps in rows.items():
        blind, _ = candidates_for(steps, available)
        start = time.perf_counter()
        out[row] = score_row(steps, photos, {c: baseline_runner(c, steps) for c in blind}, row)
        print(f"[choose] {row}: {time.perf_counter() - start:.0f}s", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", required=True, help="folder of PNG photos, or 'skimage'")
    parser.add_argument("--model", default=None, help="any model spec: a file or an embedded name (default)")
    parser.add_argument("--no-model", action="store_true", help="score the input and the baselines only")
    parser.add_argument("--no-baselines", action="store_true", help="score the input and the model only")
    parser.add_argument(
        "--baselines-from", type=Path, default=None, help="reuse the baselines of a saved scores.json"
    )
    parser.add_argument(
        "--model-from", type=Path, default=None, help="reuse the model scores of a saved scores.json"
    )
    parser.add_argument(
        "--choose-on", default=None, help="folder (or 'skimage') to choose the strongest baseline on"
    )
    parser.add_argument("--choice", type=Path, default=None, help="a saved choice (JSON from --save-choice)")
    parser.add_argument("--save-choice", type=Path, default=None, help="write the per-row choice here")
    parser.add_argument("--rows", nargs="*", default=None, help="row names to run (default: all)")
    parser.add_argument("--crop", type=int, default=None, help="centre-crop photos to at most this side")
    parser.add_argument("--limit", type=int, default=None, help="score N photos, evenly spread in name order")
    parser.add_argument("--out", type=Path, default=None, help="write scores.json and table.md here")
    args = parser.parse_args(argv)

    from anyrestore.classical import BASELINES, bm3d_available

    available = set(BASELINES) if bm3d_available() else set(BASELINES) - {"cbm3d"}
    chosen: dict[str, str | None] = {}
    chosen_on = args.photos
    if "cbm3d" not in available:
        print("bm3d is not installed: CBM3D is left out (pip install 'anyrestore[bm3d]')")
    every_row = {**ROWS, **{row: [view] for row, view in CLEAN_ROWS.items()}}
    unknown = [r for r in args.rows or [] if r not in every_row]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; the rows are {list(every_row)}")
    rows = every_row if not args.rows else {r: every_row[r] for r in args.rows}
    saved_rows: dict[str, Any] = {}
    if args.baselines_from is not None:
        saved = json.loads(args.baselines_from.read_text())
        saved_rows = saved["rows"]
        chosen.update({row: r["strongest"] for row, r in saved_rows.items()})
        chosen_on = saved["meta"]["chosen_on"]
    photos = load_photos(args.photos, args.crop, args.limit)
    print(f"{len(photos)} photos from {args.photos}: {', '.join(photos)}", flush=True)

    if args.choice is not None:
        saved = json.loads(args.choice.read_text())
        chosen.update(saved["choice"])
        chosen_on = saved["chosen_on"]
    elif args.choose_on is not None and args.choose_on != args.photos:
        choose_photos = load_photos(args.choose_on, args.crop, args.limit)
        chosen_on = args.choose_on
        for row, s in baselines_only(choose_photos, rows, available).items():
            chosen[row] = choose(s, candidates_for(rows[row], available)[0])

    model_runners: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
    meta: dict[str, Any] = {"photos": args.photos, "count": len(photos), "preset": PRESET, "crop": args.crop}
    model_rows: dict[str, Any] = {}
    if args.model_from is not None:
        saved = json.loads(args.model_from.read_text())
        model_rows = saved["rows"]
        meta.update({k: saved["meta"][k] for k in ("model", "self_ensemble") if k in saved["meta"]})
    elif not args.no_model:
        import anyrestore.models  # noqa: F401
        from anyrestore.inference import Restorer
        from anyrestore.models.zoo import resolve_model

        loaded = resolve_model(args.model)
        as_restore = Restorer(loaded, device="cpu")
        model_runners["model"] = as_restore
        if as_restore.ensemble != "off":
            model_runners["model, one pass"] = Restorer(loaded, device="cpu", self_ensemble="off")
        meta.update(model=args.model or "default", self_ensemble=as_restore.ensemble)
        print(f"model {meta['model']}: restore runs it with self-ensemble {as_restore.ensemble}", flush=True)

    result: dict[str, Any] = {"meta": meta, "rows": {}}
    for row, steps in rows.items():
        blind, oracles = candidates_for(steps, available)
        if row in chosen:
            blind = [c for c in blind if c == chosen[row]]
        runners = dict(model_runners)
        if not args.no_baselines and row not in saved_rows:
            runners.update({c: baseline_runner(c, steps) for c in blind + oracles})
        start = time.perf_counter()
        scores = score_row(steps, photos, runners, row)
        if row in saved_rows:
            merge_saved(scores, saved_rows[row], row, models=False)
        if row in model_rows:
            merge_saved(scores, model_rows[row], row, models=True)
        if row not in chosen and not args.no_baselines:
            chosen[row] = choose(scores, blind)
        chosen.setdefault(row, None)
        if chosen[row] is not None and chosen[row] not in scores:
            chosen[row] = None
        result["rows"][row] = {"steps": steps, "strongest": chosen[row], "scores": scores}
        summary = {k: f"{v['psnr']:.2f} ({v['s_per_mp']:.1f} s/MP)" for k, v in scores.items()}
        print(f"{row}: {time.perf_counter() - start:.0f}s {summary}", flush=True)
    if chosen_on == args.photos:
        chosen_on = "(no baselines)" if args.no_baselines else f"{chosen_on} (the scored photos)"
    meta["chosen_on"] = chosen_on
    result["means"] = row_means(result)

    from anyrestore.io import write_atomically

    text = table(result)
    print(text)
    if args.save_choice is not None:
        choice = {"chosen_on": chosen_on, "choice": chosen}
        write_atomically(args.save_choice, json.dumps(choice, indent=1, ensure_ascii=False) + "\n")
    if args.out is not None:
        write_atomically(args.out / "scores.json", json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        write_atomically(args.out / "table.md", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
