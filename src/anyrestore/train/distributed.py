"""Processes of a run: one, or many started by ``torchrun`` (ranks read from the environment).

``torchrun --nproc_per_node=N -m anyrestore train recipe.yaml`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address; :func:`setup` joins the process group (NCCL on GPUs, gloo on
CPUs) and picks this process's device. There is no launcher of our own. Tasks started by ``srun`` without
``torchrun`` take their ranks from Slurm's variables (:func:`launch_env`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from anyrestore.devices import resolve_device
from anyrestore.errors import AnyRestoreError


class DistributedError(AnyRestoreError):
    """The process group or the device cannot be set up as asked."""


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over processes, in place; returns ``tensor``."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` (picklable), in rank order, on every process."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"environment variable {name}={value!r} is not an integer") from None


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits in the run, as its launcher said; ``init_method`` None: torchrun's ``env://``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    init_method: str | None = None


def first_host(nodelist: str) -> str:
    """The first host of a Slurm host list: ``node[07-09,12],gpu1`` -> ``node07`` (``scontrol show
    hostnames | head -n 1``, without scontrol)."""
    m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise DistributedError(f"cannot read the Slurm node list {nodelist!r}")
    prefix, ranges = m.group(1), m.group(2)
    return prefix + ranges.split(",")[0].split("-")[0] if ranges else prefix


def launch_env(environ: Mapping[str, str] | None = None) -> LaunchEnv:
    """Rank, world size and local rank from ``torchrun``'s variables, else from ``srun``'s.

    ``srun`` without ``torchrun`` sets ``SLURM_PROCID``, ``SLURM_NTASKS`` and ``SLURM_LOCALID`` (and, in a job
    step, ``SLURM_STEP_NUM_TASKS``); they become the rank, world size and local rank, and the process group
    meets at ``MASTER_ADDR`` (default: the first host of the step's node list) and ``MASTER_PORT``
    (default: 20000 + job id mod 20000). A batch script itself (Slurm variables but no job step) is one
    process.
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env or "RANK" in env:
        return LaunchEnv(
            _env_int(env, "RANK", 0), _env_int(env, "WORLD_SIZE", 1), _env_int(env, "LOCAL_RANK", 0)
        )
    if "SLURM_PROCID" not in env or "SLURM_STEP_NUM_TASKS" not in env:
        return LaunchEnv()
    world = _env_int(env, "SLURM_NTASKS", _env_int(env, "SLURM_STEP_NUM_TASKS", 1))
    rank, local_rank = _env_int(env, "SLURM_PROCID", 0), _env_int(env, "SLURM_LOCALID", 0)
    if world <= 1:
        return LaunchEnv(0, 1, local_rank)
    if not 0 <= rank < world:
        raise DistributedError(f"SLURM_PROCID={rank} is not a rank of SLURM_NTASKS={world}")
    addr = env.get("MASTER_ADDR")
    if not addr:
        nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
        if not nodes:
            raise DistributedError(
                f"started by srun as task {rank} of {world} with no MASTER_ADDR and no SLURM_JOB_NODELIST: "
                "export MASTER_ADDR=<first node> MASTER_PORT=<free port>, or run srun torchrun ... "
                "(docs/training.md, 'Several machines')"
            )
        addr = first_host(nodes)
    port = _env_int(env, "MASTER_PORT", 20000 + _env_int(env, "SLURM_JOB_ID", 9500) % 20000)
    return LaunchEnv(rank, world, local_rank, f"tcp://{addr}:{port}")


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto``: this process's GPU (``cuda:LOCAL_RANK``) when CUDA is available, else the CPU."""
    return resolve_device(preference, local_rank=local_rank)


def _restarted_on_a_shared_store() -> bool:
    """Whether this is a restart by a one-node ``torchrun`` whose store outlives its attempts.

    torchrun's agent keeps one store for every attempt (unless ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``),
    so the restarted group would read the failed attempt's gloo/NCCL addresses. On one node the restart
    count names the attempt, and it becomes a key prefix; across nodes the agents' counts can differ, so
    there the fix is a fresh store per attempt (``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``, docs/training.md).
    """
    env = os.environ
    return (
        env.get("TORCHELASTIC_RESTART_COUNT", "0") != "0"
        and env.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        and env.get("GROUP_WORLD_SIZE", "1") == "1"
    )


def setup(device: str = "auto", backend: str = "auto") -> DistContext:
    """Join the process group when started by torchrun or srun (world size > 1), and pick the device."""
    launch = launch_env()
    rank, world, local_rank = launch.rank, launch.world_size, launch.local_rank
    gpu = local_rank
    if launch.init_method is not None and torch.cuda.is_available() and torch.cuda.device_count() == 1:
        gpu = 0  # srun --gpus-per-task=1: each task sees only its own GPU
    chosen = pick_device(device, gpu)
    if world <= 1:
        return DistContext(0, 1, 0, chosen)
    if backend == "auto":
        backend = "nccl" if chosen.type == "cuda" else "gloo"
    if backend == "nccl" and chosen.type != "cuda":
        raise DistributedError("backend nccl needs CUDA devices; use gloo on CPUs")
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"device_id": chosen} if chosen.type == "cuda" else {}
        if launch.init_method is not None:
            kwargs["init_method"] = launch.init_method
        elif _restarted_on_a_shared_store():
            store, _, _ = next(dist.rendezvous("env://", rank, world))
            attempt = os.environ["TORCHELASTIC_RESTART_COUNT"]
            kwargs["store"] = dist.PrefixStore(f"anyrestore/attempt_{attempt}", store)
        dist.init_process_group(backend=backend, rank=rank, world_size=world, **kwargs)
    return DistContext(rank, world, local_rank, chosen)


def teardown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
