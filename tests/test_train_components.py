"""Parts of the engine in isolation: schedules, losses, EMA, precision, checkpoint files, RNG states,
validation and the objective registry."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from anyrestore.data import RestorationDataset
from anyrestore.evaluate import psnr
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.padding import pad_to_multiple
from anyrestore.train import (
    GeneratorBank,
    LRSchedule,
    ModelEMA,
    ObjectiveError,
    Precision,
    StepContext,
    WeightedLoss,
    list_checkpoints,
    load_latest_checkpoint,
)
from anyrestore.train.checkpoints import capture_rng, prune_checkpoints, restore_rng, save_checkpoint
from anyrestore.train.distributed import DistContext
from anyrestore.train.losses import LossError, charbonnier_loss, l1_loss, masked_l1_loss, psnr_loss
from anyrestore.train.objective import build_objective
from anyrestore.train.recipe import LossTerm
from anyrestore.train.validate import restore_whole, validate

# ------------------------------------------------------------------------------------------ schedule


def test_warmup_then_cosine_as_basicsr() -> None:
    s = LRSchedule(base_lr=2e-4, iterations=1000, warmup=100, kind="cosine", min_lr=1e-6)
    assert s(1) == pytest.approx(2e-6) and s(50) == pytest.approx(1e-4) and s(100) == pytest.approx(2e-4)
    # after warm-up the curve continues as a function of the whole run (BasicSR's convention)
    assert s(101) == pytest.approx(1e-6 + (2e-4 - 1e-6) * 0.5 * (1 + math.cos(math.pi * 101 / 1000)))
    assert s(500) == pytest.approx((2e-4 + 1e-6) / 2)
    assert s(1000) == pytest.approx(1e-6)


def test_restarts_multistep_and_constant() -> None:
    s = LRSchedule(1.0, 100, kind="cosine_restarts", periods=(40, 60), restart_weights=(1.0, 0.5), min_lr=0.0)
    assert s(20) == pytest.approx(0.5) and s(40) == pytest.approx(0.0)
    assert s(41) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi / 60)))
    assert s(70) == pytest.approx(0.25)
    m = LRSchedule(1.0, 500, kind="multistep", milestones=(250, 400, 450, 475), gamma=0.5)  # AdaptIR
    assert [m(i) for i in (249, 250, 399, 400, 460, 500)] == [1.0, 0.5, 0.5, 0.25, 0.125, 0.0625]
    assert LRSchedule(3.0, 10, warmup=2, kind="constant")(5) == 3.0


# -------------------------------------------------------------------------------------------- losses


def test_losses_match_their_formulas() -> None:
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    d = pred - target
    assert l1_loss(pred, target) == pytest.approx(float(d.abs().mean()))
    assert charbonnier_loss(pred, pred, eps=1e-3) == pytest.approx(1e-3)
    assert charbonnier_loss(pred, target) == pytest.approx(float(torch.sqrt(d * d + 1e-6).mean()), rel=1e-6)
    expected = -psnr(pred, target, "rgb").mean()  # on quantised images; the loss is on floats: close
    assert psnr_loss(pred, target) == pytest.approx(float(expected), abs=0.05)
    # eps caps what a near-perfect image is worth: a clean input left exactly alone scores -30 dB, not -80.
    assert psnr_loss(pred, pred, eps=1e-3) == pytest.approx(-30.0)
    assert psnr_loss(pred, pred) == pytest.approx(-80.0)
    mse = d.pow(2).flatten(1).mean(1)
    assert psnr_loss(pred, target, eps=1e-3) == pytest.approx(float(10 * torch.log10(mse + 1e-3).mean()))

    mask = (torch.rand(2, 1, 8, 8, generator=g) < 0.5).float()
    by_hand = (d.abs() * mask).sum() / (mask.sum() * 3)
    assert masked_l1_loss(pred, target, mask) == pytest.approx(float(by_hand))
    assert masked_l1_loss(pred, target + 5 * (1 - mask), mask) == pytest.approx(float(by_hand))
    with pytest.raises(LossError, match="masked_l1 needs a mask"):
        masked_l1_loss(pred, target)

    total, parts = WeightedLoss.from_terms([LossTerm("l1", 2.0), LossTerm("charbonnier", 0.5, eps=0.1)])(
        pred, target
    )
    assert set(parts) == {"l1", "charbonnier"}
    assert float(total) == pytest.approx(2 * float(parts["l1"]) + 0.5 * float(parts["charbonnier"]))


# ----------------------------------------------------------------------------------------------- EMA


def test_ema_average_start_and_buffers() -> None:
    model = nn.BatchNorm2d(2)
    ema = ModelEMA(model, decay=0.9, start=2)
    assert all(not p.requires_grad for p in ema.module.parameters())
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.running_mean.fill_(7.0)
    ema.update(model, iteration=1)  # before start: follow the weights
    assert torch.equal(ema.module.weight, model.weight) and torch.equal(
        ema.module.running_mean, model.running_mean
    )
    with torch.no_grad():
        model.weight.fill_(12.0)
    ema.update(model, iteration=2)
    torch.testing.assert_close(ema.module.weight, torch.full((2,), 0.9 * 2.0 + 0.1 * 12.0))
    with pytest.raises(ValueError, match="decay must lie in"):
        ModelEMA(model, decay=1.0)


def test_ema_warmup_lets_a_short_run_forget_its_start() -> None:
    """With warmup the decay ramps as (1 + n) / (10 + n) up to ``decay``: after 300 updates towards new
    weights the average holds almost none of the start (a fixed 0.999 would still hold 74% of it)."""
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    later = ModelEMA(model, decay=0.999, start=5, warmup=True)
    assert [later.decay_at(i) for i in (4, 5, 6, 10_000)] == [0.0, 0.1, 2 / 11, 0.999]
    plain, ramped = ModelEMA(model, decay=0.999), ModelEMA(model, decay=0.999, warmup=True)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for iteration in range(1, 301):
        plain.update(model, iteration)
        ramped.update(model, iteration)
    assert float(plain.module.weight) == pytest.approx(1 - 0.999**300, rel=1e-4)  # 0.26
    assert float(ramped.module.weight) > 0.95


# ----------------------------------------------------------------------------------------- precision


def test_precision_modes_on_cpu() -> None:
    conv = nn.Conv2d(3, 3, 3)
    x = torch.rand(1, 3, 8, 8)
    bf16 = Precision.create("bf16", torch.device("cpu"))
    with bf16.autocast():
        assert conv(x).dtype == torch.bfloat16
    assert bf16.scaler is None and bf16.state_dict() == {}
    fp16 = Precision.create("fp16", torch.device("cpu"))
    assert fp16.scaler is not None and "scale" in fp16.state_dict()
    with Precision.create("fp32", torch.device("cpu")).autocast():
        assert conv(x).dtype == torch.float32


# --------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_pairs_commit_prune_and_load(tmp_path: Path) -> None:
    model = nn.Conv2d(3, 3, 1)
    descriptor = ModelDescriptor.for_architecture("nafnet", {"width": 8})
    for it in (10, 20, 30):
        save_checkpoint(tmp_path, it, descriptor, model.state_dict(), None, {"optimizer": {}, "marker": it})
    (tmp_path / "iter_00000040.safetensors").write_bytes(b"weights without state")  # crash before commit
    (tmp_path / ".iter_00000040.state.pt.x.tmp").write_bytes(b"")
    assert [c.iteration for c in list_checkpoints(tmp_path)] == [10, 20, 30]
    loaded = load_latest_checkpoint(tmp_path)
    assert loaded.files.iteration == 30 and loaded.state["marker"] == 30 and loaded.params_ema is None
    assert torch.equal(loaded.params["weight"], model.weight)

    prune_checkpoints(tmp_path, keep=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "iter_00000020.safetensors",
        "iter_00000020.state.pt",
        "iter_00000030.safetensors",
        "iter_00000030.state.pt",
        "iter_00000040.safetensors",  # newer than the newest complete one: may still be committed
    ]


def test_rng_states_round_trip() -> None:
    bank = GeneratorBank(seed=0, rank=0, device=torch.device("cpu"))
    bank("mask")
    state = capture_rng(torch.device("cpu"), bank.state_dict())
    expected = (
        random.random(),
        np.random.rand(),
        torch.rand(1).item(),
        torch.rand(1, generator=bank("mask")).item(),
    )
    torch.manual_seed(123), np.random.seed(5), random.seed(9)
    restore_rng(state, torch.device("cpu"))
    other = GeneratorBank(seed=99, rank=3, device=torch.device("cpu"))
    other.load_state_dict(state["generators"])
    again = (
        random.random(),
        np.random.rand(),
        torch.rand(1).item(),
        torch.rand(1, generator=other("mask")).item(),
    )
    assert again == expected


# ---------------------------------------------------------------------------------------- validation


class _Pairs(RestorationDataset):
    def __init__(self, task: str, sigma: float, n: int) -> None:
        super().__init__()
        self.task, self.sigma, self.n = task, sigma, n

    def __len__(self) -> int:
        return self.n

    def sample(self, index: int, generator: torch.Generator) -> dict:
        gt = torch.rand(3, 21, 19, generator=generator)
        lq = (gt + self.sigma * torch.randn(3, 21, 19, generator=generator)).clamp(0, 1)
        return {"lq": lq, "gt": gt, "task": self.task, "path": str(index)}


def test_validation_is_per_task_then_averaged() -> None:
    sets = [_Pairs("a", 0.05, 3), _Pairs("b", 0.2, 2)]
    seen = []

    class Identity(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(x.shape[-2:]))
            return x

    results = validate(Identity(), sets, ctx=DistContext(), preset="rgb", crop_border=2, multiple=8)
    assert set(seen) == {(24, 24)}  # padded to the model's multiple, cropped back for the metric
    for d in sets:
        scores = [float(psnr(d[i]["lq"], d[i]["gt"], "rgb", 2)) for i in range(len(d))]
        assert results[f"psnr/{d.task}"] == pytest.approx(np.mean(scores))
    assert results["psnr"] == pytest.approx((results["psnr/a"] + results["psnr/b"]) / 2)
    assert 0 < results["ssim/b"] < results["ssim/a"] < 1


class _Recorder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x)
        return x


def test_validation_pads_like_inference() -> None:
    """Validation pads through the one padding home, so it sees the pixels inference would."""
    x = torch.arange(15.0).view(1, 1, 3, 5).expand(1, 3, 3, 5) / 15
    model = _Recorder()
    out = restore_whole(model, x, multiple=4)
    torch.testing.assert_close(model.seen[0], pad_to_multiple(x, 4)[0], rtol=0, atol=0)
    assert model.seen[0].shape == (1, 3, 4, 8) and torch.equal(out, x)


def test_unknown_method_and_options() -> None:
    with pytest.raises(ObjectiveError, match="unknown training method 'ram'; known: restore"):
        build_objective("ram", {})
    with pytest.raises(ObjectiveError, match="method 'restore' takes no options, got: ratio"):
        build_objective("restore", {"ratio": 0.3})


def _l1_context() -> StepContext:
    """A one-process CPU step context whose loss is plain L1 (all the objectives here need of it)."""
    return StepContext(
        1, torch.device("cpu"), WeightedLoss.from_terms([LossTerm("l1")]), GeneratorBank(0, 0, "cpu")
    )


def _train_steps(
    objective, model: nn.Module, batch: dict, ctx: StepContext, steps: int, lr: float
) -> dict[str, torch.Tensor]:
    """``steps`` Adam steps of the objective's loss on one batch, the trainable parameters only; the
    last step's logged parts."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        loss, parts = objective.loss(model, batch, ctx)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return parts


def test_staged_objective_supervises_the_curve_stage(tiny_curve_nafnet) -> None:
    """method 'stages': loss(output) + stage_weight * loss(stage), and the stage itself gets gradients."""
    model = tiny_curve_nafnet()
    objective = build_objective("stages", {"stage_weight": 0.25})
    assert objective.prepare_model(model) is model
    ctx = _l1_context()
    gt = torch.rand(2, 3, 16, 16)
    lq = (gt * 0.5 + 0.4).clamp(0, 1)
    loss, parts = objective.loss(model, {"lq": lq, "gt": gt}, ctx)
    expected = l1_loss(model(lq), gt) + 0.25 * l1_loss(model.curve(lq), gt)
    torch.testing.assert_close(loss, expected)
    assert set(parts) == {"l1", "stage0"}
    loss.backward()
    assert model.curve.head.weight.grad.abs().sum() > 0

    with pytest.raises(ObjectiveError, match="no intermediate stages"):
        objective.prepare_model(nn.Conv2d(3, 3, 1))
    with pytest.raises(ObjectiveError, match="takes stage_weight, final_weight and train"):
        build_objective("stages", {"weight": 1.0})
    with pytest.raises(ObjectiveError, match=">= 0"):
        build_objective("stages", {"stage_weight": -1.0})


def test_staged_objective_trains_only_the_named_parts(tiny_curve_nafnet) -> None:
    """``train`` freezes all but the named prefixes; ``final_weight: 0`` leaves only the stages' losses."""
    from anyrestore.models.curve_nafnet import DEBLUR_SIGMAS

    model = tiny_curve_nafnet(deblur_sigmas=DEBLUR_SIGMAS)
    objective = build_objective(
        "stages", {"stage_weight": 1.0, "final_weight": 0.0, "train": ["deblur.head"]}
    )
    objective.prepare_model(model)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        "deblur.head.0.weight",
        "deblur.head.0.bias",
        "deblur.head.2.weight",
        "deblur.head.2.bias",
    }
    ctx = _l1_context()
    gt = torch.rand(2, 3, 32, 32)
    lq = (gt * 0.5 + 0.4).clamp(0, 1)
    loss, parts = objective.loss(model, {"lq": lq, "gt": gt}, ctx)
    curve = model.curve(lq)
    expected = l1_loss(curve, gt) + l1_loss(model.deblur(curve), gt)
    torch.testing.assert_close(loss, expected)
    assert set(parts) == {"l1", "stage0", "stage1"}
    loss.backward()
    assert model.deblur.head[2].bias.grad.abs().sum() > 0  # a fresh stage (the identity) still learns
    assert model.restorer.ending.weight.grad is None

    with pytest.raises(ObjectiveError, match="train prefix 'deblurr' matches no parameter"):
        build_objective("stages", {"stage_weight": 1.0, "train": ["deblurr"]}).prepare_model(model)
    with pytest.raises(ObjectiveError, match="list of parameter-name prefixes"):
        build_objective("stages", {"stage_weight": 1.0, "train": "deblur"})
    with pytest.raises(ObjectiveError, match="not both 0"):
        build_objective("stages", {"stage_weight": 0.0, "final_weight": 0.0})


def test_deblur_choice_teaches_the_estimator_which_kernel_helps(photo, tiny_curve_nafnet) -> None:
    """method 'deblur_choice': the label is the bank entry nearest the clean image; a few steps on a
    blurred and a noisy crop teach the estimator to sharpen the first and leave the second alone."""
    from anyrestore.degrade import gaussian_blur
    from anyrestore.models.curve_nafnet import DEBLUR_SIGMAS

    model = tiny_curve_nafnet(deblur_sigmas=DEBLUR_SIGMAS)
    objective = build_objective("deblur_choice", {})
    objective.prepare_model(model)
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"deblur"}
    assert not model.deblur.kernels.requires_grad
    gt = photo[:, :, :64, :64].repeat(2, 1, 1, 1)
    lq = torch.cat(
        [gaussian_blur(gt[:1], kernel_size=15, sigma=2.0), (gt[1:] + 0.1 * torch.randn_like(gt[1:]))]
    )
    with torch.no_grad():
        errors = (model(lq, deblur_options=True)[1] - gt[:, None]).pow(2).flatten(2).mean(2)
    assert errors[0].argmin() > 0 and errors[1].argmin() == 0  # some kernel helps the blur, none the noise
    ctx = _l1_context()
    parts = _train_steps(objective, model, {"lq": lq, "gt": gt}, ctx, steps=60, lr=1e-2)
    assert parts["acc"] == 1.0
    with torch.no_grad():
        weights = model.deblur.weights(model.curve(lq))
    assert weights[0, 0] < 0.5 < weights[1, 0]
    with pytest.raises(ObjectiveError, match="no deblur stage"):
        objective.prepare_model(tiny_curve_nafnet())

    # blend_weight adds the PSNR loss of the stage's own output, the blend of the bank.
    blended = build_objective("deblur_choice", {"blend_weight": 0.5})
    loss, parts = blended.loss(model, {"lq": lq, "gt": gt}, ctx)
    with torch.no_grad():
        stage_psnr = -psnr_loss(model.deblur(model.curve(lq)), gt)
    torch.testing.assert_close(parts["blend_psnr"], stage_psnr, rtol=0, atol=1e-3)
    torch.testing.assert_close(loss, parts["choice"] - 0.5 * stage_psnr, rtol=0, atol=1e-3)
    with pytest.raises(ObjectiveError, match="takes only blend_weight"):
        build_objective("deblur_choice", {"weight": 1.0})


def test_deblock_choice_targets_the_image_before_jpeg(photo, tiny_curve_nafnet) -> None:
    """method 'deblock_choice': the label is the bank entry nearest ``before`` (the image before JPEG):
    a few steps teach the estimator to deblock a JPEG crop and leave a noisy one alone, though the bank's
    smoothing entry would bring the noisy one nearer the clean photo."""
    from anyrestore.degrade import jpeg_compress
    from anyrestore.models.curve_nafnet import LUMA, fit_deblock_filters

    model = tiny_curve_nafnet(deblock_qualities=(20, 50), deblock_size=5)
    objective = build_objective("deblock_choice", {})
    objective.prepare_model(model)
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"deblock"}
    assert not model.deblock.kernels.requires_grad and not model.deblock.offsets.requires_grad
    gt = photo[:, :, :64, :64].repeat(2, 1, 1, 1)
    noisy = (gt[1:] + 0.2 * torch.randn_like(gt[1:])).clamp(0, 1)
    lq = torch.cat([jpeg_compress(gt[:1], quality=20), noisy])

    def luma(x):
        return (x * torch.tensor(LUMA)[None, :, None, None]).sum(1, keepdim=True)

    with torch.no_grad():
        kernels, offsets = fit_deblock_filters([(luma(lq[:1]), luma(gt[:1]))], size=5)
        model.deblock.kernels[0], model.deblock.offsets[0] = kernels, offsets
        model.deblock.kernels[1] = 0.0
        model.deblock.kernels[1, :, 1:4, 1:4] = 1.0 / 9  # a 3x3 box blur at every block position
        options = model(lq, deblock_options=True)[1]
        before = torch.cat([gt[:1], noisy])
        to_clean = (options - gt[:, None]).pow(2).flatten(2).mean(2)
        to_before = (options - before[:, None]).pow(2).flatten(2).mean(2)
    assert to_clean[0].argmin() == 1 and to_clean[1].argmin() == 2  # against the clean photo: blur the noise
    assert to_before[0].argmin() == 1 and to_before[1].argmin() == 0  # against before: leave it alone
    batch = {"lq": lq, "gt": gt, "before": before}
    ctx = _l1_context()
    parts = _train_steps(objective, model, batch, ctx, steps=60, lr=1e-2)
    assert parts["acc"] == 1.0
    with torch.no_grad():
        weights = model.deblock.weights(lq)
    assert weights[0, 0] < 0.5 < weights[1, 0]
    with pytest.raises(ObjectiveError, match="no deblock stage .*deblock_qualities"):
        objective.prepare_model(tiny_curve_nafnet())


def test_dequant_reads_each_crops_table_and_learns_to_restore_its_jpeg(photo, tiny_curve_nafnet) -> None:
    """method 'dequant': every crop's table comes from its own pixels (crops without a JPEG signature
    are left out of the step), the loss is the luma's squared error against ``before``, and a few steps
    on one JPEG crop bring it nearer the photo; only the dequantisation stage learns."""
    from anyrestore.degrade import jpeg_compress
    from anyrestore.models.jpeg_dequant import luma_255

    model = tiny_curve_nafnet(dequant_width=16, dequant_blocks=1)
    objective = build_objective("dequant", {})
    objective.prepare_model(model)
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"dequant"}
    gt = photo[:, :, :64, :64].repeat(2, 1, 1, 1)
    lq = torch.cat([jpeg_compress(gt[:1], quality=20), gt[1:]])  # the second crop was never compressed
    ctx = _l1_context()
    loss, parts = objective.loss(model, {"lq": lq, "gt": gt}, ctx)
    assert parts["found"] == 0.5 and abs(float(parts["gain"])) < 1e-4  # fresh: the identity
    torch.testing.assert_close(loss, (luma_255(lq[:1]) - luma_255(gt[:1])).pow(2).mean() / 255.0**2)
    parts = _train_steps(objective, model, {"lq": lq, "gt": gt}, ctx, steps=40, lr=2e-3)
    assert parts["gain"] > 0.3
    with torch.no_grad():
        assert psnr(model(lq[:1], jpeg_qualities=[20]), gt[:1]) > psnr(lq[:1], gt[:1]) + 0.3
    loss, parts = objective.loss(model, {"lq": gt, "gt": gt}, ctx)
    assert parts["found"] == 0.0 and loss == 0.0
    with pytest.raises(ObjectiveError, match="no dequantisation stage"):
        objective.prepare_model(tiny_curve_nafnet())
    with pytest.raises(ObjectiveError, match="takes no options"):
        build_objective("dequant", {"lr": 1})


# ----------------------------------------------------------------------------- launchers and run lock


def test_launch_env_reads_torchrun_then_srun() -> None:
    from anyrestore.train.distributed import DistributedError, LaunchEnv, first_host, launch_env

    assert launch_env({}) == LaunchEnv(0, 1, 0, None)
    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}
    assert launch_env(torchrun) == LaunchEnv(3, 4, 1, None)  # srun torchrun: torchrun's ranks win
    srun = {
        "SLURM_PROCID": "5",
        "SLURM_NTASKS": "8",
        "SLURM_STEP_NUM_TASKS": "8",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_ID": "123456",
        "SLURM_STEP_NODELIST": "gpu[017-020,031],login2",
    }
    assert launch_env(srun) == LaunchEnv(5, 8, 1, "tcp://gpu017:23456")
    assert launch_env({**srun, "MASTER_ADDR": "10.0.0.7", "MASTER_PORT": "29400"}).init_method == (
        "tcp://10.0.0.7:29400"
    )
    # the batch script itself (Slurm variables, no job step) is one process, as is a one-task step
    batch = {k: v for k, v in srun.items() if k != "SLURM_STEP_NUM_TASKS"}
    assert launch_env({**batch, "SLURM_PROCID": "0"}) == LaunchEnv()
    assert launch_env({**srun, "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).world_size == 1
    assert first_host("node7") == "node7" and first_host("a[3-4],b1") == "a3"
    no_nodes = {k: v for k, v in srun.items() if k != "SLURM_STEP_NODELIST"}
    with pytest.raises(DistributedError, match="no MASTER_ADDR") as info:
        launch_env(no_nodes)
    assert "\n" not in str(info.value) and "srun torchrun" in str(info.value)
    with pytest.raises(DistributedError, match="SLURM_PROCID=9"):
        launch_env({**srun, "SLURM_PROCID": "9"})


def test_run_lock_is_exclusive_and_dies_with_its_process(tmp_path: Path) -> None:
    import multiprocessing
    import os
    import signal

    from anyrestore.train.runlock import RunLock, RunLockedError

    with RunLock(tmp_path / "run") as lock:
        assert lock.held
        with pytest.raises(
            RunLockedError, match=f"another run is writing into this folder \\(pid {os.getpid()}"
        ):
            RunLock(tmp_path / "run").acquire()
    with RunLock(tmp_path / "run"):  # released: free again (and the file stays)
        pass

    # A holder killed with SIGKILL leaves the file, not the lock.
    ready = multiprocessing.get_context("fork").Event()

    def hold() -> None:
        RunLock(tmp_path / "killed").acquire()
        ready.set()
        signal.pause()

    child = multiprocessing.get_context("fork").Process(target=hold)
    child.start()
    assert ready.wait(30)
    with pytest.raises(RunLockedError, match=f"pid {child.pid}"):
        RunLock(tmp_path / "killed").acquire()
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    lock = RunLock(tmp_path / "killed")
    lock.acquire()
    assert lock.held and (tmp_path / "killed" / ".lock").read_text().startswith(f"pid {os.getpid()} ")
    lock.release()
