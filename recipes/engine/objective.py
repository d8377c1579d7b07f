"""What an objective implements (`Objective`, returning its splits as `Data`) and what watches a run
(`Callback`). See `recipes.engine` for how a step talks to the engine."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from recipes.engine.config import OptimizerConfig, ScheduleConfig, TrainConfig

if TYPE_CHECKING:
    from recipes.engine.context import Context
    from recipes.engine.trainer import Trainer
    from zoo.metrics import Metric

__all__ = ["Callback", "Data", "Objective", "collate_ragged", "labelled_image_info"]


@dataclass
class Data:
    """The splits an objective trains and evaluates on, plus what the published weight records.

    A dataset with ``get_batch(indices) -> batch`` (in-memory tensors) is batched by indexing, with no
    per-sample Python; any other map-style dataset goes through a DataLoader with the engine's sampler,
    whose samples `collate` turns into a batch (default: ``torch.utils.data.default_collate``, which
    stacks tensors and recurses into tuples and dicts; `collate_ragged` keeps ragged fields, such as
    detection targets, as lists).
    """

    train: Any
    val: Any = None
    test: Any = None
    name: str = ""  # recorded as Weights.dataset
    split: str = ""  # how the splits were carved, recorded as Weights.split
    info: dict[str, Any] = field(default_factory=dict)  # labels, input_size, mean, std, ...
    collate: Callable[[list[Any]], Any] | None = None  # DataLoader samples -> batch (None: default_collate)


def labelled_image_info(splits: Any) -> dict[str, Any]:
    """`Data.info` of a labelled image dataset (`zoo.data` splits): what its published weight records and its
    model is built from: labels, input_size (C, H, W), and the normalisation mean and std."""
    return {
        "labels": splits.labels,
        "input_size": splits.input_size,
        "mean": splits.mean,
        "std": splits.std,
    }


def collate_ragged(samples: list[Any]) -> Any:
    """Batch samples whose fields may not stack: a field whose values are tensors of one shape is stacked,
    any other field (a dict of targets, boxes of a different count per image) becomes a list with one item
    per sample. Samples that are tuples or lists are batched field by field, as detection needs: ``[(image,
    {"boxes", "labels"}), ...]`` -> ``(images (N, C, H, W), [target dict, ...])``."""
    first = samples[0]
    if isinstance(first, tuple | list):
        fields = [_collate_field([s[i] for s in samples]) for i in range(len(first))]
        return tuple(fields) if isinstance(first, tuple) else fields
    return _collate_field(samples)


def _collate_field(values: list[Any]) -> Any:
    if all(isinstance(v, torch.Tensor) for v in values) and len({v.shape for v in values}) == 1:
        return torch.stack(values)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return torch.tensor(values)
    return list(values)


class Objective:
    """What is trained and how: subclass it in ``recipes/<objective>.py`` (see `recipes.engine`)."""

    name: ClassVar[str] = ""  # e.g. "classification"
    Config: ClassVar[type[TrainConfig]] = TrainConfig
    publish_model: ClassVar[str] = "model"  # the module saved as the weight (and averaged by ema_decay)
    frozen_modules: ClassVar[tuple[str, ...]] = ()  # kept in eval mode while training (a fixed teacher)

    def __init__(self, config: TrainConfig):
        self.config = config
        # Where `publish` draws the card's pictures: the engine points it at the run folder's pictures/
        # before publishing; without a run folder, `picture_path` makes a temporary one (removed at exit).
        self.pictures_dir: Path | None = None

    def picture_path(self, filename: str) -> Path:
        """A path in `pictures_dir` for a card picture that `publish` draws and lists under its
        ``"files"`` (the engine copies each into the weight folder)."""
        if self.pictures_dir is None:
            self.pictures_dir = Path(tempfile.mkdtemp(prefix=f"zoo-{self.name or 'run'}-"))
            atexit.register(shutil.rmtree, self.pictures_dir, True)
        self.pictures_dir.mkdir(parents=True, exist_ok=True)
        return self.pictures_dir / filename

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

    def metrics(self, split: str) -> dict[str, Metric]:
        """`zoo.metrics.Metric` objects measured on `split` ("val" or "test"), by name. Built once per
        split; the engine resets them before the split, `eval_step` updates them (``ctx.metrics[name]``)
        and the engine computes them (over every rank) after it. Default: none."""
        return {}

    def train_step(self, ctx: Context, batch: Any) -> dict[str, torch.Tensor]:
        """Losses of one micro-batch: return ``{"loss": ...}`` or call ``ctx.optimize`` yourself."""
        raise NotImplementedError

    def eval_step(self, ctx: Context, batch: Any) -> dict[str, tuple[torch.Tensor | float, int]] | None:
        """Update ``ctx.metrics`` with one batch, and/or return metric name -> (sum over the batch, count):
        each such pair feeds a `zoo.metrics.Mean` of that name (summed over batches and ranks, then
        divided once)."""
        raise NotImplementedError

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        """The module to save as the weight and its metadata (Weights fields: task, labels, ...). A
        ``"files"`` entry (role -> path, e.g. ``{"predictions": "pred.png"}``) names pictures that are
        copied into the weight folder beside ``curves.png`` and shown in the model card."""
        return model, {}

    def publish_metrics(self, model: nn.Module, data: Data) -> dict[str, float]:
        """Metrics the objective measures itself at publish, beyond the test split's (``publish`` returns
        them under ``"metrics"``, e.g. a label-efficiency sweep); the published-weight tests re-measure a
        card's through this. Default: none."""
        return {}

    def batch_size_of(self, batch: Any) -> int:
        """Samples in a batch (for samples/s): the length of its first field."""
        first = batch[0] if isinstance(batch, list | tuple) else batch
        if isinstance(first, torch.Tensor):
            return int(first.shape[0])
        return len(first) if isinstance(first, list | tuple) else 0


class Callback:
    """Hooks into a running `Trainer`; set ``trainer.should_stop = True`` to end the run cleanly, or raise
    (e.g. ``optuna.TrialPruned``)."""

    def on_optimizer_step(self, trainer: Trainer) -> None:
        """After every optimizer step (``trainer.global_step`` counts it; the weights' EMA is updated),
        before its logging, validation and checkpoint."""

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        """After each *logged* optimizer step (every ``log_every`` steps, the last step of an epoch and the
        ``max_steps`` one), with the train logs averaged since the previous call (plus samples_per_s, lr)."""

    def on_eval(self, trainer: Trainer, split: str, metrics: dict[str, float]) -> None:
        """After each validation (``split`` is "val"; the final test is reported by `fit`'s result), with the
        metrics reduced over ranks."""

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        """After epoch ``epoch`` (1-based count of finished epochs) and its validation."""
