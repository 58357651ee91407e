"""What a run reports while it trains: a console progress bar with ETA, ``metrics.jsonl`` (one JSON
object per logged iteration or validation), and TensorBoard scalars when ``tensorboard`` is installed.

Only the main process reports. On resume, lines of the metrics file past the resumed iteration (logged
before a crash, about to be recomputed) are removed, so the file reads like one uninterrupted run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tqdm import tqdm

from anyrestore.io import atomic_output

METRICS_FILE = "metrics.jsonl"


class MetricsFile:
    """Append-only JSON lines: ``{"kind": "train"|"val", "iter": i, ...}``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate_after(self, iteration: int) -> None:
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
            if entry.get("iter", 0) <= iteration:
                kept.append(line)
        with atomic_output(self.path) as tmp:
            tmp.write_text("".join(f"{line}\n" for line in kept))

    def write(self, entry: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in entry.items()}
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def _tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(folder))


class Monitor:
    """Progress bar, metrics file and TensorBoard for the main process; silent elsewhere."""

    def __init__(
        self,
        out_dir: Path,
        *,
        enabled: bool,
        total: int,
        start: int,
        progress: bool = True,
        tensorboard: bool = True,
    ) -> None:
        self.enabled = enabled
        self.metrics = MetricsFile(out_dir / METRICS_FILE)
        self.bar = None
        self.writer = None
        if not enabled:
            return
        self.metrics.truncate_after(start)
        if progress:
            self.bar = tqdm(total=total, initial=start, desc="train", unit="it", dynamic_ncols=True)
        if tensorboard:
            self.writer = _tensorboard_writer(out_dir / "tensorboard")

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def log(self, kind: str, iteration: int, values: dict[str, float]) -> None:
        """Record ``values`` for ``iteration`` (``kind`` is ``train`` or ``val``)."""
        if not self.enabled:
            return
        self.metrics.write({"kind": kind, "iter": iteration, **values})
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{kind}/{key}", value, iteration)
        if kind == "train" and self.bar is not None:
            shown = {k: f"{v:.4g}" for k, v in values.items() if k in ("loss", "lr")}
            self.bar.set_postfix(shown, refresh=False)
        elif kind == "val":
            text = "  ".join(f"{k} {v:.3f}" for k, v in values.items())
            self.message(f"[iter {iteration}] validation: {text}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
