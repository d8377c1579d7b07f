"""The one training loop: every objective (classification, autoencoding, GAN, BYOL, ...) runs through it.

An **objective** is three things, kept in ``recipes/<objective>.py``:

1. a typed, serialisable **Config**: a dataclass subclassing `TrainConfig` (the engine's own knobs below)
   that adds the objective's fields (model name, dataset, augmentation, loss weights ...). It round-trips
   through JSON (`recipes.config`), and ``--set key=value`` overrides are checked against its annotations;
2. **presets**: named configs registered with `register_preset` (``zoo train NAME``); a preset that
   reproduces a published weight is named like it (``resnet8_small.mnist``);
3. an `Objective` subclass: ``build()`` returns every module of the run by name (all are checkpointed),
   ``optimizers()`` says which parameters each optimizer owns, ``data()`` returns the splits,
   ``train_step(ctx, batch)`` computes losses and ``eval_step(ctx, batch)`` returns metric sums;
   ``publish(model, data)`` returns the module saved as the weight and its metadata. Class attributes:
   ``publish_model`` (which module is the weight, and is averaged by ``ema_decay``) and
   ``frozen_modules`` (modules kept in eval mode while training, e.g. a fixed teacher).

The step talks to the engine only through its `Context` ``ctx``:

- ``ctx.models[name]``: the modules (wrapped in DDP when distributed; ``ctx.unwrap(name)`` for the raw
  module). During evaluation ``ctx.models["model"]`` is the EMA of the weights when ``ema_decay > 0``;
- ``ctx.to_device(tensor)`` (device and channels-last), ``ctx.autocast()`` (mixed precision around the
  forward pass only), ``ctx.generator`` (the run's seeded RNG for augmentation; checkpointed);
- ``ctx.optimize(loss, name)``: backward into the parameters of optimizer ``name`` only (so two optimizers
  used in turn, as in a GAN, never pollute each other's gradients), with loss scaling (fp16), gradient
  accumulation, clipping, the optimizer and scheduler step. A step that returns ``{"loss": ...}``
  without calling it is optimised automatically (single-optimizer objectives need nothing else);
- ``ctx.ema_update(target, source, decay)``: a target network that follows an online one (BYOL, mean
  teacher); the target is one of the run's modules, so it is checkpointed and resumed like the others;
- ``ctx.step`` (optimizer steps so far), ``ctx.epoch``, ``ctx.progress`` (0 to 1, e.g. a momentum ramp),
  ``ctx.rank``, ``ctx.world_size``, ``ctx.config``.

The `Trainer` runs the loop: SGD / momentum / Nesterov, AdaGrad, RMSProp, Adam, AdamW with weight decay;
linear warmup then step, exponential, cosine, cosine with restarts or one-cycle decay
(``torch.optim.lr_scheduler``), stepped per optimizer step; gradient clipping and accumulation; bf16
autocast on CPU, fp16 (with ``GradScaler``) or bf16 on CUDA; an EMA of the weights
(``torch.optim.swa_utils.AveragedModel``); early stopping on a validation metric with patience; atomic
checkpoints (temp file, fsync, rename) every N steps and each epoch, holding everything needed to resume
bit-exactly on CPU (models, optimizers, schedulers, scaler, EMA, every RNG, the epoch and the position in
it); DDP under ``torchrun`` (gloo on CPU, NCCL on GPU) with per-rank shards of one seeded permutation,
metric sums reduced across ranks and everything written by rank 0; a tqdm bar (loss, metric, samples/s),
CSV and TensorBoard logs and a PNG of the curves.

Extension points for tools (LR finder, doctor, search, snapshot ensembles): ``Trainer.setup()`` builds
everything without training; ``Trainer.train_batch(batch)`` runs one micro-step and returns its logs;
``Trainer.evaluate(split)`` returns reduced metrics; ``Trainer.batches(epoch)`` yields training batches;
`Callback` hooks see every optimizer step, evaluation and epoch end and may stop the run
(``trainer.should_stop = True``) or raise (e.g. ``optuna.TrialPruned``).

Run folder: ``config.json`` (recipe, objective, resolved config), ``checkpoints/last.pt`` (and
``best.pt``), ``metrics.csv``, ``tb/``, ``curves.png``, ``result.json`` and ``hub/<arch>.<tag>/`` (the
weight folder written by `zoo.save_pretrained`, ready to copy into the zoo's ``hub/``).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import io
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from recipes.config import apply_overrides, config_from_dict, config_to_dict
from zoo.errors import ConfigError, UnknownModelError
from zoo.weights import atomic_write_bytes

__all__ = [
    "Callback",
    "Context",
    "Data",
    "Objective",
    "OptimizerConfig",
    "Preset",
    "RunResult",
    "ScheduleConfig",
    "TrainConfig",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "get_preset",
    "list_presets",
    "register_preset",
    "train",
]

CHECKPOINT_VERSION = 1


# ----------------------------------------------------------------------------------------------- configs
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
    """The engine's knobs; an objective's Config subclasses this and adds its own fields."""

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

    def validate(self) -> None:
        for key in ("epochs", "batch_size", "accum_steps", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}': {getattr(self, key)} must be >= 1")
        for key in ("max_steps", "eval_every", "checkpoint_every", "num_workers", "threads", "patience"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key '{key}': {getattr(self, key)} must be >= 0")
        _in_range("grad_clip", self.grad_clip, 0.0, math.inf)
        _in_range("ema_decay", self.ema_decay, 0.0, 1.0, high_open=True)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, OptimizerConfig | ScheduleConfig):
                value.validate(f.name)


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"config key '{key}': {value!r} must be > 0")


def _in_range(key, value, low, high, low_open=False, high_open=False) -> None:
    ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ConfigError(f"config key '{key}': {value!r} must be in {lo}{low}, {high}{hi}")


# -------------------------------------------------------------------------------------------- objective
@dataclass
class Data:
    """The splits an objective trains and evaluates on, plus what the published weight records.

    A dataset with ``get_batch(indices) -> batch`` (in-memory tensors) is batched by indexing, with no
    per-sample Python; any other map-style dataset goes through a DataLoader with the engine's sampler.
    """

    train: Any
    val: Any = None
    test: Any = None
    name: str = ""  # recorded as Weights.dataset
    split: str = ""  # how the splits were carved, recorded as Weights.split
    info: dict[str, Any] = field(default_factory=dict)  # labels, input_size, mean, std, ...


class Objective:
    """What is trained and how: subclass it in ``recipes/<objective>.py`` (see the module docstring)."""

    name: ClassVar[str] = ""  # e.g. "classification"
    Config: ClassVar[type[TrainConfig]] = TrainConfig
    publish_model: ClassVar[str] = "model"  # the module saved as the weight (and averaged by ema_decay)
    frozen_modules: ClassVar[tuple[str, ...]] = ()  # kept in eval mode while training (a fixed teacher)

    def __init__(self, config: TrainConfig):
        self.config = config

    def data(self) -> Data:
        raise NotImplementedError

    def build(self, data: Data) -> dict[str, nn.Module]:
        """Every module of the run by name (all are checkpointed); built after seeding."""
        raise NotImplementedError

    def optimizers(self, models: dict[str, nn.Module]) -> dict[str, tuple[Any, OptimizerConfig]]:
        """Optimizer name -> (parameters or param groups, its config). Default: one over `model`."""
        return {"main": (models[self.publish_model].parameters(), self.config.optim)}

    def schedules(self) -> dict[str, ScheduleConfig]:
        """Optimizer name -> its schedule. Default: ``config.schedule`` for every optimizer."""
        return {}

    def train_step(self, ctx: Context, batch: Any) -> dict[str, torch.Tensor]:
        """Losses of one micro-batch: return ``{"loss": ...}`` or call ``ctx.optimize`` yourself."""
        raise NotImplementedError

    def eval_step(self, ctx: Context, batch: Any) -> dict[str, tuple[torch.Tensor | float, int]]:
        """Metric name -> (sum over the batch, count); the engine sums over ranks and batches, then divides."""
        raise NotImplementedError

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        """The module to save as the weight and its metadata (Weights fields: task, labels, ...)."""
        return model, {}

    def batch_size_of(self, batch: Any) -> int:
        first = batch[0] if isinstance(batch, list | tuple) else batch
        return int(first.shape[0]) if isinstance(first, torch.Tensor) else 0


class Callback:
    """Hooks into a running `Trainer`; set ``trainer.should_stop = True`` to end the run cleanly."""

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        """After each *logged* optimizer step (every ``log_every`` steps, the last step of an epoch and the
        ``max_steps`` one), with the train logs averaged since the previous call (plus samples_per_s, lr)."""

    def on_eval(self, trainer: Trainer, split: str, metrics: dict[str, float]) -> None:
        """After each validation (``split`` is "val"; the final test is reported by `fit`'s result), with the
        metrics reduced over ranks."""

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        """After epoch ``epoch`` (1-based count of finished epochs) and its validation."""


# -------------------------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    name: str
    objective: type[Objective]
    config: TrainConfig
    description: str = ""


_PRESETS: dict[str, Preset] = {}
# Objective modules register their presets on import; a new objective adds its module here.
RECIPE_MODULES = ("recipes.classification", "recipes.autoencoding")


def register_preset(
    name: str, objective: type[Objective], config: TrainConfig, description: str = ""
) -> None:
    if name in _PRESETS:
        raise ValueError(f"recipe preset '{name}' is already registered")
    if not isinstance(config, objective.Config):
        raise TypeError(f"preset '{name}': config must be a {objective.Config.__name__}")
    config.validate()
    _PRESETS[name] = Preset(name, objective, config, description)


def _import_recipes() -> None:
    import importlib

    for module in RECIPE_MODULES:
        importlib.import_module(module)


def list_presets() -> list[Preset]:
    _import_recipes()
    return sorted(_PRESETS.values(), key=lambda p: p.name)


def get_preset(name: str) -> Preset:
    _import_recipes()
    try:
        return _PRESETS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(_PRESETS), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown recipe '{name}'.{hint} Known recipes: {', '.join(sorted(_PRESETS))}"
        ) from None


# ----------------------------------------------------------------------------------- optimizers/schedules
def _param_groups(params: Any, cfg: OptimizerConfig) -> list[dict[str, Any]]:
    params = list(params)
    if params and isinstance(params[0], dict):
        return params
    params = [p for p in params if p.requires_grad]
    if cfg.decay_norm_and_bias or cfg.weight_decay == 0:
        return [{"params": params}]
    # 1-d tensors are norm scales/shifts and biases: decaying them only hurts ("Bag of Tricks", 2019).
    decay = [p for p in params if p.ndim > 1]
    rest = [p for p in params if p.ndim <= 1]
    return [{"params": decay}, {"params": rest, "weight_decay": 0.0}]


def build_optimizer(params: Any, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """A torch optimizer from its config (norm and bias parameters excluded from weight decay)."""
    groups = _param_groups(params, cfg)
    wd = cfg.weight_decay
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=wd
        )
    if cfg.name == "adagrad":
        return torch.optim.Adagrad(groups, lr=cfg.lr, weight_decay=wd, eps=cfg.eps)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(
            groups, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum, weight_decay=wd
        )
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=wd)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=wd)
    raise ConfigError(f"config key 'optim.name': unknown optimizer {cfg.name!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warmup, then the decay, as one torch scheduler stepped per optimizer step."""
    from torch.optim import lr_scheduler as S

    total_steps = max(1, total_steps)
    if cfg.name == "onecycle":
        max_lr = [g["lr"] for g in optimizer.param_groups]
        return S.OneCycleLR(
            optimizer,
            max_lr=max_lr,
            total_steps=total_steps,
            pct_start=max(cfg.warmup, 1.0 / total_steps),
            anneal_strategy="cos",
            div_factor=cfg.div_factor,
            final_div_factor=cfg.final_div,
            cycle_momentum=False,
        )
    warmup = min(round(cfg.warmup * total_steps), total_steps - 1)
    rest = total_steps - warmup
    if cfg.name == "constant":
        decay = S.ConstantLR(optimizer, factor=1.0, total_iters=0)
    elif cfg.name == "step":
        decay = S.StepLR(
            optimizer, step_size=max(1, round(cfg.step_epochs * steps_per_epoch)), gamma=cfg.gamma
        )
    elif cfg.name == "exponential":
        decay = S.ExponentialLR(optimizer, gamma=cfg.gamma ** (1.0 / max(1, steps_per_epoch)))
    elif cfg.name == "cosine":
        base = optimizer.param_groups[0]["lr"]
        decay = S.CosineAnnealingLR(optimizer, T_max=rest, eta_min=base * cfg.min_lr)
    elif cfg.name == "cosine_restarts":
        base = optimizer.param_groups[0]["lr"]
        decay = S.CosineAnnealingWarmRestarts(
            optimizer, T_0=max(1, rest // cfg.cycles), eta_min=base * cfg.min_lr
        )
    else:
        raise ConfigError(f"config key 'schedule.name': unknown schedule {cfg.name!r}")
    if warmup == 0:
        return decay
    ramp = S.LinearLR(optimizer, start_factor=cfg.warmup_start, end_factor=1.0, total_iters=warmup)
    return S.SequentialLR(optimizer, [ramp, decay], milestones=[warmup])


# -------------------------------------------------------------------------------------------- context
def _ema_avg_fn(decay: float):
    from torch.optim.swa_utils import get_ema_multi_avg_fn

    return get_ema_multi_avg_fn(decay)


class Context:
    """What a step sees of the engine (see the module docstring). Created by the `Trainer`."""

    def __init__(self, trainer: Trainer):
        self._t = trainer
        self.config = trainer.config
        self.device = trainer.device
        self.rank, self.world_size = trainer.rank, trainer.world_size
        self.models: dict[str, nn.Module] = {}
        self.generator = torch.Generator(device=self.device)
        self._optimized = False
        self._boundary = True

    # state --------------------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self._t.global_step

    @property
    def epoch(self) -> int:
        return self._t.epoch

    @property
    def progress(self) -> float:
        return min(1.0, self._t.global_step / max(1, self._t.total_steps))

    @property
    def training(self) -> bool:
        return self._t.in_training

    def unwrap(self, name: str) -> nn.Module:
        return self._t.models[name]

    # tensors ------------------------------------------------------------------------------------------
    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        if self._t.channels_last and x.dim() == 4:
            return x.to(self.device, non_blocking=True, memory_format=torch.channels_last)
        return x.to(self.device, non_blocking=True)

    def autocast(self):
        """Mixed precision for the forward pass (fp32 everywhere during evaluation)."""
        dtype = self._t.amp_dtype
        if dtype is None or not self._t.in_training:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    # optimisation -------------------------------------------------------------------------------------
    def optimize(self, loss: torch.Tensor, name: str | None = None) -> None:
        """Backward `loss` into optimizer `name`'s parameters; step it at the accumulation boundary."""
        t = self._t
        if name is None:
            if len(t.optimizers) != 1:
                raise ConfigError(f"this run has optimizers {sorted(t.optimizers)}: name the one to step")
            name = next(iter(t.optimizers))
        if name not in t.optimizers:
            raise ConfigError(f"unknown optimizer '{name}'; this run has {sorted(t.optimizers)}")
        self._optimized = True
        opt = t.optimizers[name]
        scaled = loss / t.config.accum_steps
        if t.scaler is not None:
            scaled = t.scaler.scale(scaled)
        if len(t.optimizers) > 1:
            scaled.backward(inputs=t.opt_params[name])
        else:
            scaled.backward()
        if not self._boundary:
            return
        if t.scaler is not None:
            t.scaler.unscale_(opt)
        if t.config.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(t.opt_params[name], t.config.grad_clip)
            t.step_logs[f"grad_norm/{name}" if len(t.optimizers) > 1 else "grad_norm"] = norm.detach()
        if t.scaler is not None:
            t.scaler.step(opt)
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        t.schedulers[name].step()

    @staticmethod
    @torch.no_grad()
    def ema_update(target: nn.Module, source: nn.Module, decay: float) -> None:
        """target <- decay * target + (1 - decay) * source, parameters and float buffers (BYOL, mean teacher)."""
        tp = [p for p in target.parameters()]
        sp = [p.detach() for p in source.parameters()]
        if tp:
            torch._foreach_lerp_(tp, sp, 1.0 - decay)
        for tb, sb in zip(target.buffers(), source.buffers()):
            if tb.dtype.is_floating_point:
                tb.lerp_(sb, 1.0 - decay)
            else:
                tb.copy_(sb)


# ------------------------------------------------------------------------------------------ distributed
def _dist_env() -> tuple[int, int, int]:
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def _all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(values)
    return values


# ---------------------------------------------------------------------------------------------- logging
class RunLogger:
    """CSV (long format: one row per value) and TensorBoard on rank 0, plus the history for the curves."""

    FIELDS = ("step", "epoch", "split", "metric", "value")

    def __init__(self, run_dir: Path | None, tensorboard: bool, resume_step: int | None):
        self.history: list[dict[str, Any]] = []
        self.run_dir = run_dir
        self._tb = None
        self._csv = None
        if run_dir is None:
            return
        path = run_dir / "metrics.csv"
        if resume_step is not None and path.is_file():
            # Rows logged after the checkpoint are replayed by the resumed run: keep only the earlier ones.
            with open(path, newline="") as f:
                self.history = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            for r in self.history:
                r["step"], r["epoch"], r["value"] = int(r["step"]), int(r["epoch"]), float(r["value"])
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, self.FIELDS)
                w.writeheader()
                w.writerows(self.history)
        elif not path.is_file() or resume_step is None:
            with open(path, "w", newline="") as f:
                csv.DictWriter(f, self.FIELDS).writeheader()
        self._csv = open(path, "a", newline="")  # noqa: SIM115 (closed in close())
        self._writer = csv.DictWriter(self._csv, self.FIELDS)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional dependency
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step)

    def log(self, step: int, epoch: int, split: str, values: dict[str, float]) -> None:
        rows = [
            {"step": step, "epoch": epoch, "split": split, "metric": k, "value": float(v)}
            for k, v in values.items()
        ]
        self.history += rows
        if self._csv is not None:
            self._writer.writerows(rows)
            self._csv.flush()
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{split}/{k}", float(v), step)

    def close(self) -> None:
        if self._csv is not None:
            self._csv.close()
        if self._tb is not None:
            self._tb.close()


def plot_curves(history: list[dict[str, Any]], path: Path, title: str = "") -> Path | None:
    """Loss curves (train and validation) beside the other metrics, as a PNG (matplotlib, Agg)."""
    if not history:
        return None
    # The object API with the Agg canvas: no pyplot, no global figure state, no GUI backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for row in history:
        series.setdefault((row["split"], row["metric"]), []).append((int(row["step"]), float(row["value"])))
    losses = {k: v for k, v in series.items() if "loss" in k[1]}
    others = {k: v for k, v in series.items() if "loss" not in k[1] and k[1] not in ("lr", "samples_per_s")}
    others = others or {k: v for k, v in series.items() if k[1] == "lr"}
    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for ax, group, name in ((axes[0], losses, "loss"), (axes[1], others, "metrics")):
        for (split, metric), points in sorted(group.items()):
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=f"{split}/{metric}")
        ax.set_xlabel("optimizer step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if group:
            ax.legend(fontsize=8)
    values = [v for pts in losses.values() for _, v in pts]
    if values and min(values) > 0 and max(values) / min(values) > 10:
        axes[0].set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    atomic_write_bytes(path, buf.getvalue())
    return path


# -------------------------------------------------------------------------------------------- machine
def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    with contextlib.suppress(OSError, AttributeError):
        info["load_avg_1m_at_start"] = round(os.getloadavg()[0], 2)
    return info


@functools.cache
def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        if dirty:
            commit += "+dirty"
    return commit or None


def _cpu_has_bf16() -> bool:
    with contextlib.suppress(OSError):
        flags = Path("/proc/cpuinfo").read_text()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


# ---------------------------------------------------------------------------------------------- trainer
@dataclass
class RunResult:
    run_dir: Path | None
    metrics: dict[str, float]  # on the test split (empty when the data has none)
    val_metrics: dict[str, float]
    train_time_s: float
    steps: int
    epochs: float
    weight_folder: Path | None
    stopped_early: bool = False


class Trainer:
    """Runs one objective with one config: ``Trainer(objective, run_dir=...).fit()``."""

    def __init__(
        self,
        objective: Objective,
        run_dir: str | os.PathLike | None = None,
        recipe: str = "",
        callbacks: Iterable[Callback] = (),
        resume: bool = False,
        publish: bool = True,
    ):
        self.objective = objective
        self.config = objective.config
        self.config.validate()
        self.recipe = recipe
        self.callbacks = list(callbacks)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.resume = resume
        self.publish_weights = publish
        self.should_stop = False
        self.global_step = 0
        self.epoch = 0
        self.in_training = False
        self.step_logs: dict[str, torch.Tensor] = {}
        self._is_setup = False
        self._mode = ""

    # set-up -------------------------------------------------------------------------------------------
    def setup(self) -> Trainer:
        """Distributed init, data, seeded models, optimizers, schedulers, EMA and (with resume) state."""
        if self._is_setup:
            return self
        cfg = self.config
        self.rank, self.world_size, self.local_rank = _dist_env()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.device == "auto":
            self.device = torch.device(f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(cfg.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.world_size > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend)
        if cfg.batch_size % self.world_size:
            raise ConfigError(
                f"config key 'batch_size': {cfg.batch_size} is not divisible by the {self.world_size} processes"
            )
        self.amp_dtype = self._resolve_precision()
        self.channels_last = cfg.channels_last
        self.is_main = self.rank == 0

        self.data = self.objective.data()
        n_train = len(self.data.train)
        per_epoch = n_train // cfg.batch_size if cfg.drop_last else math.ceil(n_train / cfg.batch_size)
        self.micro_per_epoch = (per_epoch // cfg.accum_steps) * cfg.accum_steps
        if self.micro_per_epoch == 0:
            raise ConfigError(
                f"config key 'batch_size': {cfg.batch_size} x accum_steps {cfg.accum_steps} is larger than "
                f"the {n_train} training samples"
            )
        self.steps_per_epoch = self.micro_per_epoch // cfg.accum_steps
        self.total_steps = self.steps_per_epoch * cfg.epochs

        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        self.models = {k: m.to(self.device) for k, m in self.objective.build(self.data).items()}
        if self.world_size > 1:  # same initial weights everywhere, but each rank its own dropout masks
            torch.manual_seed(cfg.seed + 7919 * self.rank)
        if self.channels_last:
            for m in self.models.values():
                m.to(memory_format=torch.channels_last)
        specs = self.objective.optimizers(self.models)
        schedules = self.objective.schedules()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.opt_params: dict[str, list[torch.Tensor]] = {}
        self.schedulers: dict[str, Any] = {}
        for name, (params, ocfg) in specs.items():
            opt = build_optimizer(params, ocfg)
            self.optimizers[name] = opt
            self.opt_params[name] = [p for g in opt.param_groups for p in g["params"]]
            scfg = schedules.get(name, cfg.schedule)
            self.schedulers[name] = build_scheduler(opt, scfg, self.total_steps, self.steps_per_epoch)
        self.scaler = None
        if self.amp_dtype == torch.float16:
            self.scaler = torch.amp.GradScaler(self.device.type)
        self.ema = None
        if cfg.ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel

            self.ema = AveragedModel(
                self.models[self.objective.publish_model],
                multi_avg_fn=_ema_avg_fn(cfg.ema_decay),
                use_buffers=True,
            )
        self.ctx = Context(self)
        self.ctx.generator.manual_seed(cfg.seed * 1000 + 17 + self.rank)
        self._wrap_ddp()
        self.early = {"best": None, "bad": 0, "best_step": -1}
        self.train_time_s = 0.0
        self.batch_in_epoch = 0
        self.stopped_early = False
        if self.resume:
            self._load_checkpoint()
        self._is_setup = True
        return self

    def _resolve_precision(self) -> torch.dtype | None:
        p = self.config.precision
        cuda = self.device.type == "cuda"
        if p == "auto":
            if cuda:
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.bfloat16 if _cpu_has_bf16() else None
        if p == "fp16" and not cuda:
            raise ConfigError("config key 'precision': 'fp16' needs CUDA; on CPU use 'bf16' or 'fp32'")
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[p]

    @property
    def precision_name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    def _wrap_ddp(self) -> None:
        self.ddp_modules: list[nn.Module] = []
        trainable = {id(p) for ps in self.opt_params.values() for p in ps}
        for name, module in self.models.items():
            wrapped = module
            if self.world_size > 1 and any(id(p) in trainable for p in module.parameters()):
                from torch.nn.parallel import DistributedDataParallel as DDP

                ids = [self.device.index] if self.device.type == "cuda" else None
                wrapped = DDP(module, device_ids=ids)
                self.ddp_modules.append(wrapped)
            self.ctx.models[name] = wrapped

    # data ---------------------------------------------------------------------------------------------
    def _epoch_indices(self, epoch: int) -> list[torch.Tensor]:
        """This rank's index batches of `epoch`: one seeded permutation, cut into global batches, sharded."""
        cfg = self.config
        n = len(self.data.train)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)
        out = []
        for i in range(self.micro_per_epoch):
            chunk = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            if len(chunk) % self.world_size:  # ragged last batch: pad from the start so ranks stay equal
                pad = self.world_size - len(chunk) % self.world_size
                chunk = torch.cat([chunk, perm[:pad]])
            out.append(chunk[self.rank :: self.world_size])
        return out

    def batches(self, epoch: int, start: int = 0) -> Iterator[Any]:
        """Training batches of `epoch` from batch `start` on (resume skips the ones already trained)."""
        indices = self._epoch_indices(epoch)[start:]
        yield from self._load(self.data.train, indices)

    def _load(self, dataset: Any, indices: list[torch.Tensor]) -> Iterator[Any]:
        if hasattr(dataset, "get_batch"):
            for idx in indices:
                yield dataset.get_batch(idx)
            return
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=[idx.tolist() for idx in indices],
            num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        yield from loader

    def _eval_indices(self, n: int, batch_size: int) -> list[torch.Tensor]:
        # Every sample exactly once over all ranks (no padding), so reduced metrics are exact.
        mine = torch.arange(self.rank, n, self.world_size)
        return list(mine.split(batch_size)) if len(mine) else []

    # one micro-step -----------------------------------------------------------------------------------
    def train_batch(self, batch: Any, boundary: bool = True) -> dict[str, torch.Tensor]:
        """One micro-batch through the objective's step (backward, and the optimizer step at a boundary)."""
        self.in_training = True
        if self._mode != "train":  # set once, not every step: evaluation switches it back
            for name, m in self.models.items():
                m.train(name not in self.objective.frozen_modules)
            self._mode = "train"
        ctx = self.ctx
        ctx._optimized, ctx._boundary = False, boundary
        with contextlib.ExitStack() as stack:
            if not boundary:
                for m in self.ddp_modules:
                    stack.enter_context(m.no_sync())
            logs = self.objective.train_step(ctx, batch)
            if not ctx._optimized:
                if "loss" not in logs:
                    raise ConfigError(
                        f"{type(self.objective).__name__}.train_step returned no 'loss' and did not call "
                        "ctx.optimize"
                    )
                ctx.optimize(logs["loss"])
        if boundary and self.scaler is not None:
            self.scaler.update()
        return logs

    # evaluation ---------------------------------------------------------------------------------------
    def eval_models(self) -> dict[str, nn.Module]:
        models = dict(self.models)
        if self.ema is not None:
            models[self.objective.publish_model] = self.ema.module
        return models

    @torch.no_grad()
    def evaluate(self, split: str = "val", models: dict[str, nn.Module] | None = None) -> dict[str, float]:
        """Metrics of `split` ("val" or "test"), summed over every rank's shard and divided once."""
        dataset = getattr(self.data, split)
        if dataset is None:
            return {}
        models = models or self.eval_models()
        was_training = self.in_training
        self.in_training = False
        saved = self.ctx.models
        self.ctx.models = dict(models)
        for m in models.values():
            m.eval()
        self._mode = "eval"
        sums: dict[str, list[float]] = {}
        try:
            batch_size = max(256, self.config.batch_size // self.world_size)
            for batch in self._load(dataset, self._eval_indices(len(dataset), batch_size)):
                for key, (total, count) in self.objective.eval_step(self.ctx, batch).items():
                    acc = sums.setdefault(key, [0.0, 0.0])
                    acc[0] += float(total)
                    acc[1] += float(count)
            # Every rank must reduce the same keys in the same order, even one whose shard was empty.
            keys = sorted(sums)
            if self.world_size > 1:
                keys = _broadcast_keys(keys)
            packed = torch.tensor([sums.get(k, [0.0, 0.0]) for k in keys], dtype=torch.float64).reshape(-1, 2)
            packed = _all_reduce_sum(packed)
        finally:
            self.ctx.models = saved
            self.in_training = was_training
        return {k: float(s / c) if c else float("nan") for k, (s, c) in zip(keys, packed.tolist())}

    # checkpoints --------------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "checkpoints"

    def _rng_state(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "generator": self.ctx.generator.get_state(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "python": random.getstate(),
        }
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        self.ctx.generator.set_state(state["generator"])
        name, keys, *rest = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
        random.setstate(_tuples(state["python"]))
        if "cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda"], self.device)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly (plain tensors and containers only)."""
        rng = self._rng_state()
        if self.world_size > 1:
            gathered: list[Any] = [None] * self.world_size
            torch.distributed.all_gather_object(gathered, rng)
            rngs = gathered
        else:
            rngs = [rng]
        return {
            "version": CHECKPOINT_VERSION,
            "recipe": self.recipe,
            "config": config_to_dict(self.config),
            "world_size": self.world_size,
            "models": {k: m.state_dict() for k, m in self.models.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": rngs,
            "progress": {
                "global_step": self.global_step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "train_time_s": self.train_time_s,
            },
            "early_stop": dict(self.early),
        }

    def save_checkpoint(self, name: str = "last.pt") -> Path | None:
        state = self.state_dict()  # collective under DDP: every rank takes part
        if not self.is_main or self.checkpoint_dir is None:
            return None
        buf = io.BytesIO()
        torch.save(state, buf)
        path = self.checkpoint_dir / name
        atomic_write_bytes(path, buf.getvalue())
        return path

    def _load_checkpoint(self) -> None:
        path = self.checkpoint_dir / "last.pt" if self.checkpoint_dir else None
        if path is None or not path.is_file():
            raise ConfigError(f"cannot resume: no checkpoint at {path}")
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state.get("version") != CHECKPOINT_VERSION:
            raise ConfigError(f"{path} was written by another checkpoint version ({state.get('version')})")
        if state["config"] != config_to_dict(self.config):
            raise ConfigError(
                f"{path} was written with another config: resume with the run's own config.json"
            )
        for k, m in self.models.items():
            m.load_state_dict(state["models"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if state["world_size"] == self.world_size:
            self._set_rng_state(state["rng"][self.rank])
        else:  # a different number of processes cannot replay the same random streams
            print(
                f"warning: checkpoint written by {state['world_size']} processes, resumed by "
                f"{self.world_size}: random streams restart (the run is no longer bit-exact)",
                file=sys.stderr,
            )
        progress = state["progress"]
        self.global_step = progress["global_step"]
        self.epoch = progress["epoch"]
        self.batch_in_epoch = progress["batch_in_epoch"]
        self.train_time_s = progress["train_time_s"]
        self.early = dict(state["early_stop"])

    # the loop -----------------------------------------------------------------------------------------
    def fit(self) -> RunResult:
        self.setup()
        cfg = self.config
        if self.is_main and self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._write_run_config()
        self.logger = RunLogger(
            self.run_dir if self.is_main else None,
            cfg.tensorboard,
            self.global_step if self.resume else None,
        )
        if cfg.early_stop_metric and self.data.val is None:
            raise ConfigError("config key 'early_stop_metric': early stopping needs a validation split")
        try:
            val_metrics = self._loop()
            if cfg.early_stop_metric and cfg.restore_best and self.early["best_step"] >= 0:
                self._restore_best()
            # The published module (e.g. with a logit scale folded into its head) is what is measured.
            module = self.eval_models()[self.objective.publish_model]
            published, meta = self.objective.publish(module, self.data)
            test_metrics = {}
            if self.data.test is not None:
                models = {**self.eval_models(), self.objective.publish_model: published}
                test_metrics = self.evaluate("test", models=models)
                self.logger.log(self.global_step, self.epoch, "test", test_metrics)
            return self._finish(test_metrics, val_metrics, published, meta)
        finally:
            self.logger.close()
            if self.world_size > 1 and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()

    def _loop(self) -> dict[str, float]:
        cfg = self.config
        val_metrics: dict[str, float] = {}
        window: dict[str, list[torch.Tensor]] = {}
        window_samples, window_start = 0, time.perf_counter()
        bar = None
        if cfg.max_steps and self.global_step >= cfg.max_steps:
            self.should_stop = True
        while self.epoch < cfg.epochs and not self.should_stop:
            start = self.batch_in_epoch
            if self.is_main and cfg.progress:
                from tqdm.auto import tqdm

                bar = tqdm(
                    total=self.steps_per_epoch,
                    initial=start // cfg.accum_steps,
                    desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                    leave=False,
                    dynamic_ncols=True,
                    file=sys.stderr,
                )
            t0 = time.perf_counter()
            for i, batch in enumerate(self.batches(self.epoch, start), start):
                boundary = (i + 1) % cfg.accum_steps == 0
                self.step_logs = {}
                logs = self.train_batch(batch, boundary)
                window_samples += self.objective.batch_size_of(batch) * self.world_size
                for k, v in {**logs, **self.step_logs}.items():
                    window.setdefault(k, []).append(v.detach().float() if isinstance(v, torch.Tensor) else v)
                if not boundary:
                    continue
                self.global_step += 1
                self.batch_in_epoch = i + 1
                if self.ema is not None:
                    self.ema.update_parameters(self.models[self.objective.publish_model])
                if bar is not None:
                    bar.update(1)
                last_of_epoch = self.batch_in_epoch == self.micro_per_epoch
                hit_max = cfg.max_steps and self.global_step >= cfg.max_steps
                if self.global_step % cfg.log_every == 0 or last_of_epoch or hit_max:
                    now = time.perf_counter()
                    logs_f = self._reduce_window(window)
                    logs_f["samples_per_s"] = window_samples / max(now - window_start, 1e-9)
                    logs_f["lr"] = next(iter(self.optimizers.values())).param_groups[0]["lr"]
                    window, window_samples, window_start = {}, 0, now
                    self.logger.log(self.global_step, self.epoch, "train", logs_f)
                    if bar is not None:
                        bar.set_postfix(
                            {k: f"{v:.4g}" for k, v in logs_f.items() if k != "lr"}, refresh=False
                        )
                    for cb in self.callbacks:
                        cb.on_step_end(self, logs_f)
                if cfg.eval_every and self.global_step % cfg.eval_every == 0 and not last_of_epoch:
                    self.train_time_s += time.perf_counter() - t0
                    val_metrics = self._validate() or val_metrics
                    t0 = time.perf_counter()
                if hit_max:
                    self.should_stop = True
                if (
                    cfg.checkpoint_every
                    and self.global_step % cfg.checkpoint_every == 0
                    and not last_of_epoch
                ):
                    now = time.perf_counter()
                    self.train_time_s, t0 = self.train_time_s + now - t0, now
                    self.save_checkpoint()  # its writing counts as training time, like the logging
                if self.should_stop:
                    break
            self.train_time_s += time.perf_counter() - t0
            if bar is not None:
                bar.close()
            epoch_done = self.batch_in_epoch == self.micro_per_epoch
            if epoch_done:
                self.epoch += 1
                self.batch_in_epoch = 0
                val_metrics = self._validate() or val_metrics
                for cb in self.callbacks:
                    cb.on_epoch_end(self, self.epoch)
            t0 = time.perf_counter()
            self.save_checkpoint()
            self.train_time_s += time.perf_counter() - t0
            window_start = time.perf_counter()
        return val_metrics

    def _reduce_window(self, window: dict[str, list[Any]]) -> dict[str, float]:
        keys = sorted(window)
        if not keys:
            return {}
        means = torch.stack(
            [
                torch.stack([torch.as_tensor(v, dtype=torch.float32).cpu() for v in window[k]]).mean()
                for k in keys
            ]
        )
        if self.world_size > 1:
            means = _all_reduce_sum(means.to(torch.float64)) / self.world_size
        return dict(zip(keys, means.tolist()))

    def _validate(self) -> dict[str, float]:
        if self.data.val is None:
            return {}
        metrics = self.evaluate("val")
        self.logger.log(self.global_step, self.epoch, "val", metrics)
        for cb in self.callbacks:
            cb.on_eval(self, "val", metrics)
        cfg = self.config
        if cfg.early_stop_metric:
            if cfg.early_stop_metric not in metrics:
                raise ConfigError(
                    f"config key 'early_stop_metric': {cfg.early_stop_metric!r} is not a validation metric; "
                    f"this objective reports {', '.join(sorted(metrics))}"
                )
            value, best = metrics[cfg.early_stop_metric], self.early["best"]
            better = best is None or (value > best if cfg.early_stop_mode == "max" else value < best)
            if better:
                self.early.update(best=value, bad=0, best_step=self.global_step)
                if cfg.restore_best:
                    self._save_best()
            else:
                self.early["bad"] += 1
                if self.early["bad"] >= cfg.patience:
                    self.should_stop = True
                    self.stopped_early = True
        return metrics

    def _save_best(self) -> None:
        state = {k: m.state_dict() for k, m in self.eval_models().items()}
        if self.run_dir is None:
            self._best_in_memory = {k: {n: t.clone() for n, t in sd.items()} for k, sd in state.items()}
            return
        if self.is_main:
            buf = io.BytesIO()
            torch.save({"step": self.global_step, "models": state}, buf)
            atomic_write_bytes(self.checkpoint_dir / "best.pt", buf.getvalue())

    def _restore_best(self) -> None:
        if self.run_dir is None:
            state = self._best_in_memory
        else:
            if self.world_size > 1:
                torch.distributed.barrier()
            path = self.checkpoint_dir / "best.pt"
            state = torch.load(path, map_location=self.device, weights_only=True)["models"]
        for k, m in self.eval_models().items():
            m.load_state_dict(state[k])

    # results ------------------------------------------------------------------------------------------
    def _write_run_config(self) -> None:
        from zoo.weights import write_json

        write_json(
            self.run_dir / "config.json",
            {"recipe": self.recipe, "objective": self.objective.name, "config": config_to_dict(self.config)},
        )

    def training_record(self) -> dict[str, Any]:
        return {
            "seed": self.config.seed,
            "commit": git_commit(),
            "train_time_s": round(self.train_time_s, 2),
            "machine": machine_info(),
            "torch": torch.__version__,
            "device": str(self.device),
            "precision": self.precision_name,
            "processes": self.world_size,
            "epochs": round(self.global_step / max(1, self.steps_per_epoch), 3),
            "steps": self.global_step,
        }

    def _finish(
        self,
        test_metrics: dict[str, float],
        val_metrics: dict[str, float],
        published: nn.Module,
        meta: dict[str, Any],
    ) -> RunResult:
        weight_folder = None
        if self.is_main and self.run_dir is not None:
            curves = plot_curves(self.logger.history, self.run_dir / "curves.png", title=self.recipe)
            if self.publish_weights:
                weight_folder = self._publish(published, dict(meta), test_metrics, curves)
        result = RunResult(
            run_dir=self.run_dir,
            metrics=test_metrics,
            val_metrics=val_metrics,
            train_time_s=self.train_time_s,
            steps=self.global_step,
            epochs=self.global_step / max(1, self.steps_per_epoch),
            weight_folder=weight_folder,
            stopped_early=self.stopped_early,
        )
        if self.is_main and self.run_dir is not None:
            from zoo.weights import write_json

            data = dataclasses.asdict(result)
            data["run_dir"] = str(self.run_dir)
            data["weight_folder"] = str(weight_folder) if weight_folder else None
            data["training"] = self.training_record()
            write_json(self.run_dir / "result.json", _finite(data))
        return result

    def _publish(
        self, model: nn.Module, meta: dict[str, Any], test_metrics: dict[str, float], curves: Path | None
    ) -> Path:
        from zoo.factory import save_pretrained
        from zoo.registry import Weights, parse_model_name

        zoo_config = getattr(model, "zoo_config", None) or {}
        arch = zoo_config.get("architecture", "model")
        preset_arch, preset_tag = parse_model_name(self.recipe)
        # A run names its weight after the preset it reproduces; changing the model or the data makes
        # it something else, saved as "<arch>.local".
        preset = _PRESETS.get(self.recipe)
        same_data = preset is None or getattr(preset.config, "dataset", None) == getattr(
            self.config, "dataset", None
        )
        tag = preset_tag if preset_tag and preset_arch == arch and same_data else "local"
        weights = Weights.from_dict(
            {
                "arch": arch,
                "tag": tag,
                "task": meta.pop("task", "unknown"),
                "dataset": self.data.name or None,
                "split": self.data.split or None,
                "metrics": {k: round(v, 6) for k, v in test_metrics.items() if math.isfinite(v)},
                "recipe": self.recipe or None,
                "recipe_config": config_to_dict(self.config),
                "training": self.training_record(),
                **meta,
            }
        )
        folder = self.run_dir / "hub" / f"{arch}.{tag}"
        return save_pretrained(model, folder, weights=weights, files={"curves": curves} if curves else None)


def _broadcast_keys(keys: list[str]) -> list[str]:
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, keys)
    return sorted({k for ks in gathered for k in ks})


def _tuples(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    return value


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------ entry point
def resolve_config(recipe: str, overrides: list[str] | dict[str, Any] = ()) -> tuple[Preset, TrainConfig]:
    """A preset's config with ``key=value`` overrides applied and validated."""
    preset = get_preset(recipe)
    return preset, apply_overrides(preset.config, overrides or [])


def default_run_dir(recipe: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{recipe}-{stamp}"


def train(
    recipe: str,
    overrides: list[str] | dict[str, Any] = (),
    out: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    callbacks: Iterable[Callback] = (),
) -> RunResult:
    """``zoo train``: run preset `recipe` (or resume the run folder `resume`), returning its result."""
    if resume is not None:
        run_dir = Path(resume)
        saved_path = run_dir / "config.json"
        if not saved_path.is_file():
            raise ConfigError(f"cannot resume {run_dir}: it holds no config.json (is it a run folder?)")
        if overrides:
            raise ConfigError("--set cannot change a resumed run: its config is fixed in config.json")
        saved = json.loads(saved_path.read_text())
        preset = get_preset(saved["recipe"])
        config = config_from_dict(preset.objective.Config, saved["config"])
        config.validate()
        recipe = saved["recipe"]
    else:
        preset, config = resolve_config(recipe, overrides)
        if out is None and _dist_env()[1] > 1:
            raise ConfigError(
                "under torchrun, name the run folder with --out (every process must agree on it)"
            )
        run_dir = Path(out) if out is not None else default_run_dir(recipe)
    objective = preset.objective(config)
    trainer = Trainer(objective, run_dir, recipe=recipe, callbacks=callbacks, resume=resume is not None)
    return trainer.fit()
