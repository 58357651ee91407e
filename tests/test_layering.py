"""The models layer imports nothing built on it (docs/design overview: arrows point to what a layer may
import); an adapter run's weights still open whole, through the format plugins."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch

import anyrestore
from anyrestore.adapters import inject
from anyrestore.adapters.io import records_adapters
from anyrestore.models.checkpoint import CheckpointError, load_model, save_model
from anyrestore.models.descriptor import ModelDescriptor
from anyrestore.models.zoo import resolve_model

ABOVE_MODELS = {
    "adapters",
    "attribution",
    "methods",
    "train",
    "inference",
    "cli",
    "serve",
    "export",
    "benchmark",
}


def test_models_import_nothing_above_them() -> None:
    folder = Path(anyrestore.__file__).parent / "models"
    upward = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            upward += [f"{path.name}: {n}" for n in names if n.split(".")[:2][-1] in ABOVE_MODELS]
    assert upward == []


def test_adapter_run_weights_open_through_the_plugin(tmp_path: Path) -> None:
    tiny = {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "heads": [1, 2, 2, 4]}
    descriptor = ModelDescriptor.for_architecture("restormer", tiny)
    torch.manual_seed(0)
    model = descriptor.build().eval()
    record = inject(model, "lora")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    recorded = dataclasses.replace(descriptor, adapters=({"method": record.method, "config": record.config},))
    path = save_model(tmp_path / "model.safetensors", recorded, model)
    assert records_adapters(path)
    x = torch.rand(1, 3, 16, 16)
    loaded = resolve_model(path)  # what anyrestore.load_model and every --model use
    with torch.no_grad():
        assert torch.equal(loaded.module(x), model(x))
    with pytest.raises(CheckpointError, match=r"with an adapter \(lora\); open it with anyrestore"):
        load_model(path)  # the models layer alone cannot build the adapter, and says where to go
