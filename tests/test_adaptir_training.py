"""Adapter training through the real engine on a tiny EDT, adapter files, and the adaptir_/petl_ recipes.

The run must change nothing but the adapter (every base weight bitwise equal afterwards), its adapter
file must rebuild the trained model exactly on the same base, and another base must be refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import anyrestore.methods.adaptir  # noqa: F401  (registers the "adapter" objective)
from anyrestore.adapters import METHODS, AdapterError, adapter_state_dict, remove, trainable_parameters
from anyrestore.inference import Restorer
from anyrestore.inference.adapters import (
    ADAPTER_FILE,
    adapted_restorer,
    export_adapter,
    load_adapted,
    load_adapted_model,
)
from anyrestore.methods.adaptir import AdapterObjective, adapter_objective
from anyrestore.models.checkpoint import load_model, read_checkpoint, save_model
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.zoo import resolve_model
from anyrestore.train import (
    CHECKPOINT_DIR,
    Objective,
    ObjectiveError,
    Trainer,
    load_recipe,
    packaged_recipes,
    recipe_from_dict,
)
from anyrestore.train.objective import build_objective

# A two-block EDT with an x2 SR task and a denoising task: the body is shared, the heads are per task.
TINY_EDT = {
    "scales": [2],
    "noise_levels": [30],
    "num_feat": 4,
    "embed_dim": 16,
    "depths": [2],
    "num_heads": [2],
    "window_size": [4, 8],
    "depth": 1,
    "img_size": 8,
    "drop_path_rate": 0.0,
    "upsampler": "pixelshuffledirect",
}
# One small option set per method (the tiny body is 16 wide).
SMALL = {
    "adaptir": {"reduction": 4},
    "lora": {"rank": 2},
    "adapter": {"hidden": 2},
    "adaptformer": {"hidden": 2},
    "ssf": {},
    "vpt": {"num_prompts": 2},
    "fact": {"rank": 2},
    "moe": {"hidden": 2},
}
HAS_END_HOOK = hasattr(Objective, "finish")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    for name in ("chelsea", "coffee"):
        im = Image.fromarray(getattr(data, name)())
        im.resize((im.width * 48 // im.height, 48), Image.Resampling.LANCZOS).save(root / f"{name}.png")
    return root


def _save_edt(path: Path, seed: int, **config: Any) -> Path:
    torch.manual_seed(seed)
    descriptor = ModelDescriptor.for_architecture("edt", {**TINY_EDT, **config})
    save_model(path, descriptor, descriptor.build())
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The "pre-trained" tiny EDT (random weights are as good as any for these checks)."""
    return _save_edt(tmp_path_factory.mktemp("base") / "base.safetensors", seed=1)


def _recipe(photos: Path, base: Path, method: str, iterations: int, **options: Any):
    return recipe_from_dict(
        {
            "name": f"tiny_{method}",
            "data_root": str(photos),
            "device": "cpu",
            "model": {"architecture": "edt", "config": dict(TINY_EDT), "pretrained": str(base)},
            "data": {
                "train": {
                    "sets": [
                        {
                            "type": "synthetic",
                            "task": "lr2_noise30",
                            "clean": ".",
                            "degrade": ["downsample:scale=2", "noise:sigma=30"],
                            "patch_size": 32,
                            "cache": True,
                        }
                    ],
                    "batch_size": 2,
                }
            },
            "optim": {"name": "adamw", "lr": 1e-2, "weight_decay": 0.01},
            "schedule": {
                "iterations": iterations,
                "kind": "multistep",
                "milestones": [iterations],
                "gamma": 0.5,
            },
            "method": {"name": "adapter", "options": {"method": method, **options}},
            "checkpoint": {"every": 1, "keep": 2},
            "log": {"every": 1, "tensorboard": False},
        }
    )


def _train(photos: Path, base: Path, out: Path, method: str, iterations: int = 2) -> Path:
    Trainer(_recipe(photos, base, method, iterations, **SMALL[method]), out, progress=False).run()
    return out


def _params(path: Path) -> dict[str, torch.Tensor]:
    contents, _ = read_checkpoint(path)
    return contents["params"]


@pytest.fixture(scope="module")
def adaptir_run(photos: Path, base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(photos, base, tmp_path_factory.mktemp("runs") / "adaptir", "adaptir", iterations=3)


def _adapter_file(run: Path) -> Path:
    """The adapter file the run wrote (engines without the end hook: exported from the final weights)."""
    path = run / ADAPTER_FILE
    return path if path.exists() else export_adapter(run / "model.safetensors")


# ------------------------------------------------------------------------------------------ training


@pytest.mark.parametrize("method", list(METHODS))
def test_only_the_adapter_trains(method: str, photos: Path, base: Path, tmp_path: Path) -> None:
    run = _train(photos, base, tmp_path / method, method)
    trained = load_adapted_model(run / "model.safetensors")
    saved = ModelDescriptor.from_metadata(read_checkpoint(run / "model.safetensors")[1])
    assert saved.adapters == trained.descriptor.adapters and saved.adapters[0]["method"] == method
    adapter_keys = set(adapter_state_dict(trained.module))
    trainable = {n for n, p in trained.module.named_parameters() if p.requires_grad}
    assert trainable and trainable <= adapter_keys

    # Between the two steps, adapter tensors moved and nothing else did.
    first, second = (_params(run / CHECKPOINT_DIR / f"iter_{i:08d}.safetensors") for i in (1, 2))
    assert first.keys() == second.keys()
    changed = {k for k in first if not torch.equal(first[k], second[k])}
    assert changed and changed <= adapter_keys, sorted(changed - adapter_keys)

    # Without the adapter, the trained model is the base, bit for bit (LoRA/FacT weights included).
    remove(trained.module)
    before = load_model(base).module.state_dict()
    after = trained.module.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before), method


def test_adapter_file_reproduces_the_trained_model(adaptir_run: Path, base: Path) -> None:
    trained = load_adapted_model(adaptir_run / "model.safetensors")
    adapted = load_adapted(base, _adapter_file(adaptir_run))
    assert adapted.descriptor.adapters == trained.descriptor.adapters
    x = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = trained.module(x), adapted.module(x)
        plain = load_model(base).module(x)
    assert torch.equal(want, got)
    assert not torch.allclose(want, plain)  # the adapter learned something: not the base's output
    restorer = adapted_restorer(base, _adapter_file(adaptir_run), tile=0)
    assert torch.equal(restorer(x), Restorer(trained, tile=0)(x))
    # The run's weights also open whole through anyrestore.load_model: the adapters' format plugin
    # rebuilds the recorded adapter (the models layer alone refuses them; tests/test_layering.py).
    whole = resolve_model(adaptir_run / "model.safetensors")
    assert whole.descriptor.adapters == trained.descriptor.adapters
    with torch.no_grad():
        assert torch.equal(whole.module(x), want)


@pytest.mark.skipif(not HAS_END_HOOK, reason="the engine does not call Objective.finish yet")
def test_run_writes_the_adapter_file(adaptir_run: Path) -> None:
    meta_file = adaptir_run / ADAPTER_FILE
    assert (
        meta_file.exists() and meta_file.stat().st_size < (adaptir_run / "model.safetensors").stat().st_size
    )


def test_adapter_on_another_base_is_refused(adaptir_run: Path, base: Path, tmp_path: Path) -> None:
    adapter = _adapter_file(adaptir_run)
    wider = _save_edt(tmp_path / "wider.safetensors", seed=2, embed_dim=24)
    with pytest.raises(AdapterError, match="(?i)adapter was trained on edt") as info:
        load_adapted(wider, adapter)
    assert "\n" not in str(info.value)
    nafnet = ModelDescriptor.for_architecture(
        "nafnet", {"width": 8, "enc_blk_nums": [1], "dec_blk_nums": [1]}
    )
    save_model(tmp_path / "nafnet.safetensors", nafnet, nafnet.build())
    with pytest.raises(AdapterError, match="(?i)not this nafnet"):
        load_adapted(tmp_path / "nafnet.safetensors", adapter)
    with pytest.raises(AdapterError, match="already carries an adapter"):
        load_adapted(adaptir_run / "model.safetensors", adapter)
    # Same architecture and shapes, other weights: accepted (identity is the shapes, not the values).
    load_adapted(_save_edt(tmp_path / "same.safetensors", seed=3), adapter)


def test_objective_options_are_checked() -> None:
    with pytest.raises(ObjectiveError, match="method.options.method: missing"):
        adapter_objective({})
    with pytest.raises(ObjectiveError, match="unknown adapter method 'loha'"):
        build_objective("adapter", {"method": "loha"})
    with pytest.raises(ObjectiveError, match=r"method.options: lora: unknown option\(s\) rnk"):
        build_objective("adapter", {"method": "lora", "rnk": 4})
    assert isinstance(build_objective("adapter", {"method": "lora", "rank": 4}), AdapterObjective)


# ------------------------------------------------------------------------------------------- recipes

RECIPES = sorted(n for n in packaged_recipes() if n.startswith(("adaptir_", "petl_")))
RGB_TASKS = ("denoise", "lowlight")


def test_the_paper_tasks_have_recipes() -> None:
    tasks = ("sr2", "sr3", "sr4", "denoise30", "denoise50", "derain_light", "derain_heavy", "lowlight")
    expected = {f"adaptir_ipt_{t}" for t in (*tasks, "lr4_noise30", "lr4_jpeg30")}
    expected |= {f"adaptir_edt_{t}" for t in ("sr2", "sr3", "sr4", "lr4_noise30", "lr4_jpeg30")}
    expected |= {f"petl_{m}_{b}" for m in METHODS if m != "adaptir" for b in ("ipt", "edt")}
    assert expected <= set(RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_loads_and_follows_the_paper(name: str) -> None:
    recipe = load_recipe(name)
    objective = build_objective(recipe.method.name, recipe.method.options)
    assert isinstance(objective, AdapterObjective)
    assert recipe.model.architecture in ("ipt", "edt") and recipe.model.pretrained
    descriptor = ModelDescriptor.for_architecture(recipe.model.architecture, recipe.model.config)
    (train_set,) = recipe.data.train.sets
    assert train_set.patch_size == 48 * descriptor.scale  # LR patch 48
    assert (recipe.optim.name, recipe.optim.lr, recipe.data.train.batch_size) == ("adamw", 1e-4, 16)
    s = recipe.schedule
    assert s.kind == "multistep" and s.gamma == 0.5 and s.iterations % 500 == 0
    assert s.milestones == [s.iterations // 500 * e for e in (250, 400, 450, 475)]
    assert [t.name for t in recipe.loss] == ["l1"] and recipe.ema is None
    val = recipe.data.val
    assert val.preset == ("rgb" if any(t in name for t in RGB_TASKS) else "basicsr")
    assert val.crop_border == (descriptor.scale if descriptor.scale > 1 else 0)


LR4_NOISE30 = [n for n in RECIPES if load_recipe(n).data.train.sets[0].task == "lr4_noise30"]


@pytest.mark.parametrize("name", LR4_NOISE30)
def test_lr4_noise30_inputs_are_8_bit_as_in_the_release(name: str, tmp_path: Path) -> None:
    """AdaptIR's release adds the noise to the 8-bit bicubic LR image and stores the result in 8 bits (the
    paper does not say); the recipes train and validate on such inputs, as the benchmark tests on them."""
    from anyrestore.data import SyntheticDataset, make_generator, parse_steps
    from anyrestore.degrade import apply_pipeline, apply_sequence

    recipe = load_recipe(name)
    specs = [recipe.data.train.sets[0].degrade, *(v.degrade for v in recipe.data.val.sets)]
    assert all(spec == ["pipeline:lr4_noise30_8bit"] for spec in specs), specs
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        tmp_path / "hr.png"
    )
    data = SyntheticDataset([tmp_path / "hr.png"], parse_steps(specs[0], "t"), patch_size=32)
    lq = data.sample(0, make_generator(0))["lq"]
    assert lq.shape == (3, 8, 8) and torch.equal(lq, torch.round(lq * 255) / 255)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    steps = ["downsample:scale=4", "quantize:bits=8", "noise:sigma=30", "quantize:bits=8"]
    by_hand, _ = apply_sequence(x, steps, generator=torch.Generator().manual_seed(5))
    piped, _ = apply_pipeline(x, "lr4_noise30_8bit", generator=torch.Generator().manual_seed(5))
    assert torch.equal(piped, by_hand)


@pytest.fixture(scope="module")
def meta_bases() -> dict[str, torch.nn.Module]:
    with torch.device("meta"):
        return {arch: ModelDescriptor.for_architecture(arch).build() for arch in ("ipt", "edt")}


@pytest.mark.parametrize("name", [n for n in RECIPES if n.startswith("petl_") or n.endswith("_lr4_noise30")])
def test_recipe_states_its_parameter_count(name: str, meta_bases: dict[str, torch.nn.Module]) -> None:
    recipe = load_recipe(name)
    stated = int(re.search(r"([\d,]+) trainable parameters", recipe.description).group(1).replace(",", ""))
    model = meta_bases[recipe.model.architecture]
    AdapterObjective(**recipe.method.options).prepare_model(model)
    try:
        assert trainable_parameters(model) == stated
    finally:
        remove(model)


def test_restore_cli_applies_the_adapter(adaptir_run: Path, base: Path, tmp_path: Path) -> None:
    from anyrestore.cli.main import main
    from anyrestore.io import read_image, write_image

    x = torch.rand(3, 24, 40, generator=torch.Generator().manual_seed(1))
    write_image(tmp_path / "in.png", x, bit_depth=16)
    args = ["restore", str(tmp_path / "in.png"), "--model", str(base), "--tile", "0", "--quiet"]
    assert main([*args, "-o", str(tmp_path / "plain")]) == 0
    assert main([*args, "--adapter", str(_adapter_file(adaptir_run)), "-o", str(tmp_path / "adapted")]) == 0
    adapted = read_image(tmp_path / "adapted" / "in.png").pixels
    want = adapted_restorer(base, _adapter_file(adaptir_run), tile=0)(read_image(tmp_path / "in.png").pixels)
    assert torch.allclose(adapted, want, atol=1 / 65535)
    assert not torch.allclose(adapted, read_image(tmp_path / "plain" / "in.png").pixels, atol=1e-3)
    # --model on the run's own weights (base + adapter in one file) gives the same photo.
    whole = ["restore", str(tmp_path / "in.png"), "--model", str(adaptir_run / "model.safetensors")]
    assert main([*whole, "--tile", "0", "--quiet", "-o", str(tmp_path / "whole")]) == 0
    assert torch.allclose(read_image(tmp_path / "whole" / "in.png").pixels, adapted, atol=1 / 65535)
