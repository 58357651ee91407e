"""`anyrestore benchmark`: every packaged suite runs on a tiny fixture laid out as its folders; the scores
equal `degrade` + `restore` + `evaluate` by hand; resumed runs skip scored images; missing sets reported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anyrestore.benchmark import load_suite, suite_names
from anyrestore.benchmark.suite import Suite, SuiteError, parse_suite
from anyrestore.cli.main import main
from anyrestore.data.layouts import get_layout
from anyrestore.models.checkpoint import save_model
from anyrestore.models.descriptor import ModelDescriptor

SIDE = 48  # a multiple of 2, 3 and 4: SR sets keep every pixel
IMAGES = ("im1", "im2")
NAFNET = dict(width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1])


def _png(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(coarse).resize((SIDE, SIDE), Image.Resampling.BICUBIC).save(path)


def make_fixture(suite: Suite, root: Path, skip: tuple[str, ...] = ()) -> None:
    """Tiny images in every folder the suite's sets read, named as the public releases name them."""
    seed = 0
    for test_set in suite.sets:
        if test_set.name in skip:
            continue
        if test_set.synthetic:
            folder = root / str(test_set.clean) / ("sub" if test_set.recursive else "")
            for name in IMAGES:
                seed += 1
                _png(folder / f"{name}.png", seed)
            continue
        layout = get_layout(str(test_set.layout))
        base = root / str(test_set.root)
        lq_dir, gt_dir = (base / d.replace("*", "GOPR0384_11_00") for d in (layout.lq, layout.gt))
        for name in IMAGES:
            lq_name = f"{name}_0.8_0.2" if layout.match else name
            gt_name = layout.gt_name.format(id=name, stem=lq_name) if layout.gt_name else name
            if not (gt_dir / f"{gt_name}.png").exists():
                seed += 1
                _png(gt_dir / f"{gt_name}.png", seed)
            seed += 1
            _png(lq_dir / f"{lq_name}.png", seed)


def tiny_checkpoint(path: Path, architecture: str = "nafnet", seed: int = 0, **config) -> Path:
    from anyrestore.models.registry import build_model

    config = config or dict(NAFNET)
    torch.manual_seed(seed)
    model = build_model(architecture, **config)
    with torch.no_grad():  # NAFNet's zero-initialised betas would make it the identity
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return save_model(path, ModelDescriptor.for_architecture(architecture, config), model)


def _swinir(scale: int) -> dict:
    return dict(
        img_size=16,
        window_size=4,
        embed_dim=12,
        depths=[1],
        num_heads=[1],
        mlp_ratio=1.0,
        upscale=scale,
        upsampler="pixelshuffledirect",
    )


def run_cli(tmp_path: Path, suite: str, models: list[Path], *extra: str) -> tuple[int, dict]:
    out = tmp_path / "result.json"
    argv = [
        "benchmark",
        "--suite",
        suite,
        "--root",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "scores"),
    ]
    for m in models:
        argv += ["--model", str(m)]
    rc = main([*argv, "--json", str(out), "--quiet", "--device", "cpu", *extra])
    return rc, json.loads(out.read_text()) if out.exists() else {}


def test_help_lists_every_suite(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["benchmark", "--help"])
    text = capsys.readouterr().out
    for name in suite_names():
        assert name in text
    assert {"promptir3", "promptir5", "ram7", "adaptir-sr", "adaptir-hybrid"} <= set(suite_names())


def test_every_published_row_names_its_source() -> None:
    for name in suite_names():
        suite = load_suite(name)
        for table in suite.tables:
            for ref in table.references:
                assert "Table" in ref.source and ("row" in ref.source or "column" in ref.source), ref.source


@pytest.mark.parametrize("name", suite_names())
def test_every_suite_runs_on_its_fixture(name: str, tmp_path: Path, capsys) -> None:
    suite = load_suite(name)
    make_fixture(suite, tmp_path / "data")
    scale = {"adaptir-sr": 2, "adaptir-hybrid": 4}.get(name, 1)
    config = _swinir(scale) if scale > 1 else None
    model = tiny_checkpoint(tmp_path / "m.safetensors", "swinir" if config else "nafnet", **(config or {}))
    rc, result = run_cli(tmp_path, name, [model])
    assert rc == 0, capsys.readouterr()
    sets = result["models"][0]["sets"]
    for test_set in suite.sets:
        entry = sets[test_set.name]
        if test_set.scale != scale:
            assert entry["status"] == "skipped"
            continue
        assert entry["status"] == "ok", entry
        assert entry["count"] == len(IMAGES)
        assert np.isfinite(entry["psnr"]) and -1 <= entry["ssim"] <= 1
        lines = Path(entry["scores"]).read_text().splitlines()
        assert sorted(json.loads(line)["name"] for line in lines)  # per-image scores on disk
    printed = capsys.readouterr().out
    for table in suite.tables:
        assert table.title in printed
        for ref in table.references:
            assert ref.source in printed


def test_scores_equal_degrade_restore_evaluate_by_hand(tmp_path: Path, capsys) -> None:
    suite = load_suite("ram7")
    data = tmp_path / "data"
    make_fixture(suite, data)
    model = tiny_checkpoint(tmp_path / "m.safetensors", seed=3)
    rc, result = run_cli(tmp_path, "ram7", [model], "--only", "rain100l", "--only", "bsd68_sigma25")
    assert rc == 0
    sets = result["models"][0]["sets"]
    measured = {
        name: {
            json.loads(x)["name"]: json.loads(x) for x in Path(sets[name]["scores"]).read_text().splitlines()
        }
        for name in ("rain100l", "bsd68_sigma25")
    }
    # by hand: the noisy inputs with `degrade` (the set's seed), then `restore`, then `evaluate`
    noisy, by_hand = tmp_path / "noisy", {}
    assert (
        main(
            [
                "degrade",
                str(data / "CBSD68"),
                "-o",
                str(noisy),
                "--op",
                "noise:sigma=25",
                "--seed",
                "25",
                "--quiet",
            ]
        )
        == 0
    )
    for name, inputs, gt in (
        ("rain100l", data / "test/Rain100L/input", data / "test/Rain100L/target"),
        ("bsd68_sigma25", noisy, data / "CBSD68"),
    ):
        restored, table = tmp_path / f"restored-{name}", tmp_path / f"{name}.json"
        assert main(["restore", str(inputs), "-o", str(restored), "--model", str(model), "--quiet"]) == 0
        argv = ["evaluate", "--pred", str(restored), "--gt", str(gt), "--preset", "rgb", "--crop-border", "4"]
        assert main([*argv, "--json", str(table), "--quiet"]) == 0
        by_hand[name] = {s["name"]: s for s in json.loads(table.read_text())["images"]}
    capsys.readouterr()
    for name in measured:
        assert set(measured[name]) == set(by_hand[name])
        for image, score in measured[name].items():
            assert score["psnr"] == by_hand[name][image]["psnr"]
            assert score["ssim"] == by_hand[name][image]["ssim"]


def test_resume_skips_scored_images(tmp_path: Path, monkeypatch) -> None:
    import anyrestore.benchmark.runner as runner

    suite = load_suite("promptir3")
    make_fixture(suite, tmp_path / "data")
    model = tiny_checkpoint(tmp_path / "m.safetensors")
    rc, first = run_cli(tmp_path, "promptir3", [model])
    assert rc == 0
    calls: list[str] = []
    original = runner.load_pair
    monkeypatch.setattr(runner, "load_pair", lambda s, item: calls.append(item.name) or original(s, item))
    rc, again = run_cli(tmp_path, "promptir3", [model])
    assert rc == 0 and calls == []
    assert again["models"][0]["sets"] == first["models"][0]["sets"]
    # an interruption: the last image's line torn half-way
    scores = Path(first["models"][0]["sets"]["bsd68_sigma25"]["scores"])
    lines = scores.read_text().splitlines()
    scores.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    rc, resumed = run_cli(tmp_path, "promptir3", [model])
    assert rc == 0 and calls == ["im2"]
    assert (
        resumed["models"][0]["sets"]["bsd68_sigma25"]["psnr"]
        == first["models"][0]["sets"]["bsd68_sigma25"]["psnr"]
    )


def test_missing_sets_are_reported_with_their_layout_and_the_rest_runs(tmp_path: Path, capsys) -> None:
    suite = load_suite("promptir5")
    make_fixture(suite, tmp_path / "data", skip=("gopro", "sots_outdoor"))
    model = tiny_checkpoint(tmp_path / "m.safetensors")
    rc, result = run_cli(tmp_path, "promptir5", [model])
    out = capsys.readouterr().out
    assert rc == 0
    assert set(result["missing"]) == {"gopro", "sots_outdoor"}
    assert "missing test sets (2; the rest ran)" in out
    assert "blur" in result["missing"]["gopro"] and "sharp" in result["missing"]["gopro"]
    assert "SOTS/outdoor/hazy" in out
    sets = result["models"][0]["sets"]
    assert sets["rain100l"]["status"] == "ok" and sets["lol"]["status"] == "ok"
    table = result["tables"][0]
    measured = table["models"][0]["measured"]
    assert measured[0][0] is not None and measured[1] == [None, None] and measured[-1] == [None, None]
    assert table["models"][0]["compared_with"] == "PromptIR [40]"


def test_a_malformed_suite_names_the_problem() -> None:
    raw = {"title": "t", "sets": [{"name": "a", "clean": "x", "degrade": ["noise:sigma=999"]}], "tables": []}
    with pytest.raises(SuiteError, match="sigma"):
        parse_suite(raw, "bad")
    raw = {
        "title": "t",
        "sets": [{"name": "a", "clean": "x"}],
        "tables": [{"title": "T", "columns": [{"name": "A", "sets": ["b"]}]}],
    }
    with pytest.raises(SuiteError, match="unknown set 'b'"):
        parse_suite(raw, "bad")


DOCS = ("README.md", "docs/ram.md", "docs/adaptir.md", "docs/abair.md")


def doc_commands() -> list[tuple[str, list[str]]]:
    """The `anyrestore benchmark` commands of each doc's "Reproduce the papers' tables" section."""
    import shlex

    root = Path(__file__).resolve().parents[1]
    found = []
    for doc in DOCS:
        text = (root / doc).read_text(encoding="utf-8")
        start = text.index("## Reproduce the papers' tables")
        end = text.find("\n## ", start + 1)
        section = text[start : end if end > 0 else None].replace("\\\n", " ")
        for line in section.splitlines():
            if line.startswith("anyrestore benchmark "):
                found.append((doc, shlex.split(line)[1:]))
    return found


def test_the_docs_commands_run_on_the_fixtures(tmp_path: Path, monkeypatch, capsys) -> None:
    commands = doc_commands()
    assert {doc for doc, _ in commands} == set(DOCS)
    data = tmp_path / "datasets"
    for name in suite_names():
        make_fixture(load_suite(name), data)
    models = {1: tiny_checkpoint(tmp_path / "x1.safetensors")}
    models[4] = tiny_checkpoint(tmp_path / "x4.safetensors", "swinir", **_swinir(4))
    monkeypatch.chdir(tmp_path)
    for doc, argv in commands:
        suite = argv[argv.index("--suite") + 1]
        scale = 4 if suite in ("adaptir-sr", "adaptir-hybrid") else 1
        for i, arg in enumerate(argv[:-1]):
            if arg == "--model":
                argv[i + 1] = str(models[scale])
        assert main([*argv, "--quiet", "--out", str(tmp_path / "scores")]) == 0, (doc, argv)
        out = capsys.readouterr().out
        assert "(measured)" in out and "missing test sets" not in out, (doc, argv, out)


def test_adaptir_hybrid_inputs_are_the_recipes_pipeline(tmp_path: Path) -> None:
    """LR4&Noise30 test inputs are made as the training recipes make theirs (pipeline lr4_noise30_8bit)."""
    from anyrestore.benchmark.runner import list_items, load_pair
    from anyrestore.cli.degrade_cmd import file_seed
    from anyrestore.degrade import NAMED_PIPELINES, apply_sequence
    from anyrestore.io import read_image

    suite = load_suite("adaptir-hybrid")
    make_fixture(suite, tmp_path)
    test_set = suite.get_set("lr4_noise30_set5")
    item = list_items(test_set, tmp_path)[0]
    lq, gt = load_pair(test_set, item)
    generator = torch.Generator().manual_seed(file_seed(test_set.seed, item.source))
    steps = NAMED_PIPELINES["lr4_noise30_8bit"]
    expected, _ = apply_sequence(read_image(item.source).pixels[None], steps, generator=generator)
    assert torch.equal(lq, expected) and lq.shape[-1] * 4 == gt.shape[-1]
