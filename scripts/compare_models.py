"""Models side by side on whole photos, one pass each, basicsr PSNR, no baselines (quick; validation only).

    THREADS=1 CMP_OUT=v1.json python scripts/compare_models.py ~/.cache/anyrestore/photos/validation 23 default

Arguments: a folder of PNG photos, how many (the first N by name), then model specs. Each row's degradation
is seeded by the CRC-32 of the photo's name and rounded to 8 bits; prints the mean PSNR per row and
writes them as JSON to $CMP_OUT. For the full protocol with baselines and timings use evaluate_model.py.
"""
import sys, json, zlib
from pathlib import Path
import torch
from anyrestore.io import read_image
from anyrestore.data.synthetic import parse_steps
from anyrestore.degrade import apply_sequence
from anyrestore.inference import Restorer
from anyrestore.models.zoo import resolve_model
from anyrestore.evaluate import psnr

ROWS = {"noise σ25": ["noise:sigma=25"], "noise σ50": ["noise:sigma=50"], "blur σ2": ["blur:kernel_size=15,sigma=2.0"],
        "JPEG q20": ["jpeg:quality=20"], "haze": ["haze:beta=1.5"], "rain": ["rain"], "low light": ["low_light"],
        "noise σ15 + JPEG q40": ["noise:sigma=15", "jpeg:quality=40"], "clean": []}
photos = sorted(Path(sys.argv[1]).glob("*.png"))[: int(sys.argv[2])]
models = sys.argv[3:]
torch.set_num_threads(int(__import__("os").environ.get("THREADS", "2")))
restorers = {m: Restorer(resolve_model(m), tile=0, self_ensemble="off") for m in models}
table = {}
for row, spec in ROWS.items():
    scores = {"input": [], **{m: [] for m in models}}
    for path in photos:
        x = read_image(path).pixels
        h, w = x.shape[-2:]
        x = x[None]
        g = torch.Generator().manual_seed(zlib.crc32(path.name.encode()))
        lq, _ = apply_sequence(x, parse_steps(spec, row), generator=g) if spec else (x.clone(), None)
        lq = (lq.clamp(0, 1) * 255).round() / 255
        scores["input"].append(float(psnr(lq, x, preset="basicsr")))
        for m, r in restorers.items():
            with torch.no_grad():
                out = r(lq)
            scores[m].append(float(psnr(out.clamp(0, 1), x, preset="basicsr")))
    table[row] = {k: sum(v) / len(v) for k, v in scores.items()}
    print(row, {k: round(v, 2) for k, v in table[row].items()}, flush=True)
means = {k: sum(r[k] for r in table.values()) / len(table) for k in table["clean"]}
print("mean", {k: round(v, 2) for k, v in means.items()})
json.dump(table, open(__import__("os").environ.get("CMP_OUT", "/tmp/cmp.json"), "w"), indent=1)
