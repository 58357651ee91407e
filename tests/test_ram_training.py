"""RAM's training stages through the real engine: masked pre-training, selective fine-tuning, recipes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

import anyrestore.methods.ram.objectives  # noqa: F401  (registers ram_pretrain / ram_finetune)
from anyrestore.attribution import freeze_plan, random_ranking, read_ranking
from anyrestore.cli.main import main
from anyrestore.methods.ram import RamFinetune, RamPretrain, random_pixel_mask
from anyrestore.models import build_model
from anyrestore.models.checkpoint import load_model, read_checkpoint
from anyrestore.models.registry import IMAGENET_MEAN, IMAGENET_STD
from anyrestore.train import CHECKPOINT_DIR, ObjectiveError, Trainer, list_checkpoints, load_recipe
from anyrestore.train.objective import build_objective

SMALL = [  # 32x32 crops, batch 4 (one per task stream), no validation
    "data.val=null",
    "data.train.batch_size=4",
    *(f"data.train.sets.{i}.patch_size=32" for i in range(4)),
    "schedule.warmup=1",
    "log.every=1",
]
TINY_PROMPTIR = (
    "model={architecture: ram_promptir, config: {dim: 8, num_blocks: [1, 1, 1, 1], num_refinement_blocks: 1,"
    " heads: [1, 1, 1, 1], prompt_len: 2, prompt_dims: [8, 16, 32], prompt_sizes: [8, 4, 2]}}"
)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """chelsea, coffee, rocket (96 px high) to train on; astronaut (64 px) held out."""
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    (root / "train").mkdir()
    (root / "val").mkdir()
    for name in ("chelsea", "coffee", "rocket"):
        im = Image.fromarray(getattr(data, name)())
        im.resize((im.width * 96 // im.height, 96), Image.Resampling.LANCZOS).save(
            root / "train" / f"{name}.png"
        )
    Image.fromarray(data.astronaut()).resize((64, 64)).save(root / "val" / "astronaut.png")
    return root


def _recipe(name: str, root: Path, *overrides: str):
    return load_recipe(name, [f"data_root={root}", *SMALL, *overrides])


def _train(name: str, root: Path, out: Path, *overrides: str, resume: bool = False, objective=None):
    recipe = _recipe(name, root, *overrides)
    return Trainer(recipe, out, resume=resume, objective=objective, progress=False).run()


def _params(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)[0]["params"]


@pytest.fixture(scope="module")
def pretrained(photo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pretrain")
    return _train("ram_tiny_pretrain", photo_root, out, "schedule.iterations=8").weights


# ------------------------------------------------------------------------------------------ pre-training


class _Spy(RamPretrain):
    """ram_pretrain that also recomputes every step's loss by hand from the same mask draw."""

    def __init__(self) -> None:
        super().__init__(0.5, 1)
        self.steps: list[tuple[float, float]] = []

    def loss(self, model, batch, ctx):
        state = ctx.generators("mask").get_state()
        loss, parts = super().loss(model, batch, ctx)
        lq, gt = batch["lq"], batch["gt"]
        mask = random_pixel_mask(lq, 0.5, generator=torch.Generator().set_state(state))
        n, _, h, w = lq.shape
        assert mask.shape == (n, 1, h, w) and mask.flatten(1).sum(1).tolist() == [h * w / 2] * n
        imagenet = hasattr(model, "inner")  # the engine wraps ImageNet-normalised models
        mean = torch.tensor(IMAGENET_MEAN if imagenet else (0.0, 0.0, 0.0)).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD if imagenet else (1.0, 1.0, 1.0)).view(1, 3, 1, 1)
        bare = model.inner if imagenet else model
        seen = ((lq - mean) / std) * (1 - mask)  # hidden pixels: exactly 0 in the model's input space
        with torch.no_grad():
            pred = bare(seen) * std + mean
        hand = ((pred - gt).abs() * mask).sum() / (mask.sum() * 3)
        self.steps.append((float(loss.detach()), float(hand)))
        return loss, parts


@pytest.mark.parametrize("model", ["nafnet", "ram_promptir"])
def test_pretrain_loss_is_masked_l1_of_the_masked_input(photo_root: Path, tmp_path: Path, model: str) -> None:
    spy = _Spy()
    extra = [TINY_PROMPTIR] if model == "ram_promptir" else []
    _train("ram_tiny_pretrain", photo_root, tmp_path, "schedule.iterations=3", *extra, objective=spy)
    assert len(spy.steps) == 3
    for engine, hand in spy.steps:
        assert engine == pytest.approx(hand, rel=1e-5)
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [e["loss"] for e in logged] == pytest.approx([engine for engine, _ in spy.steps], rel=1e-6)
    descriptor = load_model(tmp_path / "model.safetensors").descriptor
    assert descriptor.extra["ram_pretrain"] == {"ratio": 0.5, "patch": 1}


def test_pretrain_masks_resume_exactly(photo_root: Path, tmp_path: Path) -> None:
    steps = ["schedule.iterations=6", "checkpoint.every=2", "checkpoint.keep=10"]
    reference = tmp_path / "reference"
    _train("ram_tiny_pretrain", photo_root, reference, *steps)
    final = _params(reference / "model.safetensors")

    def cut_back(name: str) -> Path:  # the run as if interrupted after its checkpoint at iteration 2
        run = tmp_path / name
        shutil.copytree(reference, run)
        (run / "model.safetensors").unlink()
        for c in list_checkpoints(run / CHECKPOINT_DIR)[1:]:
            c.weights.unlink()
            c.state.unlink()
        return run

    resumed = cut_back("resumed")
    _train("ram_tiny_pretrain", photo_root, resumed, *steps, resume=True)
    for name, tensor in _params(resumed / "model.safetensors").items():
        assert torch.equal(tensor, final[name]), name

    # The same with the mask generator's saved state replaced: the masks, hence the weights, differ.
    reseeded = cut_back("reseeded")
    state_file = list_checkpoints(reseeded / CHECKPOINT_DIR)[0].state
    state = torch.load(state_file, weights_only=True)
    state["rng"][0]["generators"]["mask"] = torch.Generator().manual_seed(123).get_state()
    torch.save(state, state_file)
    _train("ram_tiny_pretrain", photo_root, reseeded, *steps, resume=True)
    changed = _params(reseeded / "model.safetensors")
    assert any(not torch.equal(tensor, final[name]) for name, tensor in changed.items())


def test_pretrain_needs_the_masked_loss(photo_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ObjectiveError, match=r"set loss: \[\{name: masked_l1\}\]"):
        _train("ram_tiny_pretrain", photo_root, tmp_path, "schedule.iterations=2", "loss=[{name: l1}]")


# ------------------------------------------------------------------------------------------- fine-tuning


def test_finetune_trains_exactly_the_selected_units(
    photo_root: Path, pretrained: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ranking_file = tmp_path / "mac.tsv"
    data = f"clean={photo_root / 'train'},ops=noise:sigma=25+jpeg:quality=30"
    mac = [
        "mac",
        "--model",
        str(pretrained),
        "--data",
        data,
        "--per-task",
        "1",
        "--crop",
        "32",
        "--steps",
        "4",
    ]
    assert main([*mac, "-o", str(ranking_file), "--quiet"]) == 0
    capsys.readouterr()

    out = tmp_path / "finetune"
    overrides = [f"model.pretrained={pretrained}", f"method.options={{ranking: {ranking_file}, ratio: 0.1}}"]
    _train("ram_tiny_finetune", photo_root, out, "schedule.iterations=3", *overrides)
    printed = capsys.readouterr().out
    assert f"ram_finetune: ranking {ranking_file} (mac), top 10% of units: 5 of 51 units" in printed

    model = build_model("nafnet", **load_recipe("ram_tiny_finetune").model.config)
    plan = freeze_plan(model, read_ranking(ranking_file), 0.1)
    before, after = _params(pretrained), _params(out / "model.safetensors")
    trained = {name for name in after if name.rpartition(".")[0] in plan.trainable}
    assert trained and len(trained) < len(after)
    for name, tensor in after.items():
        assert torch.equal(tensor, before[name]) == (name not in trained), name

    record = load_model(out / "model.safetensors").descriptor.extra["ram_finetune"]
    assert record["ratio"] == 0.1 and record["units"] == 5 and record["of_units"] == 51
    assert record["ranking"] == "mac" and record["parameters"] == sum(before[n].numel() for n in trained)


def _trainable(objective: RamFinetune, model: torch.nn.Module) -> set[str]:
    objective.prepare_model(model)
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_finetune_rankings_from_files_release_names_and_start_up(
    photo_root: Path, pretrained: Path, tmp_path: Path
) -> None:
    model = load_model(pretrained).module
    expected = random_ranking(model, seed=5)
    plan = freeze_plan(model, expected, 0.2)
    selected = {n for n, _ in model.named_parameters() if n.rpartition(".")[0] in plan.trainable}

    at_start = build_objective("ram_finetune", {"method": "random", "seed": 5, "ratio": 0.2})
    assert _trainable(at_start, model) == selected

    # RAM's released rankings: a plain list of names as seen under DDP ('module.' prefix).
    release = tmp_path / "release.txt"
    release.write_text("".join(f"module.{unit}\n" for unit in expected.units))
    from_file = build_objective("ram_finetune", {"ranking": str(release), "ratio": 0.2})
    assert _trainable(from_file, model) == selected

    # MAC computed when the run starts equals MAC from 'anyrestore mac' with the same settings.
    data = f"clean={photo_root / 'train'},ops=noise:sigma=25"
    tsv = tmp_path / "mac.tsv"
    flags = ["--per-task", "1", "--crop", "32", "--steps", "4", "--seed", "2"]
    assert main(["mac", "--model", str(pretrained), "--data", data, *flags, "-o", str(tsv), "--quiet"]) == 0
    options = {
        "method": "mac",
        "data": [data],
        "per_task": 1,
        "crop": 32,
        "steps": 4,
        "seed": 2,
        "ratio": 0.3,
    }
    computed = _trainable(build_objective("ram_finetune", options), model)
    assert computed == _trainable(build_objective("ram_finetune", {"ranking": str(tsv), "ratio": 0.3}), model)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ratio": 0.1}, "needs exactly one of 'ranking'"),
        ({"ranking": "a.tsv", "method": "mac"}, "needs exactly one of 'ranking'"),
        ({"method": "gradcam"}, "method.options.method: expected one of mac, ig, random, got 'gradcam'"),
        ({"method": "random", "ratio": 1.5}, "method.options.ratio: ram_finetune needs a number in [0, 1]"),
        ({"method": "random", "ratios": 0.1}, "method.options.ratios: unknown option of ram_finetune"),
        ({"method": "mac", "steps": 1}, "method.options.steps: ram_finetune needs an integer"),
    ],
)
def test_finetune_option_errors(options: dict, message: str) -> None:
    with pytest.raises(ObjectiveError, match=message.replace("[", r"\[").replace("(", r"\(")):
        build_objective("ram_finetune", options)


def test_pretrain_option_errors_and_bad_rankings(tmp_path: Path) -> None:
    with pytest.raises(ObjectiveError, match="method.options.ratio: ram_pretrain needs a number"):
        build_objective("ram_pretrain", {"ratio": -0.1})
    with pytest.raises(ObjectiveError, match="method.options.mask: unknown option of ram_pretrain"):
        build_objective("ram_pretrain", {"mask": "block"})
    model = build_model("nafnet", width=8, enc_blk_nums=[1, 1], middle_blk_num=1, dec_blk_nums=[1, 1])
    other = tmp_path / "other.txt"
    other.write_text("encoder_level1.0.attn.qkv\n")
    objective = build_objective("ram_finetune", {"ranking": str(other)})
    with pytest.raises(ObjectiveError, match="names 1 unit\\(s\\) the model does not have"):
        objective.prepare_model(model)
    with pytest.raises(ObjectiveError, match="method.options.data: ranking by mac at start-up needs data"):
        build_objective("ram_finetune", {"method": "mac"}).prepare_model(model)


# ------------------------------------------------------------------------------------------------ recipes

# The released code's settings (DragonisCV/RAM), which the packaged recipes follow; the *_paper variants
# follow the paper's text where it differs (PAPER_VARIANTS below).
RELEASE = {  # recipe: (architecture, objective, global batch, patch, lr, min_lr, iterations, warm-up, ratio)
    "ram_promptir_pretrain": ("ram_promptir", RamPretrain, 32, 128, 2e-4, 1e-6, 1_200_000, 40_000, None),
    "ram_swinir_pretrain": ("ram_swinir", RamPretrain, 96, 64, 1e-4, 6e-5, 400_000, 0, None),
    "ram_promptir_finetune": ("ram_promptir", RamFinetune, 32, 128, 2e-4, 1e-7, 160_000, 4_000, 0.3),
    "ram_swinir_finetune": ("ram_swinir", RamFinetune, 32, 64, 2e-4, 1e-7, 160_000, 4_000, 0.1),
}


@pytest.mark.parametrize("name", [*RELEASE, "ram_tiny_pretrain", "ram_tiny_finetune"])
def test_recipes_load_and_validate(name: str) -> None:
    recipe = load_recipe(name)
    objective = build_objective(recipe.method.name, recipe.method.options)
    pretrain = isinstance(objective, RamPretrain)
    assert [t.name for t in recipe.loss] == (["masked_l1"] if pretrain else ["l1"])
    if pretrain:
        assert (objective.ratio, objective.patch) == (0.5, 1)
    else:
        assert recipe.model.pretrained and objective.ranking_path
    if name not in RELEASE:
        assert recipe.device == "cpu" and recipe.schedule.iterations <= 500
        return
    arch, kind, batch, patch, lr, min_lr, iterations, warmup, ratio = RELEASE[name]
    assert recipe.model.architecture == arch and isinstance(objective, kind)
    assert recipe.data.train.batch_size == batch and recipe.data.train.mix == "round_robin"
    assert {s.patch_size for s in recipe.data.train.sets} == {patch}
    assert [s.task for s in recipe.data.train.sets] == [
        "haze", "rain", "motion_blur", "low_light", "low_light", "clean", "noise", "blur", "jpeg"
    ]  # fmt: skip
    assert (recipe.optim.name, recipe.optim.lr, recipe.optim.betas) == ("adam", lr, (0.9, 0.99))
    s = recipe.schedule
    assert (s.kind, s.min_lr, s.iterations, s.warmup) == ("cosine", min_lr, iterations, warmup)
    assert recipe.ema is not None and recipe.ema.decay == 0.995
    if ratio is not None:
        assert objective.ratio == ratio


# recipe -> the dotted keys in which its *_paper variant differs (besides the description): the schedule
# where the paper's text gives another (PromptIR pre-training: 1e-4 -> 6e-5, no warm-up, against the
# release's 2e-4 -> 1e-6 with 40k warm-up), the synthesised streams' ranges, and the files a stage 2 reads.
PAPER_VARIANTS = {
    "ram_promptir_pretrain": {"optim.lr", "schedule.warmup", "schedule.min_lr", "data.train.sets"},
    "ram_swinir_pretrain": {"data.train.sets"},
    "ram_promptir_finetune": {"data.train.sets", "model.pretrained", "method.options.ranking"},
    "ram_swinir_finetune": {"data.train.sets", "model.pretrained", "method.options.ranking"},
}


@pytest.mark.parametrize("name", PAPER_VARIANTS)
def test_paper_variants_load_and_differ_where_the_paper_does(name: str) -> None:
    from anyrestore.degrade import sample_params
    from anyrestore.train.recipe import find_recipe, read_recipe_data, recipe_differences

    release, paper = (read_recipe_data(find_recipe(n)) for n in (name, f"{name}_paper"))
    assert set(recipe_differences(release, paper)) == {"description", *PAPER_VARIANTS[name]}
    recipe = load_recipe(f"{name}_paper")
    build_objective(recipe.method.name, recipe.method.options)
    s = recipe.schedule
    if "pretrain" in name:
        assert (recipe.optim.lr, s.min_lr, s.warmup, s.kind) == (1e-4, 6e-5, 0, "cosine")  # paper, Sec. 4.1
    else:
        assert (recipe.optim.lr, s.min_lr) == (2e-4, 1e-7) and "_paper/" in recipe.model.pretrained
    synthesised = {t.task: t.degrade for t in recipe.data.train.sets if t.type == "synthetic" and t.degrade}
    assert synthesised == {op: [f"{op}:preset=ram_paper"] for op in ("noise", "blur", "jpeg")}

    g = torch.Generator().manual_seed(0)

    def draws(op: str, key: str, preset: str) -> list[float]:
        return [float(sample_params(op, g, preset=preset)[key]) for _ in range(300)]

    noise, blur = draws("noise", "sigma", "ram_paper"), draws("blur", "sigma", "ram_paper")
    jpeg = draws("jpeg", "quality", "ram_paper")
    assert min(noise) >= 0 and max(noise) <= 50 and any(v != round(v) for v in noise)  # sigma in (0, 50]
    assert 0.1 <= min(blur) < 2.0 and max(blur) <= 3.1  # the paper's mild blur, absent from the release
    assert min(jpeg) >= 20 and max(jpeg) <= 90
    assert min(draws("blur", "sigma", "ram")) >= 2.0 and min(draws("jpeg", "quality", "ram")) < 20
    assert all(v == round(v) for v in draws("noise", "sigma", "ram"))
