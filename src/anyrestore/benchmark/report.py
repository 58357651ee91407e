"""A finished run as the papers print it: their table layout, measured rows beside the published ones,
the difference, every published number's source, and the sets that were missing."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from anyrestore.benchmark.runner import BenchmarkRun, ModelResult
from anyrestore.benchmark.suite import Reference, Table

Cell = tuple[float | None, float | None]


def column_values(table: Table, model: ModelResult) -> list[Cell]:
    """(PSNR, SSIM) per column, each the mean of its sets' means; then the average of the columns.
    A column with a set that did not complete is (None, None); so is the average then."""
    cells: list[Cell] = []
    for column in table.columns:
        results = [model.sets.get(name) for name in column.sets]
        if all(r is not None and r.status == "ok" for r in results):
            cells.append(
                (
                    math.fsum(r.psnr for r in results) / len(results),  # type: ignore[union-attr,misc]
                    math.fsum(r.ssim for r in results) / len(results),  # type: ignore[union-attr,misc]
                )
            )
        else:
            cells.append((None, None))
    if table.average:
        full = all(c[0] is not None for c in cells)
        psnr = math.fsum(c[0] for c in cells) / len(cells) if full and "psnr" in table.average else None  # type: ignore[misc]
        ssim = math.fsum(c[1] for c in cells) / len(cells) if full and "ssim" in table.average else None  # type: ignore[misc]
        cells.append((psnr, ssim))
    return cells


def compared_reference(table: Table, model: ModelResult, reference: str | None) -> int | None:
    """Index of the published row a model is compared with: ``reference`` (a substring of the row name),
    else the first row naming the model's architecture, else the first row."""
    if not table.references:
        return None
    if reference:
        for i, ref in enumerate(table.references):
            if reference.lower() in ref.row.lower():
                return i
    for i, ref in enumerate(table.references):
        if model.architecture in ref.architectures:
            return i
    return 0


def _fmt(cell: Cell, metrics: tuple[str, ...], diff: bool = False) -> str:
    parts = []
    for value, metric in zip(cell, ("psnr", "ssim"), strict=True):
        if metric not in metrics:
            continue
        if value is None:
            parts.append("-")
        elif metric == "psnr":
            parts.append(f"{value:+.2f}" if diff else f"{value:.2f}")
        else:
            parts.append(f"{value:+.4f}" if diff else f"{value:.4f}")
    return "/".join(parts)


def _difference(measured: Cell, published: Cell) -> Cell:
    return tuple(  # type: ignore[return-value]
        None if m is None or p is None else m - p for m, p in zip(measured, published, strict=True)
    )


def format_table(table: Table, run: BenchmarkRun, reference: str | None = None) -> str:
    """One table: per model its measured row, the published row it is compared with and the difference;
    then the other published rows; every published row numbered with its source below."""
    metrics = tuple(m for m in ("psnr", "ssim") if m in table.metrics)
    rows: list[tuple[str, list[str]]] = []
    shown: list[int] = []
    for model in run.models:
        measured = column_values(table, model)
        rows.append((f"{Path(model.spec).name} (measured)", [_fmt(c, metrics) for c in measured]))
        index = compared_reference(table, model, reference)
        if index is None:
            continue
        ref = table.references[index]
        if index not in shown:
            shown.append(index)
        label = f"[{shown.index(index) + 1}]"
        rows.append((f"  {label} {ref.row} (published)", [_fmt(c, metrics) for c in ref.values]))
        diffs = [_difference(m, p) for m, p in zip(measured, ref.values, strict=True)]
        rows.append((f"  difference vs {label}", [_fmt(d, metrics, diff=True) for d in diffs]))
    for i, ref in enumerate(table.references):
        if i not in shown:
            shown.append(i)
            rows.append(
                (f"[{shown.index(i) + 1}] {ref.row} (published)", [_fmt(c, metrics) for c in ref.values])
            )
    headers = table.headers
    first = max([len("row"), *(len(r[0]) for r in rows)])
    widths = [max(len(h), *(len(r[1][j]) for r in rows)) for j, h in enumerate(headers)]
    lines = [f"{table.title} ({'/'.join(m.upper() for m in metrics)})"]
    lines.append(
        "  ".join([f"{'row':<{first}}", *(f"{h:>{w}}" for h, w in zip(headers, widths, strict=True))])
    )
    lines.append("-" * len(lines[-1]))
    for label, cells in rows:
        lines.append(
            "  ".join([f"{label:<{first}}", *(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))])
        )
    for n, i in enumerate(shown, 1):
        lines.append(f"[{n}] {table.references[i].source}")
    lines.extend(f"note: {note}" for note in table.notes)
    return "\n".join(lines)


def format_run(run: BenchmarkRun, reference: str | None = None) -> str:
    """Every table that uses a selected set, then the protocol, skipped and missing sets."""
    suite = run.suite
    blocks = [
        f"{suite.title}\nsuite {suite.name}: {suite.metric.describe()} unless a set says otherwise; inputs "
        "reflect-padded to the model's size multiple, outputs cropped back and rounded to 8 bits"
    ]
    selected = set(run.selected)
    for table in suite.tables:
        if selected & set(table.set_names()):
            blocks.append(format_table(table, run, reference))
    status = []
    for model in run.models:
        for name, result in model.sets.items():
            if result.status in ("skipped", "failed"):
                status.append(f"{Path(model.spec).name} on {name}: {result.status}: {result.message}")
    if status:
        blocks.append("\n".join(status))
    if run.missing:
        lines = [f"missing test sets ({len(run.missing)}; the rest ran):"]
        lines += [f"  {name}: {why}" for name, why in run.missing.items()]
        if suite.downloads:
            lines.append("what the suite reads (download, then place under --root):")
            lines += [f"  {item}" for item in suite.downloads]
        blocks.append("\n".join(lines))
    overrides = [
        f"{s.label}: {s.metric.describe()}"
        for s in suite.sets
        if s.name in selected and s.metric != suite.metric
    ]
    if overrides:
        blocks.append("per-set metrics: " + "; ".join(overrides))
    if suite.notes:
        blocks.append("\n".join(f"note: {note}" for note in suite.notes))
    return "\n\n".join(blocks)


def run_to_dict(run: BenchmarkRun, reference: str | None = None) -> dict[str, Any]:
    """Everything printed, as data: per model and set the means and the score file; per table the
    measured, published (with sources) and difference rows."""
    suite = run.suite
    tables = []
    selected = set(run.selected)
    for table in suite.tables:
        if not selected & set(table.set_names()):
            continue
        models = []
        for model in run.models:
            measured = column_values(table, model)
            index = compared_reference(table, model, reference)
            entry: dict[str, Any] = {"model": model.spec, "measured": [list(c) for c in measured]}
            if index is not None:
                ref = table.references[index]
                entry["compared_with"] = ref.row
                entry["difference"] = [
                    list(_difference(m, p)) for m, p in zip(measured, ref.values, strict=True)
                ]
            models.append(entry)
        tables.append(
            {
                "title": table.title,
                "columns": table.headers,
                "metrics": list(table.metrics),
                "published": [_reference_dict(r) for r in table.references],
                "models": models,
            }
        )
    return {
        "suite": suite.name,
        "title": suite.title,
        "root": str(run.root),
        "metric": {"preset": suite.metric.preset, "crop_border": suite.metric.crop_border},
        "models": [
            {
                "model": m.spec,
                "architecture": m.architecture,
                "key": m.key,
                "sets": {name: r.to_dict() for name, r in m.sets.items()},
            }
            for m in run.models
        ],
        "tables": tables,
        "missing": dict(run.missing),
    }


def _reference_dict(ref: Reference) -> dict[str, Any]:
    return {"row": ref.row, "source": ref.source, "values": [list(v) for v in ref.values]}


def write_json(run: BenchmarkRun, path: str | os.PathLike[str], reference: str | None = None) -> Path:
    from anyrestore.io import atomic_output

    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(run_to_dict(run, reference), indent=2) + "\n")
    return path
