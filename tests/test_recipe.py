"""Recipes: strict validation with dotted key paths, command-line overrides, packaged recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from anyrestore.cli.main import main
from anyrestore.data import PairedSetSpec, SyntheticSetSpec
from anyrestore.train import RecipeError, apply_overrides, load_recipe, packaged_recipes, recipe_from_dict
from anyrestore.train.recipe import EmaSection, recipe_differences

MINIMAL = {
    "name": "t",
    "model": {"architecture": "nafnet"},
    "data": {
        "train": {
            "batch_size": 2,
            "sets": [{"type": "synthetic", "clean": "photos", "degrade": ["noise"], "patch_size": 32}],
        }
    },
    "schedule": {"iterations": 100},
}


def _recipe(*overrides: str):
    return recipe_from_dict(apply_overrides(MINIMAL, overrides), "r.yaml")


def test_packaged_recipes_are_valid() -> None:
    recipes = packaged_recipes()
    assert {"tiny_denoise", "promptir_allinone", "swinir_allinone"} <= set(recipes)
    for name in recipes:
        recipe = load_recipe(name)
        assert recipe.name == name and recipe.description


def test_defaults_types_and_yaml_number_quirks() -> None:
    r = _recipe("optim.lr=2e-4", "schedule.iterations=1.2e6")  # YAML 1.1 reads both as text
    assert r.optim.lr == pytest.approx(2e-4) and isinstance(r.optim.lr, float)
    assert r.schedule.iterations == 1_200_000
    assert r.loss[0].name == "l1" and r.ema is None and r.precision == "fp32"
    (spec,) = r.data.train.sets
    assert isinstance(spec, SyntheticSetSpec) and spec.degrade == ["noise"] and spec.flip
    assert _recipe("ema.decay=0.99").ema == EmaSection(decay=0.99, start=0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "r.yaml: optim.lrr: unknown key; did you mean 'lr'?"),
        (
            "data.train.sets.0.patchsize=8",
            "data.train.sets.0.patchsize: unknown key; did you mean 'patch_size'?",
        ),
        (
            "data.train.sets.0.type=pairs",
            "data.train.sets.0.type: expected one of paired, synthetic, got 'pairs'",
        ),
        ("schedule.iterations=ten", "schedule.iterations: expected an integer, got 'ten'"),
        ("schedule.iterations=2.5", "schedule.iterations: expected an integer, got 2.5"),
        ("precision=fp8", "precision: 'fp8' is not one of 'fp32', 'bf16', 'fp16'"),
        ("optim.betas=[0.9]", "optim.betas: expected 2 values, got 1"),
        ("data.train.flip=true", "data.train.flip: unknown key; valid keys: sets, batch_size, mix"),
        ("schedule.warmup=100", "schedule.warmup: must lie in 0..iterations-1"),
        ("schedule.milestones=[10]", "schedule.milestones: applies to kind multistep only"),
        ("schedule.kind=cosine_restarts", "schedule.periods: cosine_restarts needs periods"),
        ("loss=[{name: l2}]", "loss.0.name: unknown loss 'l2'; known: l1, charbonnier, psnr, masked_l1"),
        ("loss=[{name: l1, eps: 0.001}]", "loss.0.eps: applies to charbonnier and psnr only"),
        ("loss={name: l1}", "loss: expected a list of mappings, got dict"),
        ("data.train.weights=[1]", "data.train.weights: apply to mix: weighted only"),
        ("model.architecture=null", "model.architecture: a value is required here"),
    ],
)
def test_errors_name_the_key(override: str, message: str) -> None:
    with pytest.raises(RecipeError) as info:
        _recipe(override)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_schedule_cross_checks_accept_valid_combinations() -> None:
    r = _recipe(
        "schedule.kind=cosine_restarts", "schedule.periods=[40,60]", "schedule.restart_weights=[1,0.5]"
    )
    assert r.schedule.periods == [40, 60]
    with pytest.raises(RecipeError, match=r"schedule.periods: must sum to iterations \(100\), not 90"):
        _recipe("schedule.kind=cosine_restarts", "schedule.periods=[40,50]")
    assert _recipe("schedule.kind=multistep", "schedule.milestones=[50,80]").schedule.gamma == 0.5


def test_missing_key_and_paired_union() -> None:
    data = {k: v for k, v in MINIMAL.items() if k != "schedule"}
    with pytest.raises(RecipeError, match="schedule: missing required key"):
        recipe_from_dict(data)
    r = _recipe(
        "data.train.sets.0={type: paired, task: rain, root: Rain13K, layout: input_target, patch_size: 64}"
    )
    assert r.data.train.sets[0] == PairedSetSpec(
        type="paired", task="rain", root="Rain13K", layout="input_target", patch_size=64
    )


def test_override_syntax_errors() -> None:
    with pytest.raises(RecipeError, match="override 'schedule': expected key=value"):
        apply_overrides(MINIMAL, ["schedule"])
    with pytest.raises(RecipeError, match=r"'data.train.sets.5' needs a list index in 0..0"):
        apply_overrides(MINIMAL, ["data.train.sets.5.patch_size=3"])
    with pytest.raises(RecipeError, match="'name' is a value, not a section"):
        apply_overrides(MINIMAL, ["name.x=1"])
    assert MINIMAL["schedule"] == {"iterations": 100}  # the input is left alone


def test_files_and_differences(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in MINIMAL.items() if k != "name"}))
    r = load_recipe(path, ["seed=3"])
    assert r.name == "mine" and r.seed == 3
    path.write_text("model: {architecture: nafnet\n")
    with pytest.raises(RecipeError, match=r"mine.yaml: line \d+: invalid YAML"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="no_such: no such recipe file or packaged recipe"):
        load_recipe("no_such")
    a, b = _recipe().to_dict(), _recipe("seed=1", "optim.lr=1e-3").to_dict()
    assert recipe_differences(a, b) == ["seed", "optim.lr"]
    assert recipe_from_dict(yaml.safe_load(_recipe().to_yaml())).to_dict() == a  # round trip


def test_recipes_command(capsys: pytest.CaptureFixture) -> None:
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    assert "tiny_denoise" in listing and "promptir_allinone" in listing
    assert main(["recipes", "tiny_denoise"]) == 0
    assert "architecture: nafnet" in capsys.readouterr().out
    assert main(["recipes", "nope"]) == 1
    assert "no packaged recipe 'nope'" in capsys.readouterr().err
