"""One device resolver serves inference, training, RAM's ranking and the CLI: same names, same errors."""

from __future__ import annotations

import pytest
import torch

from anyrestore.devices import DeviceError, resolve_device
from anyrestore.errors import AnyRestoreError
from anyrestore.train.distributed import pick_device


def test_auto_and_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == expected
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu0", "cuda:x", ""])
def test_malformed_names_are_one_line_errors(name: str) -> None:
    with pytest.raises(DeviceError, match="unknown device") as info:
        resolve_device(name)
    assert isinstance(info.value, AnyRestoreError) and "\n" not in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine's message")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_missing_cuda_is_an_error(name: str) -> None:
    with pytest.raises(DeviceError, match="no cuda device is available"):
        resolve_device(name)


def test_training_picks_through_the_same_resolver() -> None:
    assert pick_device("cpu", local_rank=3) == torch.device("cpu")
    with pytest.raises(DeviceError, match="unknown device"):
        pick_device("gpu0")
    if torch.cuda.is_available():
        assert pick_device("auto", local_rank=0) == torch.device("cuda", 0)
    else:
        assert pick_device("auto", local_rank=2) == torch.device("cpu")
