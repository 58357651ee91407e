"""Loading every supported checkpoint layout, strictly and without unpickling arbitrary objects."""

from __future__ import annotations

import argparse
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import anyrestore
from anyrestore.models import build_model
from anyrestore.models.checkpoint import (
    CheckpointError,
    load_model,
    load_strict,
    save_model,
    unwrap_state_dict,
)
from anyrestore.models.descriptor import ModelDescriptor

TINY = {
    "nafnet": {"width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]},
    "restormer": {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "heads": [1, 1, 1, 1]},
    "promptir": {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1},
    "ram_promptir": {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1},
    "swinir": {"img_size": 16, "embed_dim": 12, "depths": [2], "num_heads": [2], "window_size": 4},
    "ram_swinir": {"img_size": 16, "embed_dim": 12, "depths": [2], "num_heads": [2], "window_size": 4},
}


def _tiny(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(name, **TINY[name]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def _output(model: torch.nn.Module) -> torch.Tensor:
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model(x)


def _wrappers(sd: dict[str, torch.Tensor]) -> dict[str, object]:
    decoy = {k: torch.zeros_like(v) for k, v in sd.items()}
    return {
        "raw": sd,
        "params": {"params": sd},
        "params_ema": {"params": decoy, "params_ema": sd},
        "lightning": {
            "state_dict": {f"net.{k}": v for k, v in sd.items()},
            "hyper_parameters": argparse.Namespace(lr=2e-4, path=Path("/data")),
            "epoch": 120,
            "pytorch-lightning_version": "2.1.0",
        },
        "ddp": {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        "model": {"model": sd, "optimizer": {"lr": 1.0}},
    }


@pytest.mark.parametrize("arch", sorted(TINY))
def test_every_official_layout_loads_and_reproduces_outputs(tmp_path: Path, arch: str) -> None:
    model = _tiny(arch)
    expected = _output(model)
    sd = model.state_dict()
    for layout, contents in _wrappers(sd).items():
        path = tmp_path / f"{layout}.pth"
        torch.save(contents, path)
        loaded = load_model(path)
        assert loaded.descriptor.architecture == arch, layout
        assert torch.equal(_output(loaded.module), expected), layout
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "raw.safetensors"))
    assert torch.equal(_output(load_model(tmp_path / "raw.safetensors").module), expected)


def test_params_ema_is_preferred(tmp_path: Path) -> None:
    model = _tiny("nafnet")
    sd = model.state_dict()
    torch.save(_wrappers(sd)["params_ema"], tmp_path / "a.pth")
    loaded = load_model(tmp_path / "a.pth")
    assert loaded.source == "params_ema"
    assert torch.equal(_output(loaded.module), _output(model))
    assert load_model(tmp_path / "a.pth", prefer_ema=False).source == "params"


def test_own_format_round_trip_is_bitwise(tmp_path: Path) -> None:
    model, ema = _tiny("nafnet", 0), _tiny("nafnet", 1)
    descriptor = ModelDescriptor.for_architecture("nafnet", TINY["nafnet"], note="test")
    save_model(tmp_path / "m.safetensors", descriptor, model, ema)
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.descriptor == descriptor and loaded.source == "params_ema"
    assert torch.equal(_output(loaded.module), _output(ema))
    assert torch.equal(
        _output(load_model(tmp_path / "m.safetensors", prefer_ema=False).module), _output(model)
    )
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
    # The public API.
    module, desc = anyrestore.load_model(tmp_path / "m.safetensors")
    assert desc.architecture == "nafnet" and not module.training


def test_code_in_a_checkpoint_is_refused_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    sd = _tiny("nafnet").state_dict()
    with open(tmp_path / "evil.pth", "wb") as f:
        torch.save({"params": sd, "payload": Evil()}, f, pickle_module=pickle)
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "evil.pth")
    assert "posix.system" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"missing\.pth: no such file"):
        load_model(tmp_path / "missing.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pth: empty file"):
        load_model(tmp_path / "empty.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"junk\.pth: not a readable PyTorch checkpoint"):
        load_model(tmp_path / "junk.pth")
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other\.pth: unrecognised architecture \(1 tensors"):
        load_model(tmp_path / "other.pth")
    sd = _tiny("nafnet").state_dict()
    sd.pop("ending.bias")
    torch.save(sd, tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match=r"cut\.pth: keys are not those of a nafnet model"):
        load_model(tmp_path / "cut.pth", architecture="nafnet")


def test_strict_load_lists_missing_unexpected_and_mismatched_keys() -> None:
    model = _tiny("nafnet")
    sd = dict(model.state_dict())
    sd.pop("ending.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["intro.weight"] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(CheckpointError) as info:
        load_strict(model, sd, "x.pth")
    text = str(info.value)
    assert "missing keys: ending.bias" in text and "unexpected keys: extra.weight" in text
    assert "shape mismatch: intro.weight (file 1x1x1x1, model 8x3x3x3)" in text and "\n" not in text


def test_unwrap_reports_what_it_found() -> None:
    sd = {"a": torch.zeros(1)}
    assert unwrap_state_dict({"params_ema": sd, "params": sd})[1] == "params_ema"
    assert unwrap_state_dict({"state_dict": sd, "epoch": 3})[1] == "state_dict"
    with pytest.raises(ValueError, match="no tensors found"):
        unwrap_state_dict({"epoch": 3})


def test_one_wrong_shape_lists_the_key_and_both_shapes(tmp_path: Path) -> None:
    sd = dict(_tiny("nafnet").state_dict())
    sd["middle_blks.0.conv3.bias"] = torch.zeros(5)  # the model has 32
    torch.save({"params": sd}, tmp_path / "bent.pth")
    for kwargs in ({}, {"architecture": "nafnet"}):
        with pytest.raises(CheckpointError) as info:
            load_model(tmp_path / "bent.pth", **kwargs)
        text = str(info.value)
        assert text.startswith(f"{tmp_path / 'bent.pth'}: the keys are those of a nafnet model"), text
        assert "1 tensor(s) have other shapes: middle_blks.0.conv3.bias (file 5, model 32)" in text
        assert "unrecognised" not in text and "\n" not in text


def test_nan_or_inf_weights_are_refused_naming_the_file(tmp_path: Path) -> None:
    sd = dict(_tiny("nafnet").state_dict())
    sd["ending.bias"] = torch.full_like(sd["ending.bias"], float("nan"))
    sd["intro.weight"] = sd["intro.weight"].clone()
    sd["intro.weight"][0, 0, 0, 0] = float("inf")
    torch.save(sd, tmp_path / "nan.pth")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "nan.pth")
    text = str(info.value)
    assert text.startswith(f"{tmp_path / 'nan.pth'}: 2 tensor(s) hold NaN or Inf values")
    assert "intro.weight" in text and "ending.bias" in text


def test_unreadable_pickle_error_never_advises_weights_only_false(tmp_path: Path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    (tmp_path / "slice.pth").write_bytes(pickle.dumps(slice(1, 2)))
    for name in ("junk.pth", "slice.pth"):
        with pytest.raises(CheckpointError) as info:
            load_model(tmp_path / name)
        text = str(info.value)
        assert "not a readable PyTorch checkpoint" in text and "\n" not in text
        assert "weights_only" not in text and "trusted source" not in text, text
