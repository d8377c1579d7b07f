"""The `Metric` base class (state that accumulates over a split and is reduced across DDP ranks), `Mean` and
`Accuracy`.

A metric is updated once per batch and computed once per split::

    metric.reset()
    for batch in loader:
        metric.update(outputs, targets)
    values = metric.compute()        # {"acc": 0.991, "top5": 1.0}

Its state is a few named tensors registered with `Metric.add_state`, each with a reduction: ``"sum"``
(counts and sums; all-reduced) or ``"cat"`` (per-sample values; all-gathered). When ``torch.distributed``
is initialised, `Metric.compute` reduces a *copy* of the state over every rank, so every rank returns the
same values and the local state is left alone. `compute` is therefore a collective: every rank must call
it, for the same metrics in the same order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch

Reduction = Literal["sum", "cat"]


# ---------------------------------------------------------------------------------------------- DDP helpers
def distributed() -> bool:
    """True when a ``torch.distributed`` process group is initialised (so `compute` reduces over ranks)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _collective_device(tensor: torch.Tensor) -> torch.device:
    """Where `tensor` must live for a collective: NCCL only moves CUDA tensors, gloo only CPU ones."""
    backend = str(torch.distributed.get_backend())
    if tensor.device.type == "cuda" and "gloo" in backend and "nccl" not in backend:
        return torch.device("cpu")
    if tensor.device.type != "cuda" and "nccl" in backend and "gloo" not in backend:
        return torch.device("cuda", torch.cuda.current_device())
    return tensor.device


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of `tensor` over every rank (a new tensor on `tensor`'s device); `tensor` itself when not
    distributed."""
    if not distributed():
        return tensor
    work = tensor.detach().to(_collective_device(tensor), copy=True)
    torch.distributed.all_reduce(work)
    return work.to(tensor.device)


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's `tensor` concatenated along dim 0 in rank order; ranks may hold different lengths."""
    if not distributed():
        return tensor
    device = _collective_device(tensor)
    world = torch.distributed.get_world_size()
    # all_gather needs equal shapes: share the lengths, pad every shard to the longest, then cut.
    length = torch.tensor([tensor.shape[0]], device=device)
    lengths = [torch.zeros_like(length) for _ in range(world)]
    torch.distributed.all_gather(lengths, length)
    longest = int(max(n.item() for n in lengths))
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=device)
    padded[: tensor.shape[0]] = tensor.detach()
    shards = [torch.empty_like(padded) for _ in range(world)]
    torch.distributed.all_gather(shards, padded)
    return torch.cat([s[: int(n.item())] for s, n in zip(shards, lengths)]).to(tensor.device)


def float64_device(device: torch.device) -> torch.device:
    """Where float64 state for `device` lives: `device` itself, or the CPU for MPS (which has no float64)."""
    return torch.device("cpu") if device.type == "mps" else device


# ---------------------------------------------------------------------------------------------- base class
class Metric:
    """A value over a whole split, accumulated batch by batch.

    Subclasses register their state in ``__init__`` with `add_state`, fold a batch into it in `update`,
    and turn the (already reduced) state into named floats in `_compute`. `higher_is_better` names, for
    each output, the direction in which it improves (early stopping, hyper-parameter search and the model
    cards read it).
    """

    higher_is_better: dict[str, bool]

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self._defaults: dict[str, torch.Tensor] = {}
        self._reductions: dict[str, Reduction] = {}

    # state ----------------------------------------------------------------------------------------------
    def add_state(self, name: str, default: torch.Tensor, reduce: Reduction = "sum") -> None:
        """Register state `name`, starting at `default` after every `reset`.

        ``"sum"`` state is a tensor that `update` adds to; ``"cat"`` state is a list of tensors that
        `update` appends to (concatenated along dim 0 when computed), with `default` as the empty template
        (e.g. ``torch.zeros(0, 128)``).
        """
        if reduce not in ("sum", "cat"):
            raise ValueError(f"reduce must be 'sum' or 'cat', not {reduce!r}")
        self._defaults[name] = default.detach().clone()
        self._reductions[name] = reduce
        self._reset_state(name)

    def _reset_state(self, name: str) -> None:
        default = self._defaults[name]
        device = float64_device(self.device) if default.dtype == torch.float64 else self.device
        value = default.to(device, copy=True)
        setattr(self, name, value if self._reductions[name] == "sum" else [])

    def reset(self) -> None:
        """Forget everything accumulated since the last reset."""
        for name in self._defaults:
            self._reset_state(name)

    def _state(self, name: str) -> torch.Tensor:
        """State `name` of this process: the tensor, or the concatenation of the ``"cat"`` list."""
        value = getattr(self, name)
        if self._reductions[name] == "sum":
            return value
        default = self._defaults[name]
        return torch.cat(value) if value else default.to(self.device, copy=True)

    def synced_state(self) -> dict[str, torch.Tensor]:
        """Every state reduced over all ranks (summed or concatenated); this process's own when not
        distributed. The metric's state itself is not changed."""
        state = {}
        for name in self._defaults:  # registration order: the same on every rank
            local = self._state(name)
            state[name] = all_reduce_sum(local) if self._reductions[name] == "sum" else all_gather_cat(local)
        return state

    # API ------------------------------------------------------------------------------------------------
    def update(self, outputs: Any, targets: Any) -> None:
        """Fold one batch into the state."""
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        """The named values over everything since `reset`, reduced over every rank when distributed."""
        return self._compute(self.synced_state())

    def _compute(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        raise NotImplementedError

    def to(self, device: torch.device | str) -> Metric:
        """Keep the state on `device` (that of the model's outputs, so `update` needs no copies)."""
        self.device = torch.device(device)
        for name, reduce in self._reductions.items():
            value = getattr(self, name)
            dev = float64_device(self.device) if self._defaults[name].dtype == torch.float64 else self.device
            setattr(self, name, value.to(dev) if reduce == "sum" else [v.to(dev) for v in value])
        return self

    @property
    def names(self) -> list[str]:
        """The keys `compute` returns."""
        return list(self.higher_is_better)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self.names)})"


# ------------------------------------------------------------------------------------------------- Mean
class Mean(Metric):
    """The running mean of a per-sample value (a loss, a per-image PSNR): sum of values / number of samples.

    ``update(values)`` takes a tensor of per-sample values; ``update(total, count)`` takes their sum over
    the batch (a float or a 0-d tensor) and how many samples it covers. A tensor is summed in its own dtype
    (as ``values.sum()``) and the batch sums are accumulated in float64, which is exactly what the
    engine's ``(sum, count)`` evaluation did, so a value computed either way is the same float.
    """

    def __init__(self, name: str, higher_is_better: bool = False):
        super().__init__()
        self.name = name
        self.higher_is_better = {name: higher_is_better}
        self.add_state("total", torch.zeros((), dtype=torch.float64))
        self.add_state("count", torch.zeros((), dtype=torch.float64))

    def update(self, outputs: torch.Tensor | float, targets: int | float | None = None) -> None:
        values, count = outputs, targets
        if count is None:
            if not isinstance(values, torch.Tensor):
                raise TypeError(
                    "Mean.update(values) needs a tensor of per-sample values; pass a count with a sum"
                )
            count = values.numel()
            values = values.detach().sum()
        elif isinstance(values, torch.Tensor) and values.numel() != 1:
            raise ValueError(
                f"Mean.update(total, count) takes the batch's sum, got a {tuple(values.shape)} tensor"
            )
        total = (
            values.detach().reshape(()).to(self.total.device, torch.float64)
            if isinstance(values, torch.Tensor)
            else values
        )
        self.total += total
        self.count += float(count)

    def _compute(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        total, count = float(state["total"]), float(state["count"])
        return {self.name: total / count if count else math.nan}


# --------------------------------------------------------------------------------------------- Accuracy
class Accuracy(Metric):
    """Top-k accuracy of logits ``(N, C)`` against integer targets ``(N,)``: the fraction of samples whose
    target is among the k highest logits.

    k is capped at the number of classes (top-5 of a 3-class problem is top-3, i.e. 1.0). Top-1 is the
    arg-max, which on ties picks the first class, exactly as ``logits.argmax(1) == y`` does. Counts are
    integers, so the result is ``correct / count`` exactly, on any number of ranks.
    """

    def __init__(self, topk: Sequence[int] = (1, 5), names: Sequence[str] = ("acc", "top5")):
        super().__init__()
        if len(topk) != len(names):
            raise ValueError(f"topk {tuple(topk)} and names {tuple(names)} differ in length")
        if len(set(names)) != len(names):
            raise ValueError(f"names {tuple(names)} repeat a name")
        if any(k < 1 for k in topk):
            raise ValueError(f"topk must be positive, got {tuple(topk)}")
        self.topk = tuple(int(k) for k in topk)
        self.higher_is_better = dict.fromkeys(names, True)
        self.add_state("correct", torch.zeros(len(self.topk), dtype=torch.int64))
        self.add_state("count", torch.zeros((), dtype=torch.int64))

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        logits, y = outputs.detach(), targets.detach().to(outputs.device)
        if logits.ndim != 2 or y.shape != logits.shape[:1]:
            raise ValueError(f"Accuracy takes logits (N, C) and targets (N,), got {tuple(logits.shape)}, "
                             f"{tuple(y.shape)}")  # fmt: skip
        # One topk per k (not slices of the largest): on tied logits, topk(k) is what the old sums used.
        correct = [
            (logits.argmax(1) == y).sum()
            if k == 1
            else logits.topk(k, dim=1).indices.eq(y[:, None]).any(1).sum()
            for k in (min(k, logits.shape[1]) for k in self.topk)
        ]
        self.correct += torch.stack(correct).to(self.correct.device)
        self.count += len(y)

    def _compute(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        count = int(state["count"])
        correct = state["correct"].tolist()
        return {name: c / count if count else math.nan for name, c in zip(self.higher_is_better, correct)}
