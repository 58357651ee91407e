"""The training stream: an endless, reproducible sequence of samples, shared out over processes.

Sample ``p`` of the stream (its *position*) is a pure function of the run's seed and ``p``:

- :class:`Shuffled` walks a dataset in a new random order every epoch (the order seeded by the epoch);
- :class:`RoundRobin` takes its sources in turn, position ``p`` from source ``p % T`` (RAM's task streams);
- :class:`Weighted` picks a source at random with given weights, then a uniformly random item of it;
- :class:`SampleStream` seeds each sample's generator with ``(seed, "sample", p)``.

:class:`StreamSampler` gives iteration ``i`` the positions ``[(i - 1) * B, i * B)`` of the global batch
``B``, each process its own slice, so a run resumed at any iteration sees exactly the samples it would
have seen, and N processes see together what one process with the same global batch sees.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import torch
from torch.utils.data import Dataset, Sampler

from anyrestore.data.base import RestorationDataset, Sample
from anyrestore.data.files import DataError
from anyrestore.data.seeding import make_generator


class Source(Protocol):
    """Anything that turns a stream position into a sample."""

    def __len__(self) -> int: ...

    def draw(self, position: int, generator: torch.Generator) -> Sample: ...


class Shuffled:
    """A dataset read in a fresh random order each epoch (``shuffle=False``: in order)."""

    def __init__(
        self, dataset: RestorationDataset, *, seed: int, key: str = "", shuffle: bool = True
    ) -> None:
        if len(dataset) == 0:
            raise DataError(f"task '{dataset.task}': dataset is empty")
        self.dataset, self.seed, self.key, self.shuffle = dataset, seed, key, shuffle
        self._epoch, self._order = -1, torch.arange(0)

    def __len__(self) -> int:
        return len(self.dataset)

    def index(self, position: int) -> int:
        """The dataset item at ``position`` of this source's own stream."""
        epoch, offset = divmod(position, len(self.dataset))
        if not self.shuffle:
            return offset
        if epoch != self._epoch:
            generator = make_generator(self.seed, "order", self.key, epoch)
            self._epoch, self._order = epoch, torch.randperm(len(self.dataset), generator=generator)
        return int(self._order[offset])

    def draw(self, position: int, generator: torch.Generator) -> Sample:
        return self.dataset.sample(self.index(position), generator)


class RoundRobin:
    """Sources taken in turn, one sample each."""

    def __init__(self, sources: Sequence[Source]) -> None:
        if not sources:
            raise DataError("a round-robin mixture needs at least one dataset")
        self.sources = list(sources)

    def __len__(self) -> int:
        return len(self.sources) * max(len(s) for s in self.sources)

    def draw(self, position: int, generator: torch.Generator) -> Sample:
        inner, k = divmod(position, len(self.sources))
        return self.sources[k].draw(inner, generator)


class Weighted:
    """A source drawn at random with probability proportional to its weight, then a random item of it."""

    def __init__(self, sources: Sequence[Source], weights: Sequence[float]) -> None:
        if not sources or len(weights) != len(sources):
            raise DataError(f"a weighted mixture needs one weight per dataset ({len(sources)} datasets)")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise DataError(f"mixture weights must be >= 0 with a positive sum, got {list(weights)}")
        self.sources = list(sources)
        self.weights = torch.tensor([float(w) for w in weights], dtype=torch.float64)

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def draw(self, position: int, generator: torch.Generator) -> Sample:
        t = int(torch.multinomial(self.weights, 1, generator=generator).item())
        source = self.sources[t]
        return source.draw(int(torch.randint(len(source), (1,), generator=generator).item()), generator)


class SampleStream(Dataset):
    """Map-style view of a source: ``stream[p]`` is the sample at position ``p``."""

    def __init__(self, source: Source, seed: int) -> None:
        self.source, self.seed = source, seed

    def __getitem__(self, position: int) -> Sample:
        return self.source.draw(position, make_generator(self.seed, "sample", position))


class StreamSampler(Sampler[int]):
    """Endless positions for one process: micro-batch ``m`` of iteration ``i`` on rank ``r`` is

    ``(i - 1) * B + m * (W * b) + r * b + [0, b)`` with ``b = B / (W * accumulate)`` per micro-batch.
    """

    def __init__(
        self,
        global_batch: int,
        *,
        start_iteration: int = 0,
        rank: int = 0,
        world_size: int = 1,
        accumulate: int = 1,
    ) -> None:
        self.micro = micro_batch_size(global_batch, world_size, accumulate)
        self.global_batch, self.start = global_batch, start_iteration
        self.rank, self.world_size, self.accumulate = rank, world_size, accumulate

    def __iter__(self) -> Iterator[int]:
        b, step = self.micro, self.micro * self.world_size
        iteration = self.start
        while True:
            base = iteration * self.global_batch + self.rank * b
            for m in range(self.accumulate):
                yield from range(base + m * step, base + m * step + b)
            iteration += 1


def micro_batch_size(global_batch: int, world_size: int, accumulate: int) -> int:
    """Samples per process and micro-batch; the global batch must split evenly."""
    parts = world_size * accumulate
    if global_batch < 1 or global_batch % parts:
        raise DataError(
            f"batch_size {global_batch} does not split evenly over {world_size} process(es) x "
            f"{accumulate} accumulation step(s)"
        )
    return global_batch // parts


def collate(samples: list[Sample]) -> Sample:
    """Stack a list of samples into a batch; samples of different sizes are a clear error."""
    batch: Sample = {}
    for key in ("lq", "gt", "labels", "before"):
        present = [s[key] for s in samples if key in s]
        if not present:
            continue
        if len(present) != len(samples):
            raise DataError(
                f"a batch mixes samples with and without '{key}' (tasks must agree on labels and before)"
            )
        shapes = {tuple(t.shape) for t in present}
        if len(shapes) > 1:
            detail = ", ".join(f"{s['task']}: {tuple(s[key].shape)}" for s in samples[:4])
            raise DataError(f"a batch mixes '{key}' sizes ({detail}); use one patch size and scale per run")
        batch[key] = torch.stack(present)
    batch["task"] = [s["task"] for s in samples]
    batch["path"] = [s["path"] for s in samples]
    return batch
