"""The training loop: one engine for every recipe, from one CPU to many GPUs under ``torchrun``.

Per iteration ``i`` (1-based): set the learning rate of ``i``; for each accumulation step take the next
micro-batch of the stream, run the objective under autocast and back-propagate (DDP synchronises
gradients on the last one); unscale and clip; step; update the EMA. Then, as the recipe asks: log,
validate (EMA weights when EMA is on), checkpoint.

Everything that decides the numbers is restored on resume: weights, EMA, optimiser and scaler state,
the iteration (which fixes the learning rate and the data: see :mod:`anyrestore.data.stream`), and the
RNG states of every process. So a run resumed from its last checkpoint ends bitwise equal to one that
was never interrupted (on CPU; GPU kernels may not be deterministic).
"""

from __future__ import annotations

import contextlib
import random
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

from anyrestore.data import (
    DataError,
    RestorationDataset,
    SampleStream,
    StreamSampler,
    build_dataset,
    build_source,
    collate,
    make_generator,
    micro_batch_size,
)
from anyrestore.data.seeding import derive_seed
from anyrestore.errors import AnyRestoreError
from anyrestore.io import atomic_output
from anyrestore.models.checkpoint import load_model, load_strict, save_model
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.normalize import as_unit_range
from anyrestore.train.checkpoints import (
    ResumeError,
    capture_rng,
    list_checkpoints,
    load_latest_checkpoint,
    prune_checkpoints,
    restore_rng,
    save_checkpoint,
)
from anyrestore.train.distributed import DistContext, setup, teardown
from anyrestore.train.ema import ModelEMA
from anyrestore.train.losses import WeightedLoss
from anyrestore.train.monitor import METRICS_FILE, Monitor
from anyrestore.train.objective import GeneratorBank, Objective, StepContext, build_objective
from anyrestore.train.precision import Precision
from anyrestore.train.recipe import Recipe, recipe_differences, recipe_from_dict
from anyrestore.train.runlock import RunLock
from anyrestore.train.schedule import LRSchedule
from anyrestore.train.validate import recipe_val_sets, validate_recipe

CHECKPOINT_DIR = "checkpoints"
RECIPE_FILE = "recipe.yaml"
FINAL_WEIGHTS = "model.safetensors"
# Recipe keys that may change between a run and its resumption without changing its numbers.
RESUME_MAY_CHANGE = (
    "description",
    "data.train.num_workers",
    "data.train.pin_memory",
    "log.",
    "checkpoint.keep",
)


class TrainError(AnyRestoreError):
    """A run cannot start or continue; the message says why and what to change."""


@dataclass
class TrainResult:
    out_dir: Path
    iteration: int
    weights: Path
    validation: dict[str, float] = field(default_factory=dict)


def build_optimizer(recipe: Recipe, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    o = recipe.optim
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def _to_device(batch: Mapping[str, Any], device: torch.device, channels_last: bool = False) -> dict[str, Any]:
    def move(v: torch.Tensor) -> torch.Tensor:
        v = v.to(device, non_blocking=True)
        return v.contiguous(memory_format=torch.channels_last) if channels_last and v.dim() == 4 else v

    return {k: move(v) if torch.is_tensor(v) else v for k, v in batch.items()}


def _seed_globals(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Runs one recipe into ``out_dir`` (``resume``: continue the run already there; ``"auto"``: continue
    it when the folder holds a checkpoint, else start).

    Rank 0 holds the folder's :class:`~anyrestore.train.runlock.RunLock` while the run lives, so a second
    run cannot write into it.

    ``objective`` overrides the one the recipe's ``method`` names (for methods driving the engine from
    code). Errors about the recipe, the data or the run raise :class:`~anyrestore.errors.AnyRestoreError`
    subclasses before any training happens.
    """

    def __init__(
        self,
        recipe: Recipe,
        out_dir: str | Path,
        *,
        resume: bool | str = False,
        objective: Objective | None = None,
        progress: bool = True,
    ) -> None:
        self.recipe = recipe
        self.out_dir = Path(out_dir)
        if resume not in (True, False, "auto"):
            raise TrainError(f"resume: {resume!r}; expected true, false or 'auto'")
        self.resume = resume
        self._lock = RunLock(self.out_dir)
        self.objective = objective or build_objective(recipe.method.name, recipe.method.options)
        self.progress = progress

    # ------------------------------------------------------------------------------------- set-up

    def _check_out_dir(self) -> bool:
        """Whether the run resumes; raises when the folder does not fit what was asked."""
        saved = self.out_dir / RECIPE_FILE
        existing = list_checkpoints(self.out_dir / CHECKPOINT_DIR)
        if self.resume == "auto" and not existing:
            return False
        if not self.resume:
            if existing:
                raise TrainError(
                    f"{self.out_dir}: already holds a run (checkpoint at iteration "
                    f"{existing[-1].iteration}); pass --resume to continue it, or choose another --out"
                )
            return False
        if not existing:
            raise TrainError(f"{self.out_dir}: no complete checkpoint to resume from; run without --resume")
        if saved.exists():
            before = recipe_from_dict(yaml.safe_load(saved.read_text()), str(saved)).to_dict()
            changed = [
                k
                for k in recipe_differences(before, self.recipe.to_dict())
                if not any(k == p or (p.endswith(".") and k.startswith(p)) for p in RESUME_MAY_CHANGE)
            ]
            if changed:
                raise TrainError(
                    f"{self.out_dir}: the recipe differs from the one this run started with "
                    f"({', '.join(changed[:6])}); resume with the same recipe and overrides"
                )
        return True

    def _claim_out_dir(self, ctx: DistContext) -> bool:
        """Rank 0 locks the run folder and checks it; every process gets its verdict (resume or not)."""
        failure: AnyRestoreError | None = None
        resuming = False
        if ctx.is_main:
            try:
                self._lock.acquire()
                resuming = self._check_out_dir()
            except AnyRestoreError as exc:
                failure = exc
        message, resuming = ctx.broadcast((str(failure) if failure else None, resuming))
        if failure is not None:
            raise failure
        if message is not None:
            raise TrainError(message)
        return resuming

    def _build_data(self, ctx: DistContext):
        r = self.recipe
        t = r.data.train
        train_sets = [
            build_dataset(
                spec,
                data_root=r.data_root,
                train=True,
                seed=r.seed,
                where=f"data.train.sets.{i}",
                progress=self.progress and ctx.is_main,
            )
            for i, spec in enumerate(t.sets)
        ]
        groups = [spec.group for spec in t.sets]
        source = build_source(train_sets, mix=t.mix, weights=t.weights, seed=r.seed, groups=groups)
        return train_sets, source, recipe_val_sets(r)

    def _build_model(self) -> tuple[nn.Module, ModelDescriptor]:
        m = self.recipe.model
        try:
            descriptor = ModelDescriptor.for_architecture(m.architecture, m.config)
        except KeyError as exc:
            raise TrainError(f"model.architecture: {exc.args[0]}") from None
        try:
            model = descriptor.build()
        except (TypeError, ValueError) as exc:
            raise TrainError(f"model.config: cannot build {m.architecture} ({exc})") from None
        if m.pretrained is not None:
            path = Path(m.pretrained).expanduser()
            loaded = load_model(path, prefer_ema=m.pretrained_ema)
            if loaded.descriptor.architecture != m.architecture:
                raise TrainError(
                    f"model.pretrained: {path} holds a {loaded.descriptor.architecture}, "
                    f"not a {m.architecture}"
                )
            load_strict(model, loaded.module.state_dict(), str(path))
        return model, descriptor

    def _origin(self, start: int) -> str:
        """Where the weights start: a resumed run, pretrained weights, or scratch."""
        if start:
            return f"resuming at {start}"
        if self.recipe.model.pretrained is not None:
            return f"from {self.recipe.model.pretrained}"
        return "from scratch"

    # --------------------------------------------------------------------------------------- run

    def run(self) -> TrainResult:
        """Train to ``schedule.iterations`` (from the last checkpoint when resuming); returns where the
        weights are and the last validation."""
        ctx = setup(self.recipe.device, self.recipe.distributed.backend)
        try:
            session = self._start(ctx)
            try:
                return self._loop(session)
            finally:
                session.monitor.close()
        finally:
            self._lock.release()
            teardown(ctx)

    def _start(self, ctx: DistContext) -> _Session:
        """Check the run folder and build everything, all before the first step."""
        r = self.recipe
        resuming = self._claim_out_dir(ctx)
        t = r.data.train
        try:
            micro = micro_batch_size(t.batch_size, ctx.world_size, t.accumulate)
        except DataError as exc:
            raise TrainError(f"data.train.batch_size: {exc}") from None

        _seed_globals(r.seed)  # identical initial weights on every process
        train_sets, source, val_sets = self._build_data(ctx)
        model, descriptor = self._build_model()
        model = self.objective.prepare_model(model)
        if descriptor.precisions and r.precision not in descriptor.precisions:
            supported = ", ".join(descriptor.precisions)
            raise TrainError(f"precision: {r.model.architecture} supports {supported}, not {r.precision}")
        model.to(ctx.device).train()
        if r.channels_last:
            model.to(memory_format=torch.channels_last)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise TrainError("no trainable parameters: the method froze every layer")
        net = as_unit_range(model, descriptor)
        if ctx.distributed:
            net = nn.parallel.DistributedDataParallel(
                net,
                device_ids=[ctx.device] if ctx.device.type == "cuda" else None,
                find_unused_parameters=r.distributed.find_unused_parameters,
                static_graph=r.distributed.static_graph,
            )
        s = _Session(
            ctx=ctx,
            model=model,
            net=net,
            descriptor=descriptor,
            params=params,
            ema=ModelEMA(model, r.ema.decay, r.ema.start, r.ema.warmup) if r.ema is not None else None,
            optimizer=build_optimizer(r, params),
            precision=Precision.create(r.precision, ctx.device),
            schedule=LRSchedule.from_recipe(r.optim.lr, r.schedule),
            generators=GeneratorBank(r.seed, ctx.rank, ctx.device),
            val_sets=val_sets,
            micro=micro,
        )

        _seed_globals(derive_seed(r.seed, "process", ctx.rank))
        if resuming:
            s.start = self._restore(s)
        elif ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with atomic_output(self.out_dir / RECIPE_FILE) as tmp:
                tmp.write_text(r.to_yaml())
            (self.out_dir / METRICS_FILE).unlink(missing_ok=True)  # left by a run that never checkpointed
        s.loader = DataLoader(
            SampleStream(source, r.seed),
            batch_size=micro,
            sampler=StreamSampler(
                t.batch_size,
                start_iteration=s.start,
                rank=ctx.rank,
                world_size=ctx.world_size,
                accumulate=t.accumulate,
            ),
            num_workers=t.num_workers,
            collate_fn=collate,
            pin_memory=t.pin_memory and ctx.device.type == "cuda",
            persistent_workers=t.num_workers > 0,
            generator=make_generator(r.seed, "loader"),  # keeps the global RNG untouched
        )
        s.monitor = Monitor(
            self.out_dir,
            enabled=ctx.is_main,
            total=r.schedule.iterations,
            start=s.start,
            progress=self.progress,
            tensorboard=r.log.tensorboard,
        )
        total_params = sum(p.numel() for p in model.parameters())
        s.monitor.message(
            f"{r.name}: {r.model.architecture} ({sum(p.numel() for p in params):,} trainable of "
            f"{total_params:,} parameters), {' + '.join(f'{d.task} ({len(d)})' for d in train_sets)}, "
            f"batch {t.batch_size} ({ctx.world_size} process(es) x {t.accumulate} x {micro}), "
            f"{r.precision} on {ctx.device}, "
            f"{self._origin(s.start)} -> {self.out_dir}"
        )
        return s

    def _loop(self, s: _Session) -> TrainResult:
        r, ctx, t = self.recipe, s.ctx, self.recipe.data.train
        total = r.schedule.iterations
        # DDP's static graph mishandles no_sync(); syncing every micro-batch is slower but exact.
        defer_sync = ctx.distributed and not r.distributed.static_graph
        step_ctx = StepContext(0, ctx.device, WeightedLoss.from_terms(r.loss), s.generators)
        last_val: dict[str, float] = {}
        if s.val_sets and r.data.val.at_start and s.start == 0:
            last_val = self._validate(s, 0)
        window = _LossWindow(ctx.device)

        batches = iter(s.loader)
        iteration = s.start
        for iteration in range(s.start + 1, total + 1):
            lr = s.schedule(iteration)
            for group in s.optimizer.param_groups:
                group["lr"] = lr
            s.optimizer.zero_grad(set_to_none=True)
            step_ctx.iteration = iteration
            for m in range(t.accumulate):
                batch = _to_device(next(batches), ctx.device, r.channels_last)
                hold = defer_sync and m < t.accumulate - 1
                with s.net.no_sync() if hold else contextlib.nullcontext(), _unused_parameters_hint():
                    with s.precision.autocast():
                        loss, parts = self.objective.loss(s.net, batch, step_ctx)
                    s.precision.backward(loss / t.accumulate)
                window.add(loss, parts, t.accumulate)
            if r.optim.clip_grad_norm is not None:
                s.precision.unscale(s.optimizer)
                torch.nn.utils.clip_grad_norm_(s.params, r.optim.clip_grad_norm)
            s.precision.step(s.optimizer)
            if s.ema is not None:
                s.ema.update(s.model, iteration)
            s.monitor.advance()

            if iteration % r.log.every == 0 or iteration == total:
                values = window.reduce(ctx)
                if not np.isfinite(values["loss"]):
                    raise TrainError(
                        f"loss became {values['loss']} at iteration {iteration}; lower optim.lr, set "
                        "optim.clip_grad_norm, or train in bf16 rather than fp16"
                    )
                values["lr"] = lr
                if ctx.device.type == "cuda":
                    values["max_mem_gb"] = torch.cuda.max_memory_allocated(ctx.device) / 2**30
                s.monitor.log("train", iteration, values)
            if s.val_sets and (iteration % r.data.val.every == 0 or iteration == total):
                last_val = self._validate(s, iteration)
            if iteration % r.checkpoint.every == 0 or iteration == total:
                self._save(s, iteration)

        weights = self.out_dir / FINAL_WEIGHTS
        if ctx.is_main:
            ema_state = s.ema.state_dict() if s.ema is not None else None
            save_model(
                weights, self.objective.describe(s.descriptor, s.model), s.model.state_dict(), ema_state
            )
            self.objective.finish(s.ema.module if s.ema is not None else s.model, self.out_dir)
            s.monitor.message(f"done: {weights}")
        del batches
        ctx.barrier()
        return TrainResult(self.out_dir, iteration, weights, last_val)

    def _validate(self, s: _Session, iteration: int) -> dict[str, float]:
        results = validate_recipe(
            s.ema.module if s.ema is not None else s.model,
            s.descriptor,
            self.recipe,
            ctx=s.ctx,
            sets=s.val_sets,
            progress=self.progress and s.ctx.is_main,
        )
        s.monitor.log("val", iteration, results)
        return results

    def _save(self, s: _Session, iteration: int) -> None:
        rng = s.ctx.gather(capture_rng(s.ctx.device, s.generators.state_dict()))  # every process's
        if s.ctx.is_main:
            state = {
                "optimizer": s.optimizer.state_dict(),
                "scaler": s.precision.state_dict(),
                "rng": rng,
                "world_size": s.ctx.world_size,
                "recipe": self.recipe.to_dict(),
            }
            folder = self.out_dir / CHECKPOINT_DIR
            save_checkpoint(
                folder,
                iteration,
                self.objective.describe(s.descriptor, s.model),
                s.model.state_dict(),
                s.ema.state_dict() if s.ema is not None else None,
                state,
            )
            prune_checkpoints(folder, self.recipe.checkpoint.keep)
        s.ctx.barrier()

    def _restore(self, s: _Session) -> int:
        """Load the newest usable checkpoint into the session; returns its iteration."""
        found = load_latest_checkpoint(self.out_dir / CHECKPOINT_DIR)
        if found is None:
            raise ResumeError(f"{self.out_dir}: no checkpoint could be loaded; run without --resume")
        where = str(found.files.weights)
        load_strict(s.model, found.params, where)
        if s.ema is not None:
            if found.params_ema is None:
                raise ResumeError(f"{where}: has no params_ema but the recipe uses EMA")
            load_strict(s.ema.module, found.params_ema, where)
        try:
            s.optimizer.load_state_dict(found.state["optimizer"])
        except (KeyError, ValueError) as exc:
            raise ResumeError(f"{found.files.state}: optimiser state does not fit this run ({exc})") from None
        s.precision.load_state_dict(found.state.get("scaler") or {})
        saved_rng = found.state["rng"]
        if found.state.get("world_size") == s.ctx.world_size:
            restore_rng(saved_rng[s.ctx.rank], s.ctx.device)
            s.generators.load_state_dict(saved_rng[s.ctx.rank]["generators"])
        elif s.ctx.is_main:
            warnings.warn(
                f"resuming with {s.ctx.world_size} process(es) where the run had "
                f"{found.state.get('world_size')}: data and learning rate continue exactly, "
                "per-process random states are reseeded",
                stacklevel=2,
            )
        return found.files.iteration


@contextlib.contextmanager
def _unused_parameters_hint():
    """DDP's long error about parameters that got no gradient, as one line naming the recipe's switch."""
    try:
        yield
    except RuntimeError as exc:
        if "find_unused_parameters" not in str(exc):
            raise
        raise TrainError(
            "the model has parameters that get no gradient in training, which DDP refuses by default: set "
            "distributed.find_unused_parameters=true (or distributed.static_graph=true)"
        ) from None


@dataclass
class _Session:
    """Everything one run of :class:`Trainer` builds."""

    ctx: DistContext
    model: nn.Module  # the bare model: what is saved, what the EMA follows
    net: nn.Module  # what is trained: [0, 1] wrapper and DDP around ``model``
    descriptor: ModelDescriptor
    params: list[nn.Parameter]
    ema: ModelEMA | None
    optimizer: torch.optim.Optimizer
    precision: Precision
    schedule: LRSchedule
    generators: GeneratorBank
    val_sets: list[RestorationDataset]
    micro: int
    start: int = 0
    loader: DataLoader | None = None
    monitor: Monitor | None = None


class _LossWindow:
    """Losses summed on the device between two log lines (no host sync per step)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._reset()

    def _reset(self) -> None:
        self.loss = torch.zeros((), device=self.device)
        self.parts: dict[str, torch.Tensor] = {}
        self.steps, self.started = 0, time.perf_counter()

    def add(self, loss: torch.Tensor, parts: Mapping[str, torch.Tensor], accumulate: int) -> None:
        """One micro-batch; ``accumulate`` micro-batches make one step."""
        self.loss = self.loss + loss.detach().float() / accumulate
        for name, value in parts.items():
            self.parts[name] = self.parts.get(name, 0.0) + value.detach().float() / accumulate
        self.steps += 1 / accumulate

    def reduce(self, ctx: DistContext) -> dict[str, float]:
        """Mean loss (and terms, when several) per step over the window and the processes; it/s."""
        names = sorted(self.parts)
        stacked = torch.stack([self.loss, *(self.parts[n].reshape(()) for n in names)])
        steps = max(round(self.steps), 1)
        values = (ctx.all_reduce_sum(stacked) / (ctx.world_size * steps)).tolist()
        out = {"loss": values[0]}
        if len(names) > 1:  # a single term is the loss itself
            out.update({f"loss/{n}": v for n, v in zip(names, values[1:], strict=True)})
        out["it_per_s"] = steps / max(time.perf_counter() - self.started, 1e-9)
        self._reset()
        return out
