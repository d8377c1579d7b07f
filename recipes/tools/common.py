"""Plumbing the tools share: a `Trainer` from a preset name or an objective with ``--set`` overrides, config
key access, and the small writers (tables, CSV, JSON, ``--set`` flags) of their reports.

Only the engine's public hooks are used (see `recipes.engine`); torch and the engine are imported by the
functions, so that importing the toolbox (which the `zoo` command line does) stays cheap.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recipes.engine import Callback, Objective, TrainConfig, Trainer

__all__ = ["QUIET", "make_trainer", "resolve_target"]

# Overrides that keep a tool's inner runs silent (no progress bar, no TensorBoard).
QUIET = {"progress": False, "tensorboard": False}


def resolve_target(
    target: str | Objective, overrides: Sequence[str] | Mapping[str, Any] = ()
) -> tuple[type[Objective], TrainConfig, str]:
    """(objective class, config with overrides applied and validated, recipe name) of a preset or objective."""
    from recipes.config import apply_overrides
    from recipes.engine import Objective, resolve_config

    if isinstance(target, str):
        preset, config = resolve_config(target, overrides)
        return preset.objective, config, target
    if isinstance(target, Objective):
        return type(target), apply_overrides(target.config, overrides or []), ""
    raise TypeError(f"expected a recipe name or an Objective, got {type(target).__name__}")


def make_trainer(
    target: str | Objective,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    *,
    extra: Mapping[str, Any] | None = None,
    run_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    publish: bool = False,
    splits: Iterable[str] = ("train", "val", "test"),
) -> Trainer:
    """A `Trainer` (not yet set up) for a preset name or an objective, with ``--set`` overrides and then the
    tool's own `extra` overrides, using `splits`. Bad keys or values raise the engine's `ConfigError`."""
    from recipes.config import apply_overrides
    from recipes.engine import Trainer

    cls, config, recipe = resolve_target(target, overrides)
    if extra:
        config = apply_overrides(config, dict(extra))
    return Trainer(cls(config), run_dir, recipe=recipe, callbacks=callbacks, publish=publish, splits=splits)


def optimizer_fields(config: Any) -> list[str]:
    """Names of the config's OptimizerConfig fields (``optim``; a GAN's recipe may have several)."""
    from recipes.engine import OptimizerConfig

    return [
        f.name for f in dataclasses.fields(config) if isinstance(getattr(config, f.name), OptimizerConfig)
    ]


def get_key(config: Any, key: str) -> Any:
    """The value of dotted config key `key` (``optim.lr``)."""
    node = config
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def has_key(config: Any, key: str) -> bool:
    try:
        get_key(config, key)
    except (AttributeError, KeyError):
        return False
    return True


def endless_batches(trainer: Trainer) -> Iterator[Any]:
    """Training batches, epoch after epoch, for probes that may run longer than one epoch."""
    epoch = 0
    while True:
        yield from trainer.batches(epoch)
        epoch += 1


def scalar(value: Any) -> float:
    return float(value.detach()) if hasattr(value, "detach") else float(value)


def set_lr(trainer: Trainer, lr: float) -> None:
    """Every param group of every optimizer at rate `lr` (inside ``trainer.hold_schedules()``)."""
    for opt in trainer.optimizers.values():
        for group in opt.param_groups:
            group["lr"] = lr


def default_out(kind: str, recipe: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{kind}-{recipe or 'objective'}-{stamp}"


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table, columns padded to their widest cell."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if math.isfinite(v) else str(v)
        if v is None:
            return "-"
        return str(v)

    cells = [[str(c) for c in columns]] + [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)


def finite_or_none(value: Any) -> Any:
    """`value` with NaN and inf replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    from zoo.weights import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(finite_or_none(data), indent=2, default=str) + "\n"
    atomic_write_bytes(path, text.encode())


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    from zoo.weights import atomic_write_bytes

    buf = io.StringIO()
    writer = csv.DictWriter(buf, list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue().encode())


def set_flag(key: str, value: Any) -> str:
    """``--set key=value`` as a user would type it."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list | tuple):
        text = ",".join(json.dumps(v) if not isinstance(v, str) else v for v in value)
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value)
    return f"--set {key}={text}"
