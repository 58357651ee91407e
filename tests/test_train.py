"""The training engine end to end, on a tiny NAFNet and 32x32 crops of real photos (CPU only).

Resumption must be bitwise exact, a 2-process torchrun run must match a 1-process run with the same
global batch, and the tiny recipe must actually learn. The same 2-process run, launched as two torchrun
"nodes", as two srun tasks without torchrun, or with a worker killed under ``torchrun --max-restarts``,
must end bitwise equal to the plain 2-process run.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anyrestore.cli.main import main
from anyrestore.models.checkpoint import load_model, read_checkpoint
from anyrestore.train import (
    CHECKPOINT_DIR,
    OBJECTIVES,
    Objective,
    Trainer,
    list_checkpoints,
    load_recipe,
    register_objective,
    validate_recipe,
)
from anyrestore.train.runlock import RunLock

# A short run of the packaged tiny recipe: 32x32 crops, batch 2, no validation.
QUICK = [
    "data.val=null",
    "data.train.batch_size=2",
    "schedule.iterations=24",
    "schedule.warmup=4",
    "checkpoint.every=4",
    "checkpoint.keep=3",
    "log.every=4",
]


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny convolutions run far slower with two threads fighting over shared cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Training photos (chelsea, coffee, rocket at about 160 px) and a held-out one (astronaut, 64 px)."""
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    (root / "train").mkdir()
    (root / "val").mkdir()
    for name in ("chelsea", "coffee", "rocket"):
        im = Image.fromarray(getattr(data, name)())
        im.resize((im.width * 160 // im.height, 160), Image.Resampling.LANCZOS).save(
            root / "train" / f"{name}.png"
        )
    val = Image.fromarray(data.astronaut()).resize((64, 64), Image.Resampling.LANCZOS)
    val.save(root / "val" / "astronaut.png")
    return root


def _recipe(photos: Path, *overrides: str, quick: bool = True):
    return load_recipe("tiny_denoise", [f"data_root={photos}", *(QUICK if quick else []), *overrides])


def _train(photos: Path, out: Path, *overrides: str, resume: bool = False, quick: bool = True):
    recipe = _recipe(photos, *overrides, quick=quick)
    return Trainer(recipe, out, resume=resume, progress=False).run()


def _weights(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    contents, _ = read_checkpoint(path)
    return contents


def _assert_bitwise_equal(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for group in wa:
        assert wa[group].keys() == wb[group].keys()
        for name, tensor in wa[group].items():
            assert torch.equal(tensor, wb[group][name]), f"{group}.{name} differs"


def _killed_run(photos: str, out: str) -> None:
    torch.set_num_threads(1)
    _train(Path(photos), Path(out), "schedule.iterations=40", "ema.decay=0.9")


def test_tiny_recipe_learns_to_denoise(photos: Path, tmp_path: Path) -> None:
    # The packaged recipe as it is, only shorter: validation on the held-out photo with noise sigma 25.
    result = _train(
        photos,
        tmp_path / "run",
        "schedule.iterations=150",
        "schedule.warmup=10",
        "data.val.every=1000",
        "checkpoint.every=1000",
        "log.every=50",
        quick=False,
    )
    entries = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [e for e in entries if e["kind"] == "val"]
    train = [e for e in entries if e["kind"] == "train"]
    assert [e["iter"] for e in val] == [0, 150]
    assert [e["iter"] for e in train] == [50, 100, 150]
    assert train[-1]["loss"] < train[0]["loss"]

    # The noisy input's own PSNR: a model that learnt nothing useful would stay at or below it.
    from anyrestore.degrade import apply_op
    from anyrestore.evaluate import psnr
    from anyrestore.io import read_tensor

    clean = read_tensor(photos / "val" / "astronaut.png")
    gen = torch.Generator().manual_seed(0)
    noisy_psnr = float(psnr(apply_op(clean, "noise", generator=gen, sigma=25.0), clean, "rgb"))
    first, last = val[0]["psnr"], val[-1]["psnr"]
    assert last > first + 5.0, (first, last)
    assert last > noisy_psnr + 1.0, (noisy_psnr, last)
    assert result.validation["psnr"] == pytest.approx(last)

    loaded = load_model(result.weights)  # our checkpoints load like any other
    assert loaded.descriptor.architecture == "nafnet"
    assert loaded.descriptor.config["width"] == 8
    # Scored after the fact on the recipe's validation sets: the run's own last figure, for its EMA.
    recipe = _recipe(photos, "schedule.iterations=150", "schedule.warmup=10", quick=False)
    assert validate_recipe(loaded.module, loaded.descriptor, recipe)["psnr"] == pytest.approx(last, abs=1e-6)


def test_resume_after_sigkill_is_bitwise_exact(photos: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    _train(photos, reference, "schedule.iterations=40", "ema.decay=0.9")

    # The interrupted run is a forked copy of this process (no second torch import), killed with
    # SIGKILL at a random moment: after a random checkpoint, plus up to one checkpoint interval, so the
    # kill lands mid-step, mid-write or between the two files, but always before the run ends.
    crashed = tmp_path / "crashed"
    child = multiprocessing.get_context("fork").Process(target=_killed_run, args=(str(photos), str(crashed)))
    child.start()
    checkpoints = crashed / CHECKPOINT_DIR
    target = random.choice([4, 8, 12, 16, 20, 24])
    seen: dict[int, float] = {}
    deadline = time.monotonic() + 120
    while child.is_alive() and time.monotonic() < deadline:
        for c in list_checkpoints(checkpoints):
            seen.setdefault(c.iteration, time.monotonic())
        if target + 4 in seen:
            break
        time.sleep(0.002)
    assert target + 4 in seen, f"the training process stopped early (exit code {child.exitcode})"
    interval = seen[target + 4] - seen[target]
    delay = random.uniform(0.0, interval)
    time.sleep(delay)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    done = list_checkpoints(checkpoints)[-1].iteration
    assert done < 40, (
        f"the run finished before the kill (at {target + 4} + {delay:.3f} s); nothing was resumed"
    )

    _train(photos, crashed, "schedule.iterations=40", "ema.decay=0.9", resume=True)
    _assert_bitwise_equal(reference / "model.safetensors", crashed / "model.safetensors")
    iters = [json.loads(line)["iter"] for line in (crashed / "metrics.jsonl").read_text().splitlines()]
    assert iters == sorted(set(iters)), "metrics logged before the crash were not replaced"


def test_resume_falls_back_past_damaged_and_half_written_checkpoints(photos: Path, tmp_path: Path) -> None:
    reference, run = tmp_path / "reference", tmp_path / "run"
    _train(photos, reference)
    _train(photos, run)
    folder = run / CHECKPOINT_DIR
    assert [c.iteration for c in list_checkpoints(folder)] == [16, 20, 24]
    newest, middle = list_checkpoints(folder)[-1], list_checkpoints(folder)[-2]
    newest.state.unlink()  # killed between the weights and the state: weights without their commit mark
    middle.state.write_bytes(middle.state.read_bytes()[:200])  # damaged
    (folder / ".iter_00000024.state.pt.abc.tmp").write_bytes(b"partial")  # killed mid-write

    with pytest.warns(UserWarning, match="iter_00000020.state.pt: skipped"):
        _train(photos, run, resume=True)
    _assert_bitwise_equal(reference / "model.safetensors", run / "model.safetensors")
    assert not list(folder.glob(".*.tmp"))
    assert [c.iteration for c in list_checkpoints(folder)][-1] == 24


# The multi-process runs: two processes, each accumulating two micro-batches of 2 (global batch 8).
DDP = [*QUICK, "data.train.batch_size=8", "data.train.accumulate=2"]
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    """This environment without any launcher's variables, one thread per process, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in LAUNCHER_VARIABLES}
    return {**env, "OMP_NUM_THREADS": "1", **extra}


def _train_args(photos: Path, out: Path, *extra: str) -> list[str]:
    """``-m anyrestore train`` of the 2-process run into ``out``."""
    return ["-m", "anyrestore", "train", "tiny_denoise", f"data_root={photos}", *DDP, *extra]


def _cli_tail(out: Path) -> list[str]:
    return ["--out", str(out), "--quiet"]


def _finish(procs: list[subprocess.Popen], timeout: float = 300) -> str:
    """Wait for every process; all must succeed. Returns their output together."""
    texts = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=timeout)
        texts.append(stdout)
        assert proc.returncode == 0, stdout[-3000:]
    return "\n".join(texts)


def _popen(command: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(**env)
    )


def _iterations_logged(run: Path) -> list[int]:
    return [json.loads(line)["iter"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def ddp_run(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The 2-process run under one ``torchrun --standalone``: its folder and its output."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    command = [TORCHRUN, "--standalone", "--nproc_per_node=2", *_train_args(photos, out)]
    return out, _finish([_popen([*command, *_cli_tail(out)])])


def test_torchrun_two_processes_match_one_process(
    photos: Path, tmp_path: Path, ddp_run: tuple[Path, str]
) -> None:
    ddp, output = ddp_run
    assert "batch 8 (2 process(es) x 2 x 2)" in output
    _train(photos, tmp_path / "single", "data.train.batch_size=8")
    single = _weights(tmp_path / "single" / "model.safetensors")
    for name, tensor in single["params"].items():
        torch.testing.assert_close(
            _weights(ddp / "model.safetensors")["params"][name], tensor, rtol=1e-5, atol=1e-6
        )
    losses = [
        [json.loads(line)["loss"] for line in (d / "metrics.jsonl").read_text().splitlines()]
        for d in (ddp, tmp_path / "single")
    ]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def test_two_torchrun_nodes_match_one_node_bitwise(
    photos: Path, tmp_path: Path, ddp_run: tuple[Path, str]
) -> None:
    # Two launchers meeting by c10d rendezvous, one process each, as two machines sharing the run folder.
    out, port = tmp_path / "nodes", _free_port()
    node = [TORCHRUN, "--nnodes=2", "--nproc_per_node=1", "--rdzv_backend=c10d"]
    node += [f"--rdzv_endpoint=127.0.0.1:{port}", f"--rdzv_id=nodes{port}"]
    output = _finish([_popen([*node, *_train_args(photos, out), *_cli_tail(out)]) for _ in range(2)])
    assert "batch 8 (2 process(es) x 2 x 2)" in output
    _assert_bitwise_equal(ddp_run[0] / "model.safetensors", out / "model.safetensors")
    assert _iterations_logged(out) == _iterations_logged(ddp_run[0])


def test_sbatch_script_runs_one_torchrun_per_node_at_the_head_node(tmp_path: Path) -> None:
    # Slurm's tools replaced by stubs: scontrol lists the job's nodes, srun records what it would run.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text('#!/bin/sh\nprintf "gpu017\\ngpu018\\n"\n')
    (bin_dir / "srun").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "srun.args"}\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    script = Path(__file__).parents[1] / "examples" / "slurm" / "train.sbatch"
    env = _env(
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        SLURM_JOB_NODELIST="gpu[017-018]",
        SLURM_JOB_NUM_NODES="2",
        SLURM_JOB_ID="777",
        SLURM_GPUS_ON_NODE="4",
    )
    proc = subprocess.run(
        ["bash", str(script), "promptir_allinone", "data_root=/data"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    args = (tmp_path / "srun.args").read_text().splitlines()
    torchrun = args[args.index("torchrun") :]
    for expected in ("--nnodes=2", "--nproc_per_node=4", "--rdzv_backend=c10d", "--rdzv_id=777"):
        assert expected in torchrun
    assert "--rdzv_endpoint=gpu017:29500" in torchrun and "--max-restarts=3" in torchrun
    tail = torchrun[torchrun.index("-m") :]
    assert tail == [
        "-m", "anyrestore", "train", "promptir_allinone", "data_root=/data",
        "--out", "runs/promptir_allinone", "--resume", "auto", "--quiet",
    ]  # fmt: skip


def test_srun_tasks_without_torchrun_are_one_run(
    photos: Path, tmp_path: Path, ddp_run: tuple[Path, str]
) -> None:
    # srun starts each task with SLURM_* only: the tasks must become ranks 0 and 1 of one run.
    out, port = tmp_path / "srun", _free_port()
    tasks = [
        _popen(
            [sys.executable, *_train_args(photos, out), *_cli_tail(out)],
            SLURM_JOB_ID="4242",
            SLURM_NTASKS="2",
            SLURM_STEP_NUM_TASKS="2",
            SLURM_PROCID=str(rank),
            SLURM_LOCALID=str(rank),
            SLURM_STEP_NODELIST="localhost",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
        for rank in range(2)
    ]
    output = _finish(tasks)
    assert output.count("batch 8 (2 process(es) x 2 x 2)") == 1  # one run, logged by rank 0 only
    _assert_bitwise_equal(ddp_run[0] / "model.safetensors", out / "model.safetensors")
    assert _iterations_logged(out) == _iterations_logged(ddp_run[0])  # no line twice


def _workers(launcher: int) -> list[int]:
    """The processes whose parent is ``launcher``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == launcher:
                found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("nodes", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_torchrun_restarts_a_killed_worker_and_resumes_bitwise(
    photos: Path, tmp_path: Path, ddp_run: tuple[Path, str], nodes: int
) -> None:
    # One worker SIGKILLed at a random moment after a random checkpoint: torchrun restarts both,
    # '--resume auto' continues from the last complete checkpoint, and the run ends as if never stopped.
    # nodes=2: two launchers of one process each, meeting by c10d rendezvous, as on two machines.
    out = tmp_path / "restarted"
    restart = ["--max-restarts=1", "--monitor-interval=0.1"]
    if nodes == 1:
        commands = [[TORCHRUN, "--standalone", "--nproc_per_node=2", *restart]]
    else:
        port = _free_port()
        rendezvous = [f"--rdzv_endpoint=127.0.0.1:{port}", f"--rdzv_id=restart{port}", "--rdzv_backend=c10d"]
        commands = [[TORCHRUN, "--nnodes=2", "--nproc_per_node=1", *rendezvous, *restart]] * 2
    tail = [*_train_args(photos, out), *_cli_tail(out), "--resume", "auto"]
    # One node runs torchrun as it comes (one store for all attempts: the engine keeps them apart);
    # several need a fresh store per attempt, as docs/training.md says.
    fresh_store = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"} if nodes > 1 else {}
    launchers = [_popen([*c, *tail], **fresh_store) for c in commands]
    target = random.choice([4, 8, 12])  # the kill lands by iteration 20 of 24: the run cannot end first
    seen: dict[int, float] = {}
    deadline = time.monotonic() + 120
    while launchers[0].poll() is None and target + 4 not in seen and time.monotonic() < deadline:
        for c in list_checkpoints(out / CHECKPOINT_DIR):
            seen.setdefault(c.iteration, time.monotonic())
        time.sleep(0.002)
    assert target + 4 in seen, f"the run stopped early (exit code {launchers[0].poll()})"
    time.sleep(random.uniform(0.0, seen[target + 4] - seen[target]))
    workers = [w for launcher in launchers for w in _workers(launcher.pid)]
    assert len(workers) == 2, workers
    os.kill(random.choice(workers), signal.SIGKILL)
    output = _finish(launchers)
    assert "resuming at " in output, "the run finished before the kill; nothing was resumed"
    _assert_bitwise_equal(ddp_run[0] / "model.safetensors", out / "model.safetensors")
    assert _iterations_logged(out) == _iterations_logged(ddp_run[0])


def test_unused_parameters_under_ddp_are_a_one_line_error(photos: Path, tmp_path: Path) -> None:
    # A tiny PromptIR: its prompt blocks hold parameters that the loss never reaches.
    tiny = "{dim: 8, num_blocks: [1, 1, 1, 1], num_refinement_blocks: 1, heads: [1, 1, 2, 2], "
    tiny += "prompt_dims: [8, 8, 16], prompt_sizes: [8, 4, 2]}"
    out = tmp_path / "unused"
    overrides = ["model.architecture=promptir", f"model.config={tiny}", "schedule.iterations=5"]
    command = [TORCHRUN, "--standalone", "--nproc_per_node=2", *_train_args(photos, out, *overrides)]
    proc = subprocess.run(
        [*command, *_cli_tail(out)], capture_output=True, text=True, env=_env(), timeout=300
    )
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("anyrestore train: error:")]
    assert errors and "set distributed.find_unused_parameters=true" in errors[0], proc.stderr[-3000:]


def test_resume_auto_and_the_run_lock(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "auto"

    def train(*extra: str) -> int:
        base = ["train", "tiny_denoise", f"data_root={photos}", *QUICK, "schedule.iterations=4"]
        return main([*base, "schedule.warmup=1", *extra, "--out", str(out), "--quiet"])

    with RunLock(out):  # a live run holds the folder
        assert train("--resume", "auto") == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"another run is writing into this folder (pid {os.getpid()} on" in err
    assert not list_checkpoints(out / CHECKPOINT_DIR)

    (out / ".lock").write_text("pid 999999 on a-dead-host\n")  # left by a dead run: no lock held
    assert train("--resume", "auto") == 0  # nothing to resume: starts
    assert "from scratch" in capsys.readouterr().out
    first = _weights(out / "model.safetensors")
    assert train("--resume", "auto") == 0  # complete: resumes at the end, nothing to redo
    assert "resuming at 4" in capsys.readouterr().out
    second = _weights(out / "model.safetensors")
    assert all(torch.equal(t, second["params"][n]) for n, t in first["params"].items())
    assert train("schedule.iterations=8", "--resume", "auto") == 1
    assert "recipe differs" in capsys.readouterr().err


def test_gradient_accumulation_matches_the_full_batch(photos: Path, tmp_path: Path) -> None:
    _train(photos, tmp_path / "full", "schedule.iterations=6", "data.train.batch_size=4")
    _train(
        photos,
        tmp_path / "accum",
        "schedule.iterations=6",
        "data.train.batch_size=4",
        "data.train.accumulate=2",
    )
    full, accum = (
        _weights(tmp_path / "full" / "model.safetensors"),
        _weights(tmp_path / "accum" / "model.safetensors"),
    )
    for name, tensor in full["params"].items():
        torch.testing.assert_close(accum["params"][name], tensor, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_and_keeps_fp32_weights(photos: Path, tmp_path: Path, precision: str) -> None:
    result = _train(
        photos,
        tmp_path / precision,
        f"precision={precision}",
        "schedule.iterations=4",
        "schedule.warmup=1",
        "ema.decay=0.9",
    )
    weights = _weights(result.weights)
    assert all(t.dtype == torch.float32 for group in weights.values() for t in group.values())
    entries = [json.loads(line) for line in (tmp_path / precision / "metrics.jsonl").read_text().splitlines()]
    assert np.isfinite(entries[-1]["loss"])


class _FreezeEncoders(Objective):
    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        for name, p in model.named_parameters():
            p.requires_grad_(not name.startswith("encoders."))
        return model


def test_only_trainable_parameters_change(photos: Path, tmp_path: Path) -> None:
    register_objective("freeze_encoders_test", lambda options: _FreezeEncoders())
    try:
        _train(
            photos,
            tmp_path / "frozen",
            "method.name=freeze_encoders_test",
            "schedule.iterations=4",
            "schedule.warmup=1",
        )
    finally:
        OBJECTIVES.pop("freeze_encoders_test")
    torch.manual_seed(0)  # the engine seeds the initial weights with the recipe's seed (0)
    initial = _recipe(photos)
    from anyrestore.models import build_model

    start = build_model(initial.model.architecture, **initial.model.config).state_dict()
    final = _weights(tmp_path / "frozen" / "model.safetensors")["params"]
    for name, tensor in final.items():
        if name.startswith("encoders."):
            assert torch.equal(tensor, start[name]), name
    assert not torch.equal(final["intro.weight"], start["intro.weight"])


def test_cli_train_errors_are_one_line(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli"

    def train(*extra: str) -> int:
        base = ["train", "tiny_denoise", f"data_root={photos}", *QUICK, "schedule.warmup=1"]
        return main([*base, *extra, "--out", str(out), "--quiet"])

    assert train("optim.lrr=1e-3") == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "optim.lrr: unknown key; did you mean 'lr'?" in err

    assert train("--resume") == 1
    assert "no complete checkpoint to resume from" in capsys.readouterr().err

    assert train("schedule.iterations=4") == 0
    assert train("schedule.iterations=4") == 1
    assert "already holds a run" in capsys.readouterr().err
    assert train("schedule.iterations=8", "--resume") == 1
    assert (
        "recipe differs from the one this run started with (schedule.iterations)" in capsys.readouterr().err
    )
    assert train("schedule.iterations=4", "--resume") == 0  # already complete: nothing to redo

    shutil.rmtree(out)
    assert train("data.train.sets.0.patch_size=4096") == 1
    err = capsys.readouterr().err
    assert "data.train.sets.0" in err and "smaller than the noise crop (4096px)" in err


def test_channels_last_trains_the_same_weights(photos: Path, tmp_path: Path) -> None:
    """channels_last changes the memory order of the model and batches only, not what is learned."""
    plain = _train(photos, tmp_path / "plain", "schedule.iterations=4", "schedule.warmup=1")
    last = _train(
        photos, tmp_path / "last", "schedule.iterations=4", "schedule.warmup=1", "channels_last=true"
    )
    wa, wb = _weights(plain.weights), _weights(last.weights)
    for name, tensor in wa["params"].items():
        torch.testing.assert_close(wb["params"][name], tensor, atol=1e-5, rtol=1e-4)
