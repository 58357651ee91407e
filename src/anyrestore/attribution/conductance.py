"""Layer conductance of every attribution unit along a discretised input path (the engine of MAC and IG).

For an image x in the model's input space and path points x_0 .. x_{n-1} (``x_t = multiplier_t * x``; the
multiplier is a per-pixel soft mask for MAC, a scalar for integrated gradients), the scalar target
F = :func:`edge_energy` of the bare model's output is back-propagated at every point, and for each unit l
with output y_l the elementwise conductance

    C_l = sum_{t=1}^{n-1} dF/dy_l(x_t) * (y_l(x_t) - y_l(x_{t-1}))

is accumulated. A unit's score for the image is mean |C_l| over its output elements (every call of a unit
that runs several times per forward counts as further elements; a unit that never runs scores 0). For a
layer that cuts the network, sum(C_l) approximates F(x_{n-1}) - F(x_0) (completeness) on a continuous
path, with an error that vanishes as the path is sampled more finely. MAC's path is not continuous (each
pixel appears with a jump), so there the sum is only a conductance-style score, not an exact split of F.

:func:`conductance` batches path points (and several images when they fit) into one forward/backward and
reads each unit's output gradient from a tensor hook as soon as autograd produces it, so gradients are never
all held at once; the last point of a chunk is carried over to the next one for the finite difference.
:func:`conductance_reference` does one point per forward pass and is the plain statement of the formula.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import nn
from tqdm import tqdm

from anyrestore.attribution.units import AttributionError, attribution_units, to_model_space, unit_modules
from anyrestore.models.normalize import bare_model

if TYPE_CHECKING:
    from anyrestore.attribution.ranking import Ranking

EDGE_EPS = 1e-12

# (image index, path point indices) -> multiplier of shape (len(points), 1 or C, H, W)
PathFn = Callable[[int, torch.Tensor], torch.Tensor]

Key = tuple[int, int, int]  # (unit index, call number within one forward, tensor number within the output)


def edge_energy(y: torch.Tensor, eps: float = EDGE_EPS) -> torch.Tensor:
    """Per-sample sum over channels and the (H-1) x (W-1) grid of sqrt(dx^2 + dy^2 + eps) (float32 or wider).

    sqrt has an infinite derivative at 0 (flat regions, e.g. a constant output); ``eps`` keeps it finite
    (the term's gradient is then 0 there). It shifts F by a constant, so conductances are unaffected.
    """
    y = y if y.dtype in (torch.float32, torch.float64) else y.float()
    dv = y[..., :-1, :-1] - y[..., 1:, :-1]
    dh = y[..., :-1, :-1] - y[..., :-1, 1:]
    return torch.sqrt(dv * dv + dh * dh + eps).flatten(1).sum(1)


@dataclass
class Attribution:
    """Per-image conductance statistics of every unit; ``units`` in model order, tensors on the CPU.

    ``scores[i, l]`` is mean |C_l| for image i, ``totals[i, l]`` the signed sum of C_l (completeness:
    about ``f_end[i] - f_start[i]`` for a layer that cuts the network), ``f_start`` / ``f_end`` the target
    at the first and last path point.
    """

    units: list[str]
    scores: torch.Tensor
    totals: torch.Tensor
    f_start: torch.Tensor
    f_end: torch.Tensor
    method: str
    steps: int

    def unit_scores(self) -> torch.Tensor:
        """Scores summed over images, one per unit (what a ranking sorts)."""
        return self.scores.sum(0)

    def ranking(self, meta: dict[str, str] | None = None) -> Ranking:
        """The units sorted by summed score, as a :class:`~anyrestore.attribution.ranking.Ranking`."""
        from anyrestore.attribution.ranking import Ranking

        info = {"method": self.method, "steps": str(self.steps), "images": str(self.scores.shape[0])}
        return Ranking.from_scores(
            self.units, self.unit_scores().tolist(), self.method, {**info, **(meta or {})}
        )


def _tensors(out: object) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, tuple | list):
        return [t for t in out if isinstance(t, torch.Tensor)]
    return []


def _replace(out: object, clones: dict[int, torch.Tensor]) -> object:
    """``out`` with its tensor parts (numbered as by :func:`_tensors`) swapped for ``clones``."""
    if isinstance(out, torch.Tensor):
        return clones.get(0, out)
    parts, n = [], 0
    for item in out:  # type: ignore[union-attr]
        if isinstance(item, torch.Tensor):
            parts.append(clones.get(n, item))
            n += 1
        else:
            parts.append(item)
    return type(out)(parts)


class _Capture:
    """Forward hooks on every unit that record ``(key, output)`` for one forward pass at a time.

    For units in ``clone`` (their output is later modified in place by the network, e.g. by an inplace
    activation) the network is handed a copy and the untouched original is recorded, so both the values
    and the gradients read are those of the unit's real output.
    """

    def __init__(self, modules: Sequence[nn.Module], clone: set[int] | None = None) -> None:
        self.records: list[tuple[Key, torch.Tensor]] = []
        self.versions: dict[Key, int] = {}
        self.clone = set() if clone is None else clone
        self._calls: dict[int, int] = {}
        self._handles = [m.register_forward_hook(partial(self._hook, i)) for i, m in enumerate(modules)]

    def _hook(self, index: int, module: nn.Module, args: object, out: object) -> object:
        call = self._calls.get(index, 0)
        self._calls[index] = call + 1
        clones: dict[int, torch.Tensor] = {}
        for part, tensor in enumerate(_tensors(out)):
            if not tensor.is_floating_point():
                continue
            self.records.append(((index, call, part), tensor))
            self.versions[(index, call, part)] = tensor._version
            if index in self.clone:
                clones[part] = tensor.clone()
        return _replace(out, clones) if clones else None

    def reset(self) -> None:
        self.records, self.versions, self._calls = [], {}, {}

    def modified(self) -> set[int]:
        """Units whose recorded output was changed in place after the hook saw it."""
        return {key[0] for key, t in self.records if t._version != self.versions[key]}

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


@contextmanager
def _prepared(model: nn.Module) -> Iterator[tuple[nn.Module, list[str], list[nn.Module]]]:
    """The bare model in eval mode with grad enabled; its training flag is restored afterwards."""
    bare = bare_model(model)
    units = attribution_units(bare)
    if not units:
        raise AttributionError("the model has no parameter-owning modules to attribute")
    modules = list(unit_modules(bare).values())
    was_training = bare.training
    bare.eval()
    try:
        with torch.enable_grad():
            yield bare, units, modules
    finally:
        bare.train(was_training)


def _model_images(
    model: nn.Module, bare: nn.Module, images: torch.Tensor | Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """[0, 1] images, one (1, 3, H, W) or (3, H, W) each or a batch, -> model-space (3, H, W) tensors."""
    param = next(bare.parameters())
    batch = list(images.unbind(0)) if isinstance(images, torch.Tensor) and images.dim() == 4 else list(images)
    if not batch:
        raise AttributionError("no images to attribute")
    out = []
    for image in batch:
        image = image[0] if image.dim() == 4 else image
        if image.dim() != 3 or image.shape[0] != 3:
            raise AttributionError(f"images must be (3, H, W) RGB, got shape {tuple(image.shape)}")
        x = image.to(device=param.device, dtype=param.dtype)
        out.append(to_model_space(model, x[None])[0].detach())
    return out


def _first_output(out: object) -> torch.Tensor:
    tensors = _tensors(out)
    if not tensors:
        raise AttributionError(f"the model returned {type(out).__name__}, not an image tensor")
    return tensors[0]


def _finish(
    units: list[str],
    sums: list[dict[Key, torch.Tensor]],
    f_start: list[float],
    f_end: list[float],
    method: str,
    steps: int,
) -> Attribution:
    """Per-image accumulated conductances -> scores (mean |C|) and totals (sum C) per unit."""
    scores = torch.zeros(len(sums), len(units), dtype=torch.float64)
    totals = torch.zeros_like(scores)
    for i, per_key in enumerate(sums):
        abs_sum = torch.zeros(len(units), dtype=torch.float64)
        count = torch.zeros(len(units), dtype=torch.float64)
        for (unit, _, _), c in per_key.items():
            abs_sum[unit] += c.abs().sum().double().cpu()
            totals[i, unit] += c.sum().double().cpu()
            count[unit] += c.numel()
        scores[i] = abs_sum / count.clamp_min(1)
    return Attribution(
        units,
        scores,
        totals,
        torch.tensor(f_start, dtype=torch.float64),
        torch.tensor(f_end, dtype=torch.float64),
        method,
        steps,
    )


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def conductance(
    model: nn.Module,
    images: torch.Tensor | Sequence[torch.Tensor],
    path: PathFn,
    points: int,
    *,
    batch_size: int = 16,
    method: str = "conductance",
    progress: bool = False,
) -> Attribution:
    """Conductance of every unit of ``model`` along ``path`` (``points`` points) for each [0, 1] image.

    ``path(i, t)`` gives the multipliers of image i at point indices ``t``. At most ``batch_size`` path
    points go through the network at once: whole paths of ``batch_size // points`` images when that is at
    least one, else chunks of ``batch_size`` points of one image. Images of equal size are grouped. Unit
    outputs must be batch-major (leading dimension a multiple of the batch, samples contiguous), as in
    every conv/transformer restorer here; :func:`conductance_reference` has no such requirement.
    """
    if points < 2:
        raise AttributionError(f"a path needs at least 2 points, got {points}")
    if batch_size < 1:
        raise AttributionError(f"batch_size must be at least 1, got {batch_size}")
    with _prepared(model) as (bare, units, modules):
        xs = _model_images(model, bare, images)
        per_group = max(1, batch_size // points)
        chunk = points if per_group > 1 else min(points, batch_size)
        groups: list[list[int]] = []
        for i, x in enumerate(xs):
            if groups and len(groups[-1]) < per_group and xs[groups[-1][0]].shape == x.shape:
                groups[-1].append(i)
            else:
                groups.append([i])

        sums: list[dict[Key, torch.Tensor]] = [{} for _ in xs]
        f_start, f_end = [0.0] * len(xs), [0.0] * len(xs)
        clone: set[int] = set()
        capture = _Capture(modules, clone)
        bar = tqdm(total=len(xs) * points, desc=method, unit="pt", disable=not progress, leave=False)
        try:
            for group in groups:
                base = torch.stack([xs[i] for i in group])  # (G, 3, H, W)
                g = len(group)
                acc: dict[Key, torch.Tensor] = {}
                carry: dict[Key, torch.Tensor] = {}
                for start in range(0, points, chunk):
                    steps = torch.arange(start, min(start + chunk, points))
                    k = len(steps)
                    mult = torch.stack([path(i, steps) for i in group]).to(base)  # (G, k, c, H, W)
                    inputs = (mult * base[:, None]).reshape(g * k, *base.shape[1:])
                    f = _chunk(bare, capture, inputs.requires_grad_(), g, k, acc, carry)
                    if start == 0:
                        for j, i in enumerate(group):
                            f_start[i] = float(f[j, 0])
                    if start + k == points:
                        for j, i in enumerate(group):
                            f_end[i] = float(f[j, -1])
                    bar.update(g * k)
                for key, c in acc.items():
                    for j, i in enumerate(group):
                        sums[i][key] = c[j]
        finally:
            bar.close()
            capture.close()
    return _finish(units, sums, f_start, f_end, method, points)


def _chunk(
    bare: nn.Module,
    capture: _Capture,
    inputs: torch.Tensor,
    g: int,
    k: int,
    acc: dict[Key, torch.Tensor],
    carry: dict[Key, torch.Tensor],
) -> torch.Tensor:
    """One forward/backward of ``g`` images x ``k`` consecutive path points; returns F as (g, k)."""
    batch = g * k
    for _ in range(2):  # a second pass only if some unit's output turned out to be modified in place
        capture.reset()
        out = _first_output(bare(inputs))
        records = list(capture.records)
        stale = capture.modified()
        if not stale - capture.clone:
            break
        capture.clone |= stale
    else:  # pragma: no cover - cloning removes every in-place change seen
        raise AttributionError("unit outputs keep changing in place; cannot attribute this model")
    f = edge_energy(out)

    values: dict[Key, torch.Tensor] = {}
    for key, t in records:
        if t.dim() == 0 or t.shape[0] % batch:
            raise AttributionError(
                f"unit output of shape {tuple(t.shape)} is not batch-major for a batch of {batch}; "
                "use the step-by-step reference"
            )
        y = t.detach().reshape(g, k, -1)
        values[key] = y
        if key not in acc:
            acc[key] = torch.zeros(g, y.shape[-1], dtype=_acc_dtype(y.dtype), device=y.device)
        if t.requires_grad:
            t.register_hook(partial(_accumulate, key, values, acc, carry))
    torch.autograd.grad(f.sum(), inputs)
    for key, y in values.items():
        carry[key] = y[:, -1:].clone()
    return f.detach().reshape(g, k)


def _accumulate(
    key: Key,
    values: dict[Key, torch.Tensor],
    acc: dict[Key, torch.Tensor],
    carry: dict[Key, torch.Tensor],
    grad: torch.Tensor,
) -> None:
    y = values[key]
    g = grad.reshape(y.shape)
    prev = carry.get(key)
    if prev is None:  # the group's first chunk: point 0 has nothing before it
        diff, g = y[:, 1:] - y[:, :-1], g[:, 1:]
    else:
        diff = y - torch.cat([prev, y[:, :-1]], dim=1)
    acc[key] += (g * diff).sum(1).to(acc[key].dtype)


def conductance_reference(
    model: nn.Module,
    images: torch.Tensor | Sequence[torch.Tensor],
    path: PathFn,
    points: int,
    *,
    method: str = "conductance",
    progress: bool = False,
) -> Attribution:
    """Same result as :func:`conductance`, one path point per forward/backward pass (slow, plain)."""
    if points < 2:
        raise AttributionError(f"a path needs at least 2 points, got {points}")
    with _prepared(model) as (bare, units, modules):
        xs = _model_images(model, bare, images)
        capture = _Capture(modules, clone=set(range(len(modules))))
        sums: list[dict[Key, torch.Tensor]] = []
        f_start, f_end = [], []
        bar = tqdm(total=len(xs) * points, desc=method, unit="pt", disable=not progress, leave=False)
        try:
            for i, x in enumerate(xs):
                c: dict[Key, torch.Tensor] = {}
                previous: dict[Key, torch.Tensor] = {}
                for t in range(points):
                    inputs = (path(i, torch.tensor([t])).to(x) * x)[:1].requires_grad_()
                    capture.reset()
                    f = edge_energy(_first_output(bare(inputs))).sum()
                    keys = [key for key, _ in capture.records]
                    outs = [y for _, y in capture.records]
                    needs = [y for y in outs if y.requires_grad]
                    found = iter(torch.autograd.grad(f, needs, allow_unused=True) if needs else ())
                    grads = [next(found) if y.requires_grad else None for y in outs]
                    for key, y, grad in zip(keys, outs, grads, strict=True):
                        y = y.detach()
                        if key not in c:
                            c[key] = torch.zeros(y.shape, dtype=_acc_dtype(y.dtype), device=y.device)
                        if t > 0 and grad is not None:
                            c[key] += grad * (y - previous[key])
                        previous[key] = y
                    if t == 0:
                        f_start.append(float(f.detach()))
                    f_end_value = float(f.detach())
                    bar.update(1)
                f_end.append(f_end_value)
                sums.append(c)
        finally:
            bar.close()
            capture.close()
    return _finish(units, sums, f_start, f_end, method, points)
