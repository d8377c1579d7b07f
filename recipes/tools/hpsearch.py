"""``zoo search RECIPE --space KEY=SPEC ...`` / `search`: hyper-parameter search with Optuna.

Grid, random or TPE search over config keys, trials ranked on a *validation* metric (each trial's
`Trainer` is built with ``splits=("train", "val")``: the test split is never seen), optional median
pruning on the metric reported at each validation, and the linear scaling rule (``--scale-lr``: lr x k
when the batch is k times the preset's; Goyal et al., https://arxiv.org/abs/1706.02677). The table is
printed and saved (``search.csv``, ``search.json``); the best trial is printed as ``--set`` flags.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recipes.tools.common import (
    QUIET,
    get_key,
    has_key,
    optimizer_fields,
    resolve_target,
    set_flag,
    table,
    write_csv,
    write_json,
)
from zoo.errors import ConfigError

if TYPE_CHECKING:
    from recipes.engine import Callback, Objective, TrainConfig, Trainer

__all__ = [
    "ALIASES",
    "SPEC_KINDS",
    "SearchResult",
    "Spec",
    "parse_space",
    "pruning_callback",
    "scale_lr_for_batch",
    "search",
]


# Short names for the keys searched most often; a config's own field of that name wins.
ALIASES = {
    "lr": "optim.lr",
    "optimizer": "optim.name",
    "weight_decay": "optim.weight_decay",
    "momentum": "optim.momentum",
    "schedule": "schedule.name",
    "warmup": "schedule.warmup",
}
SPEC_KINDS = ("log", "float", "int", "choice")


@dataclass(frozen=True)
class Spec:
    """One searched key: ``log:LOW:HIGH[:POINTS]``, ``float:LOW:HIGH[:POINTS]``, ``int:LOW:HIGH[:STEP]``
    (inclusive) or ``choice:A,B,...``. POINTS is how many values the grid sampler tries (default 3,
    evenly spaced, in log space for ``log``); random and TPE sample the whole range."""

    key: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()
    points: int = 3  # grid points of float/log; the step of int

    def suggest(self, trial: Any) -> Any:
        if self.kind == "log":
            return trial.suggest_float(self.key, self.low, self.high, log=True)
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=self.points)
        return trial.suggest_categorical(self.key, list(self.choices))

    def grid(self) -> list[Any]:
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1, self.points))
        if self.points == 1:
            return [self.low]
        if self.kind == "log":
            a, b = math.log(self.low), math.log(self.high)
            values = [math.exp(a + (b - a) * i / (self.points - 1)) for i in range(self.points)]
            values[0], values[-1] = self.low, self.high
            return [float(f"{v:.6g}") if 0 < i < self.points - 1 else v for i, v in enumerate(values)]
        step = (self.high - self.low) / (self.points - 1)
        return [self.low + step * i for i in range(self.points)]

    def examples(self) -> list[Any]:
        """Values that must all be valid for the config (checked before any trial runs)."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return [int(self.low), int(self.high)]
        return [self.low, self.high]

    @property
    def text(self) -> str:
        if self.kind == "choice":
            return "choice:" + ",".join(str(c) for c in self.choices)
        return f"{self.kind}:{self.low:g}:{self.high:g}:{self.points}"


def _parse_spec(key: str, text: str, typed: str = "") -> Spec:
    from recipes.config import parse_override

    kind, _, rest = text.partition(":")
    shown = f"--space {typed or key}={text}"
    usage = (
        f"{shown}: expected log:LOW:HIGH[:POINTS], float:LOW:HIGH[:POINTS], "
        f"int:LOW:HIGH[:STEP] or choice:A,B,... (kinds: {', '.join(SPEC_KINDS)})"
    )
    if kind not in SPEC_KINDS or not rest:
        raise ConfigError(usage)
    if kind == "choice":
        values = [parse_override(f"x={v}")[1] for v in rest.split(",") if v.strip()]
        if len(values) < 1:
            raise ConfigError(usage)
        return Spec(key, kind, choices=tuple(values))
    parts = rest.split(":")
    if len(parts) not in (2, 3):
        raise ConfigError(usage)
    try:
        numbers = [int(p) if kind == "int" else float(p) for p in parts]
    except ValueError:
        raise ConfigError(usage) from None
    low, high = numbers[0], numbers[1]
    points = int(numbers[2]) if len(numbers) == 3 else (1 if kind == "int" else 3)
    if not low < high:
        raise ConfigError(f"{shown}: LOW must be below HIGH")
    if kind == "log" and low <= 0:
        raise ConfigError(f"{shown}: a log range needs LOW > 0")
    if points < 1:
        raise ConfigError(f"{shown}: POINTS/STEP must be >= 1")
    return Spec(key, kind, low, high, points=points)


def parse_space(items: Sequence[str] | Mapping[str, str], config: TrainConfig | None = None) -> list[Spec]:
    """``["lr=log:1e-4:1e-1", "batch_size=choice:64,128"]`` (or a mapping) -> specs, with `ALIASES`
    resolved against `config` (``lr`` -> ``optim.lr`` unless the config has its own ``lr`` field)."""
    pairs = list(items.items()) if isinstance(items, Mapping) else []
    if not isinstance(items, Mapping):
        for item in items:
            key, sep, text = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--space '{item}' is not KEY=SPEC (e.g. --space lr=log:1e-4:1e-1)")
            pairs.append((key.strip(), text.strip()))
    specs, seen = [], set()
    for typed, text in pairs:
        key = typed
        if config is not None and key in ALIASES and not has_key(config, key):
            key = ALIASES[key]
        if key in seen:
            raise ConfigError(f"--space names '{key}' twice")
        seen.add(key)
        specs.append(_parse_spec(key, text, typed))
    if not specs:
        raise ConfigError("search needs at least one --space KEY=SPEC")
    return specs


def scale_lr_for_batch(config: TrainConfig, reference: TrainConfig) -> TrainConfig:
    """The linear scaling rule: every optimizer's lr times k, where the batch per optimizer step
    (``batch_size * accum_steps``) is k times the reference's. "When the minibatch size is multiplied by
    k, multiply the learning rate by k" (Goyal et al., 2017, https://arxiv.org/abs/1706.02677)."""
    k = (config.batch_size * config.accum_steps) / (reference.batch_size * reference.accum_steps)
    if k == 1:
        return config
    changes = {}
    for name in optimizer_fields(config):
        opt = getattr(config, name)
        changes[name] = dataclasses.replace(opt, lr=opt.lr * k)
    out = dataclasses.replace(config, **changes)
    out.validate()
    return out


def _trial_config(base: TrainConfig, params: Mapping[str, Any], scale_lr: bool) -> tuple[TrainConfig, dict]:
    """The config of one trial and the overrides that make it from `base` (searched keys, fix-ups and the
    scaled learning rates), in ``--set`` order."""
    from recipes.config import apply_overrides

    overrides = dict(params)
    for name in optimizer_fields(base):
        # Nesterov is SGD-only: a search over optimizers turns it off for the others.
        chosen = overrides.get(f"{name}.name")
        if (
            chosen not in (None, "sgd")
            and f"{name}.nesterov" not in overrides
            and getattr(base, name).nesterov
        ):
            overrides[f"{name}.nesterov"] = False
    config = apply_overrides(base, overrides)
    if scale_lr:
        scaled = scale_lr_for_batch(config, base)
        for name in optimizer_fields(base):
            lr = getattr(scaled, name).lr
            if lr != getattr(config, name).lr:
                overrides[f"{name}.lr"] = lr
        config = scaled
    return config, overrides


@dataclass
class SearchResult:
    recipe: str
    metric: str
    direction: str
    rows: list[dict[str, Any]]  # one per trial: number, state, the keys set, value, epochs, ...
    best: dict[str, Any] | None  # {"number", "value", "overrides"} of the best completed trial
    base_overrides: list[str]
    out: Path | None = None
    study: Any = None  # the optuna.Study

    def set_flags(self) -> list[str]:
        """The best trial as ``--set`` flags (the search's own ``--set`` first)."""
        if self.best is None:
            return []
        flags = [f"--set {o}" for o in self.base_overrides]
        return flags + [set_flag(k, v) for k, v in self.best["overrides"].items()]

    def summary(self) -> str:
        keys = []
        for row in self.rows:
            keys += [k for k in row.get("overrides", {}) if k not in keys]
        columns = ["trial", "state", *keys, self.metric, "epochs", "time_s", "note"]
        rows = [{**r, **r.get("overrides", {}), self.metric: r.get("value")} for r in self.rows]
        lines = [table(rows, columns)]
        if self.best is None:
            lines.append("no trial completed")
        else:
            lines.append(
                f"best: trial {self.best['number']}, val {self.metric} {self.best['value']:.4g}\n"
                f"zoo train {self.recipe} {' '.join(self.set_flags())}".rstrip()
            )
        return "\n".join(lines)


class _MetricMissing(ConfigError):
    """The searched metric is not among the validation metrics: no trial can succeed, the study stops."""


def _metric_missing(metric: str, metrics: Mapping[str, float]) -> _MetricMissing:
    return _MetricMissing(
        f"search metric '{metric}' is not a validation metric; this objective reports "
        f"{', '.join(sorted(metrics))} (--metric)"
    )


def pruning_callback(trial: Any, metric: str, prune: bool = True) -> Callback:
    """An engine `Callback` reporting validation `metric` to the Optuna `trial` at each validation (step 1,
    2, ...: epochs when validation runs at epoch ends) and raising ``optuna.TrialPruned`` when the
    study's pruner says so."""
    import optuna

    from recipes.engine import Callback

    class OptunaReport(Callback):
        def __init__(self) -> None:
            self.reports = 0

        def on_eval(self, trainer: Trainer, split: str, metrics: dict[str, float]) -> None:
            if split != "val":
                return
            if metric not in metrics:
                raise _metric_missing(metric, metrics)
            self.reports += 1
            value = metrics[metric]
            trial.report(value, self.reports)
            trial.set_user_attr("epochs", round(trainer.global_step / max(1, trainer.steps_per_epoch), 3))
            if prune and trial.should_prune():
                trial.set_user_attr("note", f"pruned at validation {self.reports} ({metric} {value:.4g})")
                raise optuna.TrialPruned(f"{metric} {value:.4g} at validation {self.reports}")

    return OptunaReport()


def _default_direction(metric: str) -> str:
    lowered = metric.lower()
    return "min" if any(w in lowered for w in ("loss", "mse", "error", "nll", "perplexity")) else "max"


def search(
    target: str | Objective,
    space: Sequence[str] | Mapping[str, str],
    overrides: Sequence[str] = (),
    *,
    trials: int | None = None,
    sampler: str = "random",
    prune: bool = False,
    prune_startup: int = 2,
    scale_lr: bool = False,
    metric: str | None = None,
    direction: str | None = None,
    baseline: bool = False,
    val_per_class: int = 20,
    seed: int = 0,
    out: str | Path | None = None,
    verbose: bool = True,
) -> SearchResult:
    """Hyper-parameter search with Optuna over config keys of a preset (or objective).

    Each trial trains the config with the sampled values (after `overrides`) and is scored on the last
    *validation* metrics of its run; the test split is dropped from every trial. A config without a
    validation split gets ``val_per_class`` (when it has that key). `metric` defaults to ``acc``
    (maximised) for classification and ``loss`` (minimised) otherwise. `sampler`: ``grid`` (every
    combination of the specs' grid values, in a seeded shuffled order), ``random`` or ``tpe``; `trials`
    defaults to the grid size, or 10. `prune`: Optuna's MedianPruner (a trial stops when its metric at a
    validation is worse than the median of earlier trials at the same validation, after `prune_startup`
    complete trials). `scale_lr`: the linear scaling rule against the preset's batch (`scale_lr_for_batch`).
    `baseline`: trial 0 runs the preset as is (after `overrides`), as a reference and to seed the pruner.
    """
    import optuna

    from recipes.engine import Trainer

    if sampler not in ("grid", "random", "tpe"):
        raise ConfigError(f"search sampler '{sampler}': expected one of grid, random, tpe")
    cls, base, recipe = resolve_target(target, overrides)
    extra = dict(QUIET)
    notes = []
    if getattr(base, "val_per_class", None) == 0:
        extra["val_per_class"] = val_per_class
        notes.append(
            f"val_per_class={val_per_class}: trials are ranked on a validation split carved from train"
        )
    from recipes.config import apply_overrides

    base = apply_overrides(base, extra)
    specs = parse_space(space, base)
    for spec in specs:  # every value must be a valid config before any trial trains
        for value in spec.examples():
            _trial_config(base, {spec.key: value}, scale_lr)
    if metric is None:
        metric = "acc" if cls.name == "classification" else "loss"
    direction = direction or _default_direction(metric)
    if direction not in ("min", "max"):
        raise ConfigError(f"search direction '{direction}': expected min or max")

    grid_size = math.prod(len(s.grid()) for s in specs)
    if sampler == "grid":
        if grid_size < 2:
            raise ConfigError("a grid of one point is not a search: give a spec more than one value")
        optuna_sampler: Any = optuna.samplers.GridSampler({s.key: s.grid() for s in specs}, seed=seed)
        n_trials = min(trials or grid_size, grid_size) + int(baseline)
    elif sampler == "random":
        optuna_sampler = optuna.samplers.RandomSampler(seed=seed)
        n_trials = (trials or 10) + int(baseline)
    else:
        optuna_sampler = optuna.samplers.TPESampler(seed=seed)
        n_trials = (trials or 10) + int(baseline)
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=prune_startup, n_warmup_steps=0)
        if prune
        else optuna.pruners.NopPruner()
    )
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trials are reported below, failures included
    study = optuna.create_study(
        direction="maximize" if direction == "max" else "minimize", sampler=optuna_sampler, pruner=pruner
    )
    if baseline:
        study.enqueue_trial({}, user_attrs={"baseline": True})

    def run_trial(trial: optuna.Trial) -> float:
        try:
            return train_trial(trial)
        except ConfigError as err:  # this trial's combination of values cannot run: the next one may
            trial.set_user_attr("note", f"failed: {err}")
            if isinstance(err, _MetricMissing):
                trial.study.stop()
            raise

    def train_trial(trial: optuna.Trial) -> float:
        if trial.user_attrs.get("baseline"):
            params = {s.key: get_key(base, s.key) for s in specs}
            trial.set_user_attr("note", "baseline (the preset)")
        else:
            params = {s.key: s.suggest(trial) for s in specs}
        config, used = _trial_config(base, params, scale_lr)
        used = {k: list(v) if isinstance(v, tuple) else v for k, v in used.items()}
        trial.set_user_attr("overrides", used)
        trainer = Trainer(
            cls(config),
            None,
            recipe=recipe,
            callbacks=[pruning_callback(trial, metric, prune)],
            publish=False,
            splits=("train", "val"),  # trials never see the test split
        )
        trainer.setup()
        if trainer.data.val is None:
            raise ConfigError(
                "search ranks trials on validation metrics and this config has no validation split"
            )
        start = time.perf_counter()
        try:
            result = trainer.fit()
        finally:
            trial.set_user_attr("time_s", round(time.perf_counter() - start, 2))
        trial.set_user_attr("epochs", round(result.epochs, 3))
        trial.set_user_attr("val_metrics", result.val_metrics)
        if metric not in result.val_metrics:
            raise _metric_missing(metric, result.val_metrics)
        return result.val_metrics[metric]

    def report(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        if verbose:
            row = _trial_row(frozen)
            sets = " ".join(f"{k}={v}" for k, v in row["overrides"].items())
            parts = [f"trial {row['trial']}: {row['state'].lower()}"]
            if row["value"] is not None:
                parts.append(f"{metric} {row['value']:.4g}")
            parts += [f"[{sets}]", row["note"] or ""]
            print(" ".join(parts).rstrip())

    if verbose:
        for note in notes:
            print(f"note: {note}")
    try:
        study.optimize(run_trial, n_trials=n_trials, catch=(ConfigError,), callbacks=[report])
    finally:
        optuna.logging.set_verbosity(verbosity)
    rows = [_trial_row(t) for t in study.trials]
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    failed = [r for r in rows if r["state"] == "FAIL"]
    if failed and not completed:
        raise ConfigError(f"every trial that ran failed; trial {failed[0]['trial']}: {failed[0]['note']}")
    best = None
    if completed:
        bt = study.best_trial
        best = {"number": bt.number, "value": bt.value, "overrides": bt.user_attrs.get("overrides", {})}
    result = SearchResult(recipe, metric, direction, rows, best, list(overrides), None, study)
    if out is not None:
        out = Path(out)
        keys = []
        for row in rows:
            keys += [k for k in row["overrides"] if k not in keys]
        columns = ["trial", "state", *keys, "value", "epochs", "time_s", "note"]
        write_csv(out / "search.csv", [{**r, **r["overrides"]} for r in rows], columns)
        write_json(
            out / "search.json",
            {
                "recipe": recipe,
                "overrides": list(overrides),
                "space": {s.key: s.text for s in specs},
                "sampler": sampler,
                "prune": prune,
                "scale_lr": scale_lr,
                "metric": metric,
                "direction": direction,
                "notes": notes,
                "trials": rows,
                "best": best,
                "best_set": result.set_flags(),
            },
        )
        result.out = out
    return result


def _trial_row(t: Any) -> dict[str, Any]:
    return {
        "trial": t.number,
        "state": t.state.name,
        "overrides": dict(t.user_attrs.get("overrides", {})),
        "value": t.value if t.value is not None else None,
        "epochs": t.user_attrs.get("epochs"),
        "time_s": t.user_attrs.get("time_s"),
        "val_metrics": t.user_attrs.get("val_metrics", {}),
        "intermediate": {str(k): v for k, v in t.intermediate_values.items()},
        "note": t.user_attrs.get("note", ""),
    }
