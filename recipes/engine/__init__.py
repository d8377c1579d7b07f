"""The one training loop: every objective (classification, autoencoding, GAN, BYOL, ...) runs through it.

An **objective** is three things, kept in ``recipes/<objective>.py``:

1. a typed, serialisable **Config**: a dataclass subclassing `ObjectiveConfig` (the engine's knobs of
   `TrainConfig`, plus the model and dataset fields every objective has) that adds the objective's own
   fields (augmentation, loss weights ...). It round-trips through JSON (`recipes.config`), and
   ``--set key=value`` overrides are checked against its annotations;
2. **presets**: named configs registered with `register_preset` (``zoo train NAME``); a preset that
   reproduces a published weight is named like it (``resnet8_small.mnist``);
3. an `Objective` subclass: ``build()`` returns every module of the run by name (all are checkpointed),
   ``optimizers()`` says which parameters each optimizer owns, ``data()`` returns the splits (`Data`,
   with a ``collate`` for samples that do not stack), ``train_step(ctx, batch)`` computes losses,
   ``metrics(split)`` returns `zoo.metrics.Metric` objects that ``eval_step(ctx, batch)`` updates (or
   it returns ``{name: (sum, count)}``, each pair a `zoo.metrics.Mean`); ``publish(model, data)``
   returns the module saved as the weight and its metadata. Class attributes: ``publish_model`` (which
   module is the weight, and is averaged by ``ema_decay``) and ``frozen_modules`` (modules kept in eval
   mode while training, e.g. a fixed teacher).

The step talks to the engine only through its `Context` ``ctx``:

- ``ctx.models[name]``: the modules (wrapped in DDP when distributed; ``ctx.unwrap(name)`` for the raw
  module). During evaluation ``ctx.models["model"]`` is the EMA of the weights when ``ema_decay > 0``,
  and ``ctx.metrics`` holds the split's metric objects;
- ``ctx.to_device(x)`` (a tensor, or tuples, lists and dicts of them; 4-d tensors channels-last when
  configured), ``ctx.autocast()`` (mixed precision around the forward pass only), ``ctx.generator``
  (the run's seeded RNG for augmentation; checkpointed);
- ``ctx.optimize(loss, name)``: backward into the parameters of optimizer ``name`` only (so two optimizers
  used in turn, as in a GAN, never pollute each other's gradients), with loss scaling (fp16), gradient
  accumulation, clipping, the optimizer and scheduler step. A step that returns ``{"loss": ...}``
  without calling it is optimised automatically (single-optimizer objectives need nothing else);
- ``ctx.ema_update(target, source, decay)``: a target network that follows an online one (BYOL, mean
  teacher); the target is one of the run's modules, so it is checkpointed and resumed like the others;
- ``ctx.step`` (optimizer steps so far), ``ctx.total_steps``, ``ctx.epoch``, ``ctx.progress`` (0 to 1, e.g. a momentum ramp),
  ``ctx.rank``, ``ctx.world_size``, ``ctx.config``.

The `Trainer` runs the loop: the optimizers and schedules of `recipes.engine.optim`, stepped per optimizer
step; gradient clipping and accumulation; bf16 autocast on CPU, fp16 (with ``GradScaler``) or bf16 on
CUDA; an EMA of the weights (``torch.optim.swa_utils.AveragedModel``); early stopping on a validation
metric with patience; atomic checkpoints (`recipes.engine.checkpoint`) every N steps and each epoch,
holding everything needed to resume bit-exactly on CPU (models, optimizers, schedulers, scaler, EMA,
every RNG, the epoch and the position in it); DDP under ``torchrun`` (gloo on CPU, NCCL on GPU) with
per-rank shards of one seeded permutation, metrics reduced across ranks and everything written by rank
0; a tqdm bar (loss, metric, samples/s), CSV and TensorBoard logs and a PNG of the curves
(`recipes.engine.logging`).

Public hooks for tools (`recipes.tools` uses nothing else):

- ``Trainer(..., splits=("train", "val"))``: the splits the run uses (a search never sees the test split);
- ``trainer.setup()`` builds everything without training; ``trainer.batches(epoch)`` yields training
  batches; ``trainer.train_batch(batch)`` runs one micro-step and returns its logs;
  ``trainer.evaluate(split, models=...)`` returns reduced metrics;
- ``trainer.snapshot()`` / ``trainer.restore(snapshot)``: the full state in memory, as a checkpoint holds
  it; ``with trainer.preserved():`` restores it on exit;
- ``with trainer.hold_schedules():`` optimizer steps leave the learning rates to the tool;
- ``with trainer.backward_only() as losses:`` steps compute gradients and never step; ``trainer.zero_grad()``;
- `Callback` hooks see every optimizer step, each logged step, evaluation and epoch end and may stop the
  run (``trainer.should_stop = True``) or raise (e.g. ``optuna.TrialPruned``).

Run folder: ``config.json`` (recipe, objective, resolved config), ``checkpoints/last.pt`` (and
``best.pt``), ``metrics.csv``, ``tb/``, ``curves.png``, ``result.json`` and ``hub/<arch>.<tag>/`` (the
weight folder written by `zoo.save_pretrained`, ready to copy into the zoo's ``hub/``).

Modules: `config` (the configs), `optim` (optimizers, schedules), `objective` (`Objective`, `Data`,
`Callback`), `context` (`Context`), `presets` (the preset registry), `checkpoint` (RNG state, files),
`logging` (metrics log, curves, machine record), `distributed`, `trainer` (`Trainer`, `train`), `results`
(`RunResult`, ``result.json``, the weight folder).
"""

from __future__ import annotations

from recipes.engine.checkpoint import CHECKPOINT_VERSION
from recipes.engine.config import ObjectiveConfig, OptimizerConfig, ScheduleConfig, TrainConfig
from recipes.engine.context import Context
from recipes.engine.logging import RunLogger, cpu_has_bf16, git_commit, machine_info, plot_curves
from recipes.engine.objective import Callback, Data, Objective, collate_ragged, labelled_image_info
from recipes.engine.optim import build_optimizer, build_scheduler
from recipes.engine.presets import (
    RECIPE_MODULES,
    Preset,
    find_preset,
    get_preset,
    list_presets,
    register_preset,
    resolve_config,
)
from recipes.engine.results import RunResult
from recipes.engine.trainer import SPLITS, Trainer, default_run_dir, train

__all__ = [
    "CHECKPOINT_VERSION",
    "RECIPE_MODULES",
    "SPLITS",
    "Callback",
    "Context",
    "Data",
    "Objective",
    "ObjectiveConfig",
    "OptimizerConfig",
    "Preset",
    "RunLogger",
    "RunResult",
    "ScheduleConfig",
    "TrainConfig",
    "Trainer",
    "build_optimizer",
    "build_scheduler",
    "collate_ragged",
    "cpu_has_bf16",
    "default_run_dir",
    "find_preset",
    "get_preset",
    "git_commit",
    "labelled_image_info",
    "list_presets",
    "machine_info",
    "plot_curves",
    "register_preset",
    "resolve_config",
    "train",
]
