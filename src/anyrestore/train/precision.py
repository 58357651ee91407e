"""Mixed precision: autocast for the forward pass, and a gradient scaler where fp16 needs one.

``fp32`` runs as is; ``bf16`` autocasts to bfloat16 (same exponent range as fp32, no scaler);
``fp16`` autocasts to float16 and scales the loss so small gradients survive, skipping steps whose
gradients overflow. Weights, optimiser state and EMA stay float32 in every mode.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Precision:
    name: str
    device_type: str
    scaler: torch.amp.GradScaler | None

    @classmethod
    def create(cls, name: str, device: torch.device) -> Precision:
        if name not in DTYPES:
            raise ValueError(f"unknown precision {name!r}; known: {', '.join(DTYPES)}")
        scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None
        return cls(name, device.type, scaler)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context for the forward pass and the loss."""
        dtype = DTYPES[self.name]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring gradients back to their true scale (before clipping them)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
