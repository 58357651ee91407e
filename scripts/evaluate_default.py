"""Score a restorer against its inputs and the classical baselines on held-out photos (docs/results.md).

    python scripts/evaluate_default.py [--model default] [--extra DIR] [--out docs]

Held-out photos: scikit-image's astronaut, chelsea and the left stereo motorcycle (shipped in its wheel,
lossless) and, with ``--extra``, any folder of photos from other sources (we use sporco's Kodak/Set14
members: ``pip download --no-deps sporco==0.2.2.post1`` and unzip ``sporco/data``). None of them is used in
training. Each degradation is applied with a fixed seed; PSNR/SSIM use the ``basicsr`` preset (Y channel,
uint8). Prints a Markdown table and writes it, with before/after strips, under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

CASES = {
    "noise σ25": ["noise:sigma=25"],
    "blur σ2": ["blur:kernel_size=15,sigma=2.0"],
    "motion blur 15px": ["motion_blur:length=15,angle=30"],
    "JPEG q20": ["jpeg:quality=20"],
    "haze β1.5": ["haze:beta=1.5"],
    "rain": ["rain"],
    "low light": ["low_light"],
    "blur σ1.5 + noise σ15": ["blur:kernel_size=15,sigma=1.5", "noise:sigma=15"],
    "noise σ15 + JPEG q40": ["noise:sigma=15", "jpeg:quality=40"],
}
# The classical baseline run for a case, by the first degradation's operator.
BASELINE_FOR = {
    "noise": ["bilateral", "nlm"],
    "blur": ["wiener"],
    "motion_blur": ["richardson_lucy_motion"],
    "jpeg": ["deblock_dct", "deblock"],
    "haze": ["dcp"],
    "rain": ["derain_median"],
    "low_light": ["gamma"],
}
# Oracle baselines get the true parameters of the degradation they undo.
ORACLE_PARAMS = {"richardson_lucy_motion": ("length", "angle")}


SKIMAGE = ("astronaut", "chelsea", "motorcycle")


def held_out_photos(extra: Path | None) -> dict[str, torch.Tensor]:
    from skimage import data

    arrays = {
        "astronaut": data.astronaut(),
        "chelsea": data.chelsea(),
        "motorcycle": data.stereo_motorcycle()[0],
    }
    if extra is not None:
        for path in sorted(extra.glob("*.png")):
            im = Image.open(path)
            if im.mode in ("RGB", "RGBA", "P"):
                arrays[path.stem] = np.asarray(im.convert("RGB"))
    photos = {}
    for name, array in arrays.items():
        h, w = array.shape[:2]
        array = array[: h - h % 16, : w - w % 16]  # even sizes keep every operator's geometry simple
        photos[name] = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].float() / 255.0
    return photos


def degrade(x: torch.Tensor, steps: list[str], seed: int) -> torch.Tensor:
    from anyrestore.degrade import apply_sequence, parse_op_spec

    g = torch.Generator().manual_seed(seed)
    y, _ = apply_sequence(x, [parse_op_spec(s) for s in steps], generator=g)
    return y


def strip(path: Path, tiles: list[tuple[str, torch.Tensor]], crop: int = 192) -> None:
    """Side-by-side crops with labels: degraded, baseline, ours, clean."""
    images = []
    for label, t in tiles:
        h, w = t.shape[-2:]
        y0, x0 = (h - crop) // 2, (w - crop) // 2
        a = (
            (t[0, :, y0 : y0 + crop, x0 : x0 + crop].clamp(0, 1) * 255)
            .round()
            .byte()
            .permute(1, 2, 0)
            .numpy()
        )
        im = Image.fromarray(a).resize((crop * 2, crop * 2), Image.Resampling.NEAREST)
        canvas = Image.new("RGB", (im.width, im.height + 22), "white")
        canvas.paste(im, (0, 22))
        ImageDraw.Draw(canvas).text((4, 4), label, fill="black")
        images.append(canvas)
    out = Image.new("RGB", (sum(i.width for i in images) + 4 * (len(images) - 1), images[0].height), "white")
    x = 0
    for im in images:
        out.paste(im, (x, 0))
        x += im.width + 4
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint or embedded name (default model)")
    parser.add_argument("--extra", type=Path, default=None, help="folder of extra held-out photos")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument(
        "--self-ensemble",
        default=None,
        choices=["off", "flips", "x8"],
        help="default: what the model recommends; when on, the one-pass result is scored too",
    )
    args = parser.parse_args()

    import anyrestore.models  # noqa: F401
    from anyrestore.classical import BASELINES
    from anyrestore.degrade import parse_op_spec
    from anyrestore.evaluate import psnr, ssim
    from anyrestore.inference import Restorer
    from anyrestore.models.zoo import resolve_model

    loaded = resolve_model(args.model)
    restorer = Restorer(loaded, device="cpu", tile=0, self_ensemble=args.self_ensemble)
    one_pass = (
        None if restorer.ensemble == "off" else Restorer(loaded, device="cpu", tile=0, self_ensemble="off")
    )
    print(f"self-ensemble: {restorer.ensemble}")
    photos = held_out_photos(args.extra)
    print(f"{len(photos)} held-out photos: {', '.join(photos)}")
    rows = []
    per_photo: dict[str, dict[str, dict[str, tuple[float, float]]]] = {}
    for case, steps in CASES.items():
        op = steps[0].split(":")[0]
        baselines = BASELINE_FOR.get(op, [])
        scores: dict[str, list[tuple[float, float]]] = {"input": [], "ours": [], **{b: [] for b in baselines}}
        if one_pass is not None:
            scores["one pass"] = []
        start = time.perf_counter()
        for i, (name, clean) in enumerate(photos.items()):
            lq = degrade(clean, steps, seed=1000 + i)
            outputs = {"input": lq, "ours": restorer(lq)}
            if one_pass is not None:
                outputs["one pass"] = one_pass(lq)
            for b in baselines:
                true = parse_op_spec(steps[0])[1]
                oracle = {k: true[k] for k in ORACLE_PARAMS.get(b, ())}
                outputs[b] = BASELINES[b].fn(lq, **oracle).clamp(0, 1)
            for key, out in outputs.items():
                scores[key].append((float(psnr(out, clean, "basicsr")), float(ssim(out, clean, "basicsr"))))
            if name == "astronaut":
                best = baselines[0] if baselines else None
                tiles = [("degraded", lq)] + ([(best, outputs[best])] if best else [])
                tiles += [("anyrestore default", outputs["ours"]), ("clean", clean)]
                slug = re.sub(r"[^a-z0-9]+", "_", case.lower().replace("σ", "s").replace("β", "b")).strip("_")
                strip(args.out / "results" / f"{slug}.png", tiles)
        means = {k: (sum(p for p, _ in v) / len(v), sum(s for _, s in v) / len(v)) for k, v in scores.items()}
        best_baseline = max(baselines, key=lambda b: means[b][0]) if baselines else None
        gains = [o[0] - i[0] for o, i in zip(scores["ours"], scores["input"], strict=True)]
        groups = {"skimage": [g for g, n in zip(gains, photos, strict=True) if n in SKIMAGE]}
        groups["other"] = [g for g, n in zip(gains, photos, strict=True) if n not in SKIMAGE]
        by_source = {k: sum(v) / len(v) if v else math.nan for k, v in groups.items()}
        rows.append((case, means, best_baseline, by_source))
        per_photo[case] = {k: dict(zip(photos, v, strict=True)) for k, v in scores.items()}
        print(
            f"{case}: {time.perf_counter() - start:.0f}s",
            {k: f"{v[0]:.2f}/{v[1]:.3f}" for k, v in means.items()},
        )

    ours_title = "default model" if one_pass is None else f"default model ({restorer.ensemble} self-ensemble)"
    extra_title = "" if one_pass is None else " one pass |"
    lines = [
        f"| degradation | input | best classical baseline | {ours_title} | gain over input "
        f"| gain: scikit-image / other sources |{extra_title}",
        "|---|---|---|---|---|---|" + ("---|" if one_pass is not None else ""),
    ]
    for case, means, best, by_source in rows:
        inp, ours = means["input"], means["ours"]
        base = f"{means[best][0]:.2f} / {means[best][1]:.3f} ({best})" if best else "n/a"
        single = "" if one_pass is None else f" {means['one pass'][0]:.2f} / {means['one pass'][1]:.3f} |"
        lines.append(
            f"| {case} | {inp[0]:.2f} / {inp[1]:.3f} | {base} | {ours[0]:.2f} / {ours[1]:.3f} | "
            f"{ours[0] - inp[0]:+.2f} dB | {by_source['skimage']:+.2f} / {by_source['other']:+.2f} dB |"
            + single
        )
    table = "\n".join(lines)
    print(table)
    (args.out / "results").mkdir(parents=True, exist_ok=True)
    (args.out / "results" / "table.md").write_text(table + "\n")
    (args.out / "results" / "scores.json").write_text(json.dumps(per_photo, indent=1) + "\n")
    if not math.isfinite(rows[0][1]["ours"][0]):
        raise SystemExit("non-finite PSNR")


if __name__ == "__main__":
    main()
