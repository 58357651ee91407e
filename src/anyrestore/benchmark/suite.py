"""Benchmark suites: one declarative YAML file per paper setting (``anyrestore/benchmark/suites/``).

A suite states its test sets (paired folders in a known layout, or clean folders degraded with fixed
seeds), the metric preset, channel and border crop (per suite, overridable per set), how inputs are fed
(padding, tiling), and the paper's tables: columns made of sets, and the published rows, each naming its
paper, table and row. Nothing here imports torch, so ``anyrestore benchmark --help`` stays light.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from anyrestore.errors import AnyRestoreError

SUITE_SUFFIX = ".yaml"
METRICS = ("psnr", "ssim")


class SuiteError(AnyRestoreError):
    """A suite file is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class Metric:
    """Metric preset (``basicsr``: Y channel; ``rgb``) and pixels cropped on each side."""

    preset: str = "basicsr"
    crop_border: int = 0

    def describe(self) -> str:
        channel = "Y" if self.preset == "basicsr" else "RGB"
        return f"preset {self.preset} ({channel}), crop border {self.crop_border}"


@dataclass(frozen=True)
class TestSet:
    """One test set: ``paired`` (``root`` + ``layout``) or ``clean`` degraded by ``degrade`` with ``seed``."""

    name: str
    label: str
    metric: Metric
    root: str | None = None
    layout: str | None = None
    clean: str | None = None
    degrade: tuple[str, ...] = ()
    seed: int = 0
    recursive: bool = False
    quantize_inputs: bool = True
    scale: int = 1

    __test__ = False  # not a pytest class

    @property
    def synthetic(self) -> bool:
        return self.clean is not None

    def protocol(self) -> dict[str, Any]:
        """Everything that changes this set's scores (the fingerprint of its per-image score file)."""
        data = asdict(self)
        data.pop("label")
        return data

    def fingerprint(self) -> str:
        text = json.dumps(self.protocol(), sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()

    def expected_layout(self, root: str | os.PathLike[str]) -> str:
        """Where the files must be, in words, for the message about a missing set."""
        base = Path(root)
        if self.synthetic:
            where = base / str(self.clean)
            deep = "**/" if self.recursive else ""
            steps = ", ".join(self.degrade) or "none"
            return f"clean images in {where}/{deep}*.png|jpg|... (degraded here: {steps}; seed {self.seed})"
        from anyrestore.data.layouts import get_layout

        spec = get_layout(str(self.layout))
        where = base / str(self.root)
        naming = f" ({spec.description})" if spec.description else ""
        return f"{where}/{spec.lq}/ paired by name with {where}/{spec.gt}/, layout {self.layout}{naming}"


@dataclass(frozen=True)
class Reference:
    """A published row: one (PSNR, SSIM) per column then the average; None where the paper gives none."""

    row: str
    source: str
    values: tuple[tuple[float | None, float | None], ...]
    architectures: tuple[str, ...] = ()


@dataclass(frozen=True)
class Column:
    name: str
    sets: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """The layout of one of the paper's tables: columns (each the mean of its sets' means), an optional
    average column, which metrics it reports, and its published rows."""

    title: str
    columns: tuple[Column, ...]
    references: tuple[Reference, ...]
    metrics: tuple[str, ...] = METRICS
    average: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def headers(self) -> list[str]:
        return [c.name for c in self.columns] + (["Average"] if self.average else [])

    def set_names(self) -> list[str]:
        return [s for c in self.columns for s in c.sets]


@dataclass(frozen=True)
class Suite:
    name: str
    title: str
    description: str
    metric: Metric
    sets: tuple[TestSet, ...]
    tables: tuple[Table, ...]
    tile: int = 0
    padding: str = "reflect"
    notes: tuple[str, ...] = ()
    downloads: tuple[str, ...] = field(default_factory=tuple)
    path: Path | None = None

    def get_set(self, name: str) -> TestSet:
        for s in self.sets:
            if s.name == name:
                return s
        raise SuiteError(f"suite {self.name}: no test set {name!r}")


# ------------------------------------------------------------------------------------------ loading


def suites_dir() -> Path:
    return Path(str(resources.files("anyrestore") / "benchmark" / "suites"))


def suite_names() -> list[str]:
    """The packaged suites, by file name."""
    return sorted(p.stem for p in suites_dir().glob(f"*{SUITE_SUFFIX}"))


def suite_titles() -> dict[str, str]:
    """Name -> title of every packaged suite (for ``--help``)."""
    out = {}
    for name in suite_names():
        raw = yaml.safe_load((suites_dir() / f"{name}{SUITE_SUFFIX}").read_text(encoding="utf-8")) or {}
        out[name] = str(raw.get("title", ""))
    return out


def load_suite(spec: str | os.PathLike[str]) -> Suite:
    """A packaged suite by name, or a suite file by path."""
    path = Path(spec)
    if not (path.suffix == SUITE_SUFFIX and path.is_file()):
        path = suites_dir() / f"{spec}{SUITE_SUFFIX}"
        if not path.is_file():
            raise SuiteError(f"unknown benchmark suite {str(spec)!r}; known: {', '.join(suite_names())}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML ({exc})") from None
    return parse_suite(raw, path.stem, path)


def _need(raw: dict[str, Any], key: str, where: str) -> Any:
    if key not in raw:
        raise SuiteError(f"{where}: missing key '{key}'")
    return raw[key]


def _check_keys(raw: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: expected a mapping, found {type(raw).__name__}")
    unknown = set(raw) - allowed
    if unknown:
        raise SuiteError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
        )
    return raw


def _metric(raw: Any, base: Metric | None, where: str) -> Metric:
    from anyrestore.evaluate import PRESETS

    raw = _check_keys(raw or {}, {"preset", "crop_border"}, where)
    preset = str(raw.get("preset", base.preset if base else "basicsr"))
    crop = int(raw.get("crop_border", base.crop_border if base else 0))
    if preset not in PRESETS:
        raise SuiteError(f"{where}: unknown metric preset {preset!r}; known: {', '.join(PRESETS)}")
    return Metric(preset, crop)


def _test_set(raw: Any, metric: Metric, where: str) -> TestSet:
    from anyrestore.data.layouts import LAYOUTS
    from anyrestore.data.synthetic import parse_steps, step_scale

    keys = {"name", "label", "paired", "clean", "degrade", "seed", "recursive", "metric", "quantize_inputs"}
    raw = _check_keys(raw, keys, where)
    name = str(_need(raw, "name", where))
    where = f"{where} ({name})"
    common = dict(
        name=name,
        label=str(raw.get("label", name)),
        metric=_metric(raw.get("metric"), metric, f"{where}.metric"),
        recursive=bool(raw.get("recursive", False)),
        quantize_inputs=bool(raw.get("quantize_inputs", True)),
    )
    if ("paired" in raw) == ("clean" in raw):
        raise SuiteError(f"{where}: give exactly one of 'paired' (root, layout) and 'clean' (a folder)")
    if "paired" in raw:
        paired = _check_keys(raw["paired"], {"root", "layout"}, f"{where}.paired")
        layout = str(_need(paired, "layout", f"{where}.paired"))
        if layout not in LAYOUTS:
            raise SuiteError(f"{where}: unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
        return TestSet(root=str(_need(paired, "root", f"{where}.paired")), layout=layout, **common)
    degrade = tuple(str(s) for s in raw.get("degrade", ()))
    try:
        steps = parse_steps(list(degrade), where)
        scale = 1
        for step in steps:
            scale *= step_scale(step, where)
    except AnyRestoreError as exc:
        raise SuiteError(str(exc)) from None
    return TestSet(
        clean=str(raw["clean"]), degrade=degrade, seed=int(raw.get("seed", 0)), scale=scale, **common
    )


def _pair(value: Any, where: str) -> tuple[float | None, float | None]:
    if value is None:
        return (None, None)
    if isinstance(value, int | float):
        return (float(value), None)
    if isinstance(value, list | tuple) and len(value) == 2:
        return tuple(None if v is None else float(v) for v in value)  # type: ignore[return-value]
    raise SuiteError(f"{where}: a published value is a number (PSNR), [PSNR, SSIM] or null, got {value!r}")


def _table(raw: Any, sets: dict[str, TestSet], where: str) -> Table:
    keys = {"title", "columns", "references", "metrics", "average", "notes"}
    raw = _check_keys(raw, keys, where)
    title = str(_need(raw, "title", where))
    where = f"{where} ({title})"
    columns = []
    for i, col in enumerate(_need(raw, "columns", where)):
        col = _check_keys(col, {"name", "sets"}, f"{where}.columns[{i}]")
        names = tuple(str(s) for s in _need(col, "sets", f"{where}.columns[{i}]"))
        for s in names:
            if s not in sets:
                raise SuiteError(f"{where}: column {col.get('name')!r} names unknown set {s!r}")
        columns.append(Column(str(_need(col, "name", f"{where}.columns[{i}]")), names))
    metrics = tuple(raw.get("metrics", METRICS))
    average = tuple(raw.get("average", ()))
    for m in (*metrics, *average):
        if m not in METRICS:
            raise SuiteError(f"{where}: unknown metric {m!r}; known: {', '.join(METRICS)}")
    width = len(columns) + (1 if average else 0)
    references = []
    for i, ref in enumerate(raw.get("references", ())):
        ref = _check_keys(ref, {"row", "source", "values", "architectures"}, f"{where}.references[{i}]")
        values = tuple(_pair(v, f"{where}.references[{i}]") for v in _need(ref, "values", where))
        if len(values) != width:
            raise SuiteError(f"{where}: row {ref.get('row')!r} has {len(values)} values for {width} columns")
        references.append(
            Reference(
                row=str(_need(ref, "row", where)),
                source=str(_need(ref, "source", where)),
                values=values,
                architectures=tuple(str(a) for a in ref.get("architectures", ())),
            )
        )
    return Table(
        title=title,
        columns=tuple(columns),
        references=tuple(references),
        metrics=metrics,
        average=average,
        notes=tuple(str(n) for n in raw.get("notes", ())),
    )


def parse_suite(raw: Any, name: str, path: Path | None = None) -> Suite:
    """Validate a suite's parsed YAML; every error names the file and key."""
    where = str(path or name)
    keys = {"title", "description", "metric", "tile", "padding", "notes", "downloads", "sets", "tables"}
    raw = _check_keys(raw, keys, where)
    metric = _metric(raw.get("metric"), None, f"{where}.metric")
    sets: dict[str, TestSet] = {}
    for i, item in enumerate(_need(raw, "sets", where)):
        test_set = _test_set(item, metric, f"{where}.sets[{i}]")
        if test_set.name in sets:
            raise SuiteError(f"{where}: test set {test_set.name!r} defined twice")
        sets[test_set.name] = test_set
    tables = tuple(_table(t, sets, f"{where}.tables[{i}]") for i, t in enumerate(_need(raw, "tables", where)))
    padding = str(raw.get("padding", "reflect"))
    if padding != "reflect":
        raise SuiteError(
            f"{where}: padding {padding!r}: only 'reflect' (to the model's size multiple) exists"
        )
    return Suite(
        name=name,
        title=str(_need(raw, "title", where)),
        description=str(raw.get("description", "")).strip(),
        metric=metric,
        sets=tuple(sets.values()),
        tables=tables,
        tile=int(raw.get("tile", 0)),
        padding=padding,
        notes=tuple(str(n) for n in raw.get("notes", ())),
        downloads=tuple(str(d) for d in raw.get("downloads", ())),
        path=path,
    )
