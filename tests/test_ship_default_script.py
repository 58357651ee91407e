"""scripts/ship_default.py: a run's EMA weights become an embedded model's file, with how it is run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from anyrestore.models.checkpoint import load_model, read_checkpoint, save_model
from anyrestore.models.descriptor import ModelDescriptor

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ship_default.py"
TINY = {"width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1], "context_width": 8}


@pytest.fixture()
def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("ship_default", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "WEIGHTS", tmp_path / "weights")
    (tmp_path / "weights").mkdir()
    return module


def test_ships_the_ema_weights_under_the_embedded_name(script, tmp_path: Path) -> None:
    descriptor = ModelDescriptor.for_architecture("context_nafnet", TINY)
    torch.manual_seed(0)
    raw, ema = descriptor.build(), descriptor.build()
    with torch.no_grad():
        for p in ema.parameters():
            p.normal_(0.0, 0.1)
    run = save_model(tmp_path / "model.safetensors", descriptor, raw, ema)

    script.main([str(run), "--as", "default-v2"])
    shipped = tmp_path / "weights" / "default-v2.safetensors"
    contents, _ = read_checkpoint(shipped)
    assert set(contents) == {"params"}  # the EMA weights only, as params
    loaded = load_model(shipped)
    assert all(torch.equal(loaded.module.state_dict()[k], v) for k, v in ema.state_dict().items())
    assert "self_ensemble" not in loaded.descriptor.extra

    script.main([str(shipped), "--as", "default-v1", "--self-ensemble", "flips"])
    assert (
        load_model(tmp_path / "weights" / "default-v1.safetensors").descriptor.extra["self_ensemble"]
        == "flips"
    )
    with pytest.raises(SystemExit):
        script.main([str(run), "--as", "default"])  # an alias: ship its file under its own name
