"""``anyrestore.restore()`` in a loop loads the model and sizes its tiles once, not once per call."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import anyrestore
from anyrestore.inference import api
from anyrestore.inference.restorer import Restorer


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    counts = {"loads": 0, "probes": 0}
    load, probe = api.resolve_model, Restorer.auto_tile

    def counting_load(*args, **kwargs):
        counts["loads"] += 1
        return load(*args, **kwargs)

    def counting_probe(self):
        counts["probes"] += 1
        return probe(self)

    monkeypatch.setattr(api, "resolve_model", counting_load)
    monkeypatch.setattr(Restorer, "auto_tile", counting_probe)
    api.clear_cache()
    yield counts
    api.clear_cache()


def test_repeated_calls_load_and_probe_once(tiny_checkpoint: Path, counted: dict[str, int]) -> None:
    x = torch.rand(3, 20, 30)
    first = anyrestore.restore(x, model=tiny_checkpoint, device="cpu")
    for _ in range(3):
        again = anyrestore.restore(x, model=str(tiny_checkpoint), device="cpu")
    assert torch.equal(first, again)
    assert counted == {"loads": 1, "probes": 1}
    anyrestore.restore(x, model=tiny_checkpoint, device="cpu", tile=0)  # other options: another restorer
    assert counted["loads"] == 2


def test_a_changed_file_is_reloaded(tiny_checkpoint: Path, counted: dict[str, int]) -> None:
    x = torch.rand(3, 16, 16)
    anyrestore.restore(x, model=tiny_checkpoint, tile=0)
    stat = tiny_checkpoint.stat()
    os.utime(tiny_checkpoint, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    anyrestore.restore(x, model=tiny_checkpoint, tile=0)
    assert counted["loads"] == 2


def test_restorer_is_the_api_for_loops(tiny_checkpoint: Path) -> None:
    restorer = anyrestore.Restorer(anyrestore.load_model(tiny_checkpoint), tile=0)
    x = torch.rand(3, 16, 16)
    assert torch.equal(anyrestore.restore(x, model=restorer), restorer(x))
