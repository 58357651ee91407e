"""safetensors files are read in one place (anyrestore.io.tensors): checkpoints, adapters and bundles."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import anyrestore
from anyrestore.adapters import AdapterError, read_adapter
from anyrestore.io.tensors import read_safetensors, read_safetensors_metadata
from anyrestore.methods.abair.bundle import is_bundle, read_bundle
from anyrestore.methods.abair.errors import ABAIRError
from anyrestore.models.checkpoint import CheckpointError, read_checkpoint


def test_tensors_and_metadata(tmp_path: Path) -> None:
    path = tmp_path / "t.safetensors"
    save_file({"a": torch.arange(3.0), "b.c": torch.ones(2, 2)}, str(path), metadata={"k": "v"})
    tensors, metadata = read_safetensors(path)
    assert metadata == {"k": "v"} and read_safetensors_metadata(path) == {"k": "v"}
    assert torch.equal(tensors["a"], torch.arange(3.0)) and tensors["b.c"].shape == (2, 2)
    save_file({"a": torch.zeros(1)}, str(path))
    assert read_safetensors(path)[1] == {} and read_safetensors_metadata(path) == {}
    assert read_checkpoint(path)[1] is None


@pytest.mark.parametrize(
    ("read", "error"),
    [(read_checkpoint, CheckpointError), (read_adapter, AdapterError), (read_bundle, ABAIRError)],
)
def test_each_reader_reports_a_broken_file_in_its_own_error(read, error, tmp_path: Path) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(error, match=r"broken.safetensors: not a readable safetensors file \("):
        read(path)
    assert read_safetensors_metadata(path) is None and not is_bundle(path)


def test_no_other_reader_opens_safetensors_itself() -> None:
    src = Path(anyrestore.__file__).parent
    openers = [
        str(p.relative_to(src)) for p in src.rglob("*.py") if "safe_open" in p.read_text(encoding="utf-8")
    ]
    assert openers == ["io/tensors.py"]
