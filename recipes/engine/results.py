"""What a finished run leaves behind: `RunResult`, ``result.json``, the curves and the weight folder
(``hub/<arch>.<tag>/``, written by `zoo.save_pretrained` with every field a published weight records)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from recipes.config import config_to_dict
from recipes.engine.logging import git_commit, machine_info, plot_curves
from recipes.engine.presets import find_preset

if TYPE_CHECKING:
    from recipes.engine.trainer import Trainer

__all__ = ["RunResult", "finish_run", "training_record"]


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


def training_record(trainer: Trainer) -> dict[str, Any]:
    """How the weights were made (Weights.training): seed, commit, time, machine, precision, steps."""
    start = getattr(trainer, "start_record", None) or {"commit": git_commit(), "machine": machine_info()}
    return {
        "seed": trainer.config.seed,
        "commit": start["commit"],
        "train_time_s": round(trainer.train_time_s, 2),
        "machine": start["machine"],
        "torch": torch.__version__,
        "device": str(trainer.device),
        "precision": trainer.precision_name,
        "processes": trainer.world_size,
        "epochs": round(trainer.global_step / max(1, trainer.steps_per_epoch), 3),
        "steps": trainer.global_step,
    }


def finish_run(
    trainer: Trainer,
    test_metrics: dict[str, float],
    val_metrics: dict[str, float],
    published: nn.Module,
    meta: dict[str, Any],
) -> RunResult:
    """The run's result; on rank 0 with a run folder, also the curves, the weight folder and result.json."""
    weight_folder = None
    run_dir = trainer.run_dir
    if trainer.is_main and run_dir is not None:
        curves = plot_curves(trainer.logger.history, run_dir / "curves.png", title=trainer.recipe)
        if trainer.publish_weights:
            weight_folder = _publish(trainer, published, dict(meta), test_metrics, curves)
    result = RunResult(
        run_dir=run_dir,
        metrics=test_metrics,
        val_metrics=val_metrics,
        train_time_s=trainer.train_time_s,
        steps=trainer.global_step,
        epochs=trainer.global_step / max(1, trainer.steps_per_epoch),
        weight_folder=weight_folder,
        stopped_early=trainer.stopped_early,
    )
    if trainer.is_main and run_dir is not None:
        from zoo.weights import write_json

        data = dataclasses.asdict(result)
        data["run_dir"] = str(run_dir)
        data["weight_folder"] = str(weight_folder) if weight_folder else None
        data["training"] = training_record(trainer)
        write_json(run_dir / "result.json", _finite(data))
    return result


def _publish(
    trainer: Trainer,
    model: nn.Module,
    meta: dict[str, Any],
    test_metrics: dict[str, float],
    curves: Path | None,
) -> Path:
    from zoo.factory import save_pretrained
    from zoo.registry import Weights, parse_model_name

    zoo_config = getattr(model, "zoo_config", None) or {}
    arch = zoo_config.get("architecture", "model")
    preset_arch, preset_tag = parse_model_name(trainer.recipe)
    # A run names its weight after the preset it reproduces; changing the model or the data makes
    # it something else, saved as "<arch>.local".
    preset = find_preset(trainer.recipe)
    same_data = preset is None or getattr(preset.config, "dataset", None) == getattr(
        trainer.config, "dataset", None
    )
    tag = preset_tag if preset_tag and preset_arch == arch and same_data else "local"
    # Pictures the objective drew for the card (role -> file, e.g. "predictions"), copied beside the curves.
    files = {**(meta.pop("files", None) or {}), **({"curves": curves} if curves else {})}
    # Metrics the objective measured itself at publish (a label-efficiency sweep) join the test split's.
    measured = {**test_metrics, **(meta.pop("metrics", None) or {})}
    weights = Weights.from_dict(
        {
            "arch": arch,
            "tag": tag,
            "task": meta.pop("task", "unknown"),
            "dataset": trainer.data.name or None,
            "split": _split(trainer),
            "metrics": {k: round(v, 6) for k, v in measured.items() if math.isfinite(v)},
            "recipe": trainer.recipe or None,
            "recipe_config": config_to_dict(trainer.config),
            "training": training_record(trainer),
            **meta,
        }
    )
    folder = trainer.run_dir / "hub" / f"{arch}.{tag}"
    return save_pretrained(model, folder, weights=weights, files=files or None)


def _split(trainer: Trainer) -> str | None:
    """The evaluation split as the data describes it, and what a limited (smoke) evaluation left out."""
    split = trainer.data.split or None
    limit = trainer.config.eval_limit
    if split and limit:
        split += f"; metrics measured on the first {limit} items of each split only (eval_limit)"
    return split


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
