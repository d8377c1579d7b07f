"""The engine's typed knobs: `TrainConfig` (with `OptimizerConfig` and `ScheduleConfig`) and
`ObjectiveConfig`, the base of every objective's config (which model, trained on which dataset).

Each field carries a comment that says why it exists; ``validate`` checks ranges and raises
`zoo.errors.ConfigError` naming the key. The configs round-trip through JSON (`recipes.config`), which is
how a run folder, a checkpoint and a published weight (``recipe_config``) record them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from zoo.errors import ConfigError

__all__ = ["ObjectiveConfig", "OptimizerConfig", "ScheduleConfig", "TrainConfig"]


@dataclass
class OptimizerConfig:
    """One optimizer. Each field says why it exists; `validate` checks ranges."""

    name: Literal["sgd", "adagrad", "rmsprop", "adam", "adamw"] = "sgd"
    lr: float = 0.1  # peak learning rate (after warmup; one-cycle's max_lr)
    momentum: float = 0.9  # SGD and RMSProp; 0 gives plain SGD
    nesterov: bool = False  # SGD only (ignored by the others): look-ahead momentum
    weight_decay: float = 0.0  # L2 for SGD/Adam/..., decoupled for AdamW
    decay_norm_and_bias: bool = False  # False keeps norm scales and biases out of weight decay
    betas: tuple[float, float] = (0.9, 0.999)  # Adam/AdamW moment decay rates
    eps: float = 1e-8  # Adam/AdamW/RMSProp/AdaGrad denominator floor
    alpha: float = 0.99  # RMSProp squared-gradient decay

    def validate(self, where: str = "optim") -> None:
        _positive(f"{where}.lr", self.lr)
        _in_range(f"{where}.momentum", self.momentum, 0.0, 1.0, high_open=True)
        _in_range(f"{where}.weight_decay", self.weight_decay, 0.0, math.inf)
        if self.nesterov and self.name == "sgd" and self.momentum <= 0:
            raise ConfigError(f"config key '{where}.nesterov': Nesterov SGD needs momentum > 0")


@dataclass
class ScheduleConfig:
    """The learning-rate schedule, stepped once per optimizer step."""

    name: Literal["constant", "step", "exponential", "cosine", "cosine_restarts", "onecycle"] = "cosine"
    warmup: float = 0.0  # fraction of all optimizer steps spent in linear warmup (one-cycle: its pct_start)
    warmup_start: float = 0.1  # warmup starts at lr * warmup_start
    step_epochs: float = 1.0  # step decay: multiply by gamma every step_epochs epochs
    gamma: float = 0.1  # step: factor per step_epochs; exponential: factor per epoch
    min_lr: float = 0.0  # cosine floor, as a fraction of lr
    cycles: int = 1  # cosine_restarts: equal cycles after warmup (snapshot ensembles)
    final_div: float = 1e3  # one-cycle: final lr = lr / (div_factor * final_div)
    div_factor: float = 25.0  # one-cycle: initial lr = lr / div_factor

    def validate(self, where: str = "schedule") -> None:
        _in_range(f"{where}.warmup", self.warmup, 0.0, 1.0, high_open=True)
        _in_range(f"{where}.warmup_start", self.warmup_start, 0.0, 1.0, low_open=True)
        _positive(f"{where}.step_epochs", self.step_epochs)
        _in_range(f"{where}.gamma", self.gamma, 0.0, 1.0, low_open=True)
        _in_range(f"{where}.min_lr", self.min_lr, 0.0, 1.0)
        if self.cycles < 1:
            raise ConfigError(f"config key '{where}.cycles': {self.cycles} must be >= 1")


@dataclass
class TrainConfig:
    """The engine's knobs; an objective's Config subclasses this (usually through `ObjectiveConfig`)."""

    seed: int = 0  # model init, data order, augmentation: the same seed gives the same weights on CPU
    epochs: int = 10
    max_steps: int = 0  # stop after this many optimizer steps (0: run all epochs); the schedule still
    # spans `epochs`, so a short smoke run sees the same learning rates as the start of the full one
    batch_size: int = 128  # global: split over DDP ranks, times accum_steps per optimizer step
    accum_steps: int = 1  # micro-batches accumulated per optimizer step
    drop_last: bool = True  # drop the ragged last batch of an epoch (stable batch norm statistics)
    optim: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    grad_clip: float = 0.0  # max global gradient norm (0: off)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 where the hardware has it
    channels_last: bool = False  # NHWC memory format for convolutions (faster with bf16 on CPU)
    ema_decay: float = 0.0  # EMA of the weights (0: off); evaluated and published instead of the weights
    eval_every: int = 0  # validate every N optimizer steps (0: at the end of each epoch)
    eval_limit: int = 0  # evaluate only the first N items of each split (0: all); for smoke runs: the
    # published weight's split then says so
    early_stop_metric: str = ""  # a validation metric name (e.g. "acc"); "" disables early stopping
    early_stop_mode: Literal["max", "min"] = "max"
    patience: int = 3  # evaluations without improvement before stopping
    restore_best: bool = True  # with early stopping: publish the best evaluated weights
    checkpoint_every: int = 0  # also checkpoint every N optimizer steps (0: only at epoch ends)
    log_every: int = 10  # optimizer steps between log lines (CSV, TensorBoard, progress bar)
    progress: bool = True  # tqdm progress bar on rank 0
    tensorboard: bool = True
    device: str = "auto"  # auto: cuda:LOCAL_RANK when available, else cpu
    num_workers: int = 0  # DataLoader workers for datasets that are not in memory
    threads: int = 0  # torch.set_num_threads (0: leave as is)

    def require_nonnegative(self, *keys: str) -> None:
        """Raise a `ConfigError` naming the first of `keys` whose value is below 0 (for `validate`)."""
        for key in keys:
            if getattr(self, key) < 0:
                raise ConfigError(f"config key '{key}': {getattr(self, key)} must be >= 0")

    def validate(self) -> None:
        for key in ("epochs", "batch_size", "accum_steps", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}': {getattr(self, key)} must be >= 1")
        self.require_nonnegative(
            "max_steps", "eval_every", "eval_limit", "checkpoint_every", "num_workers", "threads", "patience"
        )
        _in_range("grad_clip", self.grad_clip, 0.0, math.inf)
        _in_range("ema_decay", self.ema_decay, 0.0, 1.0, high_open=True)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, OptimizerConfig | ScheduleConfig):
                value.validate(f.name)


@dataclass
class ObjectiveConfig(TrainConfig):
    """`TrainConfig` plus what every objective that trains one registered model on one dataset declares.

    A subclass redeclares a field only to change its default (``model``) or to narrow its annotation to
    the values it accepts (``dataset: Literal[...]``, so ``--set dataset=...`` lists them); a redeclared
    field keeps its place, so the serialised config (``recipe_config`` of a published weight) is
    unchanged.
    """

    model: str = ""  # a registered architecture (`zoo list`)
    model_args: dict[str, Any] = field(default_factory=dict)  # its builder kwargs (the objective fills in
    # what the dataset decides: num_classes, in_chans, img_size)
    dataset: str = "mnist_5k"  # a dataset name (`zoo data`)
    data_root: str = "data"  # for the datasets that are not bundled (mnist, cifar10, image folders)
    download: bool = False  # let torchvision fetch mnist / cifar10 (never by default)
    val_per_class: int = 0  # validation images carved from train, per class (0: no validation)

    def validate(self) -> None:
        super().validate()
        if self.val_per_class < 0:
            raise ConfigError(f"config key 'val_per_class': {self.val_per_class} must be >= 0")


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"config key '{key}': {value!r} must be > 0")


def _in_range(
    key: str, value: float, low: float, high: float, low_open: bool = False, high_open: bool = False
) -> None:
    ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ConfigError(f"config key '{key}': {value!r} must be in {lo}{low}, {high}{hi}")
