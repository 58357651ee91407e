#!/usr/bin/env bash
# Default model v2 on one GPU (H200: under 10 minutes), the same pipeline as on CPU.
#
#   bash scripts/default_v2_gpu.sh PHOTOS
#
# PHOTOS is the photo cache of scripts/build_photo_cache.py (train/ and validation/ are read; the test split
# is never opened). The device machine has no network: copy the cache into an ignored folder of the
# checkout and carry it, e.g. `cp -r ~/.cache/anyrestore/photos photo-cache` (53 MB), carry photo-cache.
# Writes under $OUT (default out/default_v2_gpu): default_v2.safetensors (the candidate), ablation.json and
# ablation.md (every run's iterations, wall time and final validation scores), decisions.json, run.log, and runs.tar.gz
# (every run's recipe and metrics.jsonl, for the learning curves). The runs themselves stay in $RUNS
# (default /tmp/default_v2), so a second call on a warm machine resumes where the first stopped.
# BUDGET, DEVICE, PRECISION, WORKERS, SEEDS, STEPS and LIMIT (seconds) override the GPU settings (the test suite runs
# BUDGET=smoke DEVICE=cpu PRECISION=fp32 WORKERS=0).
set -euo pipefail
cd "$(dirname "$0")/.."
PHOTOS=${1:?usage: default_v2_gpu.sh PHOTOS}
OUT=${OUT:-out/default_v2_gpu}
RUNS=${RUNS:-/tmp/default_v2}
mkdir -p "$OUT" "$RUNS"
python3 -c "import anyrestore" 2>/dev/null || python3 -m pip install -q --no-deps -e .
export PYTHONUNBUFFERED=1
status=0
timeout "${LIMIT:-540}" python3 scripts/build_default_v2.py --photos "$PHOTOS" --out "$RUNS" \
  --budget "${BUDGET:-gpu}" --device "${DEVICE:-cuda}" --precision "${PRECISION:-bf16}" \
  --workers "${WORKERS:-12}" --seeds ${SEEDS:-0 1 2} --steps ${STEPS:-model ablation} --channels-last 2>&1 | tee "$OUT/run.log" || status=$?
for f in ablation.json ablation.md decisions.json; do
  if [ -f "$RUNS/$f" ]; then cp "$RUNS/$f" "$OUT/"; fi
done
if [ -f "$RUNS/candidates.txt" ]; then cp "$(head -n 1 "$RUNS/candidates.txt")" "$OUT/default_v2.safetensors"; fi
(cd "$RUNS" && find . -name metrics.jsonl -o -name recipe.yaml | tar -czf - -T -) > "$OUT/runs.tar.gz"
exit "$status"
