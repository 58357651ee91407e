"""Seeds derived from names and numbers, so every random draw of the data pipeline is reproducible.

A sample's randomness (crop, flips, degradation parameters and noise) comes from a generator seeded by
``derive_seed(run seed, "sample", position)``: a pure function of the run's seed and the sample's position
in the stream. Nothing about the data pipeline needs saving to resume a run exactly, and the result does
not depend on the number of data-loading workers or processes.
"""

from __future__ import annotations

import hashlib

import torch

SEED_BITS = 63


def derive_seed(*keys: int | str) -> int:
    """A 63-bit seed that depends only on ``keys`` (stable across runs, machines and Python versions)."""
    text = "\x1f".join(f"{type(k).__name__}:{k}" for k in keys)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> (64 - SEED_BITS)


def make_generator(*keys: int | str, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with :func:`derive_seed` of ``keys``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(*keys))
    return generator
