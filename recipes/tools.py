"""The training toolbox: LR range test, babysitting checks, hyper-parameter search, snapshot ensembles.

Four verbs on top of the one training loop (`recipes.engine`), each also a function:

- ``zoo lr-find RECIPE`` / `lr_find`: the learning-rate range test (Smith, https://arxiv.org/abs/1506.01186,
  section 3.3). The rate grows exponentially from ``--start`` to ``--end`` over ``--steps`` mini-batches; the
  loss is smoothed; the sweep stops when the smoothed loss exceeds ``--diverge`` times its minimum (or is
  not finite). Models, optimizers, the gradient scaler and the RNGs are put back afterwards, so it can run
  on a live `Trainer`. It writes a PNG and suggests a rate (see `suggest_lr` for the rule and why).
- ``zoo doctor RECIPE`` / `doctor`: the checks to run before a long training run: the initial loss of a
  classifier is ln(num_classes) (logits near zero at init), every optimized parameter receives a gradient
  (the report names those that do not), loss and gradients stay finite, and the model can overfit two
  batches to near-zero loss. Each check reports pass/fail with its numbers; the verb exits 1 on a failure.
- ``zoo search RECIPE --space KEY=SPEC ...`` / `search`: grid, random or TPE search with Optuna over
  config keys, trials ranked on a *validation* metric (the test split is never seen), optional median
  pruning on the metric reported at each validation, and the linear scaling rule (``--scale-lr``: lr x k
  when the batch is k times the preset's; Goyal et al., https://arxiv.org/abs/1706.02677). The table is
  printed and saved (``search.csv``, ``search.json``); the best trial is printed as ``--set`` flags.
- ``zoo ensemble RECIPE --snapshots N`` / `snapshot_ensemble`: one run with cosine annealing restarted N
  times (Huang et al., "Snapshot Ensembles", https://arxiv.org/abs/1704.00109); a snapshot is taken at the
  end of each cycle, and the test metrics of each snapshot and of their averaged prediction (the mean of
  the softmax for a classifier, the mean output otherwise) are printed and saved (``ensemble.json``,
  ``snapshots/snapshot-K.safetensors``).

Importing this module is cheap (the `zoo` command line imports it to add its verbs): torch, optuna and
matplotlib are imported by the functions that use them.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import dataclasses
import io
import json
import math
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recipes.cli import add_set_argument
from zoo.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from recipes.engine import Callback, Objective, TrainConfig, Trainer

__all__ = [
    "Check",
    "DoctorReport",
    "EnsembleResult",
    "LRFindResult",
    "SearchResult",
    "Spec",
    "add_commands",
    "cycle_ends",
    "doctor",
    "ensemble_module",
    "lr_find",
    "make_trainer",
    "parse_space",
    "pruning_callback",
    "scale_lr_for_batch",
    "search",
    "snapshot_callback",
    "snapshot_ensemble",
    "suggest_lr",
]


# ------------------------------------------------------------------------------------------- plumbing
def _resolve(target: str | Objective, overrides: Sequence[str] | Mapping[str, Any] = ()):
    """(objective class, config with overrides applied and validated, recipe name) of a preset or objective."""
    from recipes.config import apply_overrides
    from recipes.engine import Objective, resolve_config

    if isinstance(target, str):
        preset, config = resolve_config(target, overrides)
        return preset.objective, config, target
    if isinstance(target, Objective):
        return type(target), apply_overrides(target.config, overrides or []), ""
    raise TypeError(f"expected a recipe name or an Objective, got {type(target).__name__}")


# Overrides that keep a tool's inner runs silent (no progress bar, no TensorBoard).
_QUIET = {"progress": False, "tensorboard": False}


def make_trainer(
    target: str | Objective,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    *,
    extra: Mapping[str, Any] | None = None,
    run_dir: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
    publish: bool = False,
) -> Trainer:
    """A `Trainer` (not yet set up) for a preset name or an objective, with ``--set`` overrides and then the
    tool's own `extra` overrides. Bad keys or values raise the engine's `ConfigError`."""
    from recipes.config import apply_overrides
    from recipes.engine import Trainer

    cls, config, recipe = _resolve(target, overrides)
    if extra:
        config = apply_overrides(config, dict(extra))
    return Trainer(cls(config), run_dir, recipe=recipe, callbacks=callbacks, publish=publish)


def _optimizer_fields(config: Any) -> list[str]:
    """Names of the config's OptimizerConfig fields (``optim``; a GAN's recipe may have several)."""
    from recipes.engine import OptimizerConfig

    return [
        f.name for f in dataclasses.fields(config) if isinstance(getattr(config, f.name), OptimizerConfig)
    ]


def _get(config: Any, key: str) -> Any:
    node = config
    for part in key.split("."):
        node = node[part] if isinstance(node, dict) else getattr(node, part)
    return node


def _has(config: Any, key: str) -> bool:
    try:
        _get(config, key)
    except (AttributeError, KeyError):
        return False
    return True


def _endless_batches(trainer: Trainer) -> Iterator[Any]:
    epoch = 0
    while True:
        yield from trainer.batches(epoch)
        epoch += 1


class _HeldLR:
    """Stands in for a scheduler while a tool sets the learning rates itself: its step does nothing."""

    def step(self, *args: Any, **kwargs: Any) -> None:
        return None


def _scalar(value: Any) -> float:
    return float(value.detach()) if hasattr(value, "detach") else float(value)


def _set_lr(trainer: Trainer, lr: float) -> None:
    for opt in trainer.optimizers.values():
        for group in opt.param_groups:
            group["lr"] = lr


@contextlib.contextmanager
def preserved_state(trainer: Trainer) -> Iterator[None]:
    """Run a probe on `trainer` and put it back as it was: models (with batch-norm statistics),
    optimizers (state and learning rates), the gradient scaler and every RNG. Schedulers are held still
    inside (the probe sets the rates), so a one-cycle schedule is never stepped past its end."""
    import random

    import numpy as np
    import torch

    saved = copy.deepcopy(
        {
            "models": {k: m.state_dict() for k, m in trainer.models.items()},
            "optimizers": {k: o.state_dict() for k, o in trainer.optimizers.items()},
            "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else None,
        }
    )
    rng = (torch.get_rng_state(), trainer.ctx.generator.get_state(), np.random.get_state(), random.getstate())
    cuda_rng = torch.cuda.get_rng_state(trainer.device) if trainer.device.type == "cuda" else None
    schedulers, in_training = trainer.schedulers, trainer.in_training
    trainer.schedulers = {k: _HeldLR() for k in schedulers}
    try:
        yield
    finally:
        trainer.schedulers, trainer.in_training = schedulers, in_training
        for k, m in trainer.models.items():
            m.load_state_dict(saved["models"][k])
        for k, o in trainer.optimizers.items():
            o.load_state_dict(saved["optimizers"][k])
            o.zero_grad(set_to_none=True)
        if trainer.scaler is not None:
            trainer.scaler.load_state_dict(saved["scaler"])
        torch.set_rng_state(rng[0])
        trainer.ctx.generator.set_state(rng[1])
        np.random.set_state(rng[2])
        random.setstate(rng[3])
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, trainer.device)


def _run_dir(kind: str, recipe: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{kind}-{recipe or 'objective'}-{stamp}"


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}" if math.isfinite(v) else str(v)
        if v is None:
            return "-"
        return str(v)

    cells = [[str(c) for c in columns]] + [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    return value


def _write_json(path: Path, data: Any) -> None:
    from zoo.weights import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite_or_none(data), indent=2, default=str) + "\n"
    atomic_write_bytes(path, text.encode())


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    from zoo.weights import atomic_write_bytes

    buf = io.StringIO()
    writer = csv.DictWriter(buf, list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue().encode())


def _set_flag(key: str, value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list | tuple):
        text = ",".join(json.dumps(v) if not isinstance(v, str) else v for v in value)
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value)
    return f"--set {key}={text}"


# ------------------------------------------------------------------------------------------- lr-find
@dataclass
class LRFindResult:
    lrs: list[float]  # the rate of each mini-batch of the sweep
    losses: list[float]  # its training loss (raw)
    smoothed: list[float]  # zero-lag smoothed loss (what the suggestion reads)
    suggestion: float  # the suggested rate (see `suggest_lr`)
    method: str  # "steepest descent" or "min/10" (the fallback)
    min_loss_lr: float  # the rate at the minimum of the smoothed loss
    diverged: bool  # the sweep stopped early on divergence
    plot: Path | None = None

    def summary(self) -> str:
        stop = "stopped at divergence" if self.diverged else "reached the end of the range"
        return (
            f"lr-find: {len(self.lrs)} mini-batches from {self.lrs[0]:.3g} to {self.lrs[-1]:.3g} ({stop}); "
            f"smoothed loss minimum at lr {self.min_loss_lr:.3g} (min/10: {self.min_loss_lr / 10:.3g})\n"
            f"suggested lr: {self.suggestion:.3g} ({self.method})"
            + (
                "\nnote: the loss was still falling at the end of the range; extend it (--end) to see the minimum"
                if not self.diverged and self.min_loss_lr >= self.lrs[max(0, len(self.lrs) * 19 // 20 - 1)]
                else ""
            )
        )


def _ema(values: Sequence[float], beta: float) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc = beta * acc + (1 - beta) * v
        out.append(acc / (1 - beta ** (i + 1)))  # bias-corrected: no pull towards 0 at the start
    return out


def smooth_losses(losses: Sequence[float], beta: float = 0.8) -> list[float]:
    """Zero-lag smoothing: a bias-corrected exponential moving average run forwards, then backwards.

    A one-way average lags the curve by about ``1 / (1 - beta)`` points, which would shift every feature
    (and the suggested rate) towards larger rates; running it both ways cancels the lag."""
    return _ema(_ema(losses, beta)[::-1], beta)[::-1]


def suggest_lr(
    lrs: Sequence[float], losses: Sequence[float], beta: float = 0.8
) -> tuple[float, str, float, list]:
    """The suggested rate from a range test: ``(suggestion, method, min_loss_lr, smoothed)``.

    The rule is the **steepest descent** of the smoothed loss against log(lr), looked for between the start
    and the loss minimum, leaving out the first and last 5% of the points (the smoothing has little
    context at the ends, so a noisy last batch would otherwise look like a steep descent). That is
    the rate where a step improves the loss fastest while training is still stable; the minimum itself
    sits at the edge of divergence, too high to train at. The other common rule, a tenth of the rate at
    the minimum ("min/10", reported too), depends on exactly where the loss starts to blow up, which moves
    with the noise of a few batches. When there is no descent to read (the minimum falls in the first 5%
    of the sweep: the range starts too high, or the model learns at no rate tried), the suggestion falls
    back to min/10, clamped to the first rate of the range, and the method says to start lower.
    """
    import numpy as np

    if len(lrs) != len(losses) or len(lrs) < 2:
        raise ValueError("suggest_lr needs at least two (lr, loss) points")
    smoothed = smooth_losses(list(losses), beta)
    s = np.asarray(smoothed)
    i_min = int(np.argmin(s))
    min_lr = float(lrs[i_min])
    skip = max(1, len(s) // 20)
    last = min(i_min, len(s) - 1 - skip)  # both ends of a smoothed curve are barely smoothed
    if last - skip >= 2:
        slope = np.gradient(s, np.log10(np.asarray(lrs, dtype=float)))
        j = skip + int(np.argmin(slope[skip : last + 1]))
        if slope[j] < 0:
            return float(lrs[j]), "steepest descent of the smoothed loss", min_lr, smoothed
    if min_lr / 10 < lrs[0]:
        note = "min/10 clamped to the start of the range: the loss never fell, start the sweep lower"
        return float(lrs[0]), note, min_lr, smoothed
    return min_lr / 10, "min/10: a tenth of the rate at the loss minimum", min_lr, smoothed


def _plot_lr_find(result: LRFindResult, path: Path, title: str) -> Path:
    from matplotlib.figure import Figure  # no pyplot: no global backend state, Agg is used for PNG

    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    ax.plot(result.lrs, result.losses, color="0.75", lw=1, label="loss")
    ax.plot(result.lrs, result.smoothed, color="C0", lw=2, label="smoothed loss")
    ax.axvline(result.suggestion, color="C3", ls="--", label=f"suggested {result.suggestion:.2g}")
    ax.axvline(result.min_loss_lr, color="0.4", ls=":", label=f"loss minimum {result.min_loss_lr:.2g}")
    ax.set_xscale("log")
    # Show the descent, not the blow-up: from the minimum to a little above the starting loss.
    first, low = result.smoothed[0], min(result.smoothed)
    top = first + 0.5 * (first - low) if first > low else max(result.smoothed)
    ax.set_ylim(low - 0.05 * (top - low) - 1e-9, max(top, low + 1e-6))
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(f"LR range test{': ' + title if title else ''}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=90)
    return path


def lr_find(
    target: str | Objective | Trainer,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    *,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    beta: float = 0.8,
    diverge: float = 4.0,
    loss_key: str = "loss",
    out: str | Path | None = None,
) -> LRFindResult:
    """Learning-rate range test on a preset, an objective, or a live `Trainer` (restored afterwards).

    Mini-batch ``i`` trains at ``start * (end / start) ** (i / (steps - 1))`` (every optimizer and param
    group gets the same rate; gradient accumulation is respected). The bias-corrected moving average of
    the loss (`beta`) stops the sweep once it exceeds `diverge` times its minimum or the loss is not
    finite. With `out`, writes ``lr_find.png``, ``lr_find.csv`` and ``lr_find.json`` there.
    """
    from recipes.engine import Trainer

    if not 0 < start < end:
        raise ConfigError(f"lr-find range: need 0 < start < end, got start={start}, end={end}")
    if steps < 5:
        raise ConfigError(f"lr-find steps: {steps} must be >= 5")
    if not 0 <= beta < 1:
        raise ConfigError(f"lr-find smoothing: {beta} must be in [0, 1)")
    if diverge <= 1:
        raise ConfigError(f"lr-find diverge: {diverge} must be > 1")
    trainer = target if isinstance(target, Trainer) else make_trainer(target, overrides, extra=_QUIET)
    trainer.setup()
    accum = trainer.config.accum_steps
    ratio = (end / start) ** (1 / (steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    diverged, ema, best = False, 0.0, math.inf
    with preserved_state(trainer):
        batches = _endless_batches(trainer)
        for i in range(steps):
            lr = start * ratio**i
            _set_lr(trainer, lr)
            total = 0.0
            for micro in range(accum):
                logs = trainer.train_batch(next(batches), boundary=micro == accum - 1)
                if loss_key not in logs:
                    raise ConfigError(
                        f"lr-find reads the step's '{loss_key}'; this objective logs {', '.join(sorted(logs))}"
                    )
                total += _scalar(logs[loss_key]) / accum
            if not math.isfinite(total):
                diverged = True
                break
            lrs.append(lr)
            losses.append(total)
            ema = beta * ema + (1 - beta) * total
            smoothed = ema / (1 - beta ** (i + 1))
            best = min(best, smoothed)
            if i >= 2 and smoothed > diverge * best:
                diverged = True
                break
    if len(lrs) < 5:
        raise ConfigError(
            f"lr-find: the loss diverged after {len(lrs)} mini-batches, already at lr {start * ratio ** len(lrs):.3g}; "
            "start the sweep lower (--start)"
        )
    suggestion, method, min_lr, smoothed_all = suggest_lr(lrs, losses, beta)
    result = LRFindResult(lrs, losses, smoothed_all, suggestion, method, min_lr, diverged)
    if out is not None:
        out = Path(out)
        result.plot = _plot_lr_find(result, out / "lr_find.png", trainer.recipe)
        rows = [{"lr": a, "loss": b, "smoothed": c} for a, b, c in zip(lrs, losses, smoothed_all)]
        _write_csv(out / "lr_find.csv", rows, ["lr", "loss", "smoothed"])
        data = dataclasses.asdict(result)
        data.update(
            plot=str(result.plot), recipe=trainer.recipe, start=start, end=end, steps=steps, beta=beta
        )
        _write_json(out / "lr_find.json", data)
    return result


# -------------------------------------------------------------------------------------------- doctor
@dataclass
class Check:
    name: str
    status: str  # "pass", "fail" or "skip"
    message: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class DoctorReport:
    recipe: str
    checks: list[Check]
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "fail"]

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check named {name!r}; checks: {', '.join(c.name for c in self.checks)}")

    def __str__(self) -> str:
        width = max(len(c.name) for c in self.checks)
        lines = [f"doctor {self.recipe or type(self).__name__}"] + [f"  note: {n}" for n in self.notes]
        lines += [f"{c.status.upper():4s}  {c.name.ljust(width)}  {c.message}" for c in self.checks]
        if self.passed:
            lines.append("all checks passed")
        else:
            lines.append(f"{len(self.failed)} check(s) failed: {', '.join(self.failed)}")
        return "\n".join(lines)


# Config fields that regularise (and so keep a model from overfitting two batches), with their "off" value.
_REGULARISERS: dict[str, Any] = {
    "label_smoothing": 0.0,
    "mixup_alpha": 0.0,
    "cutmix_alpha": 0.0,
    "degrees": 0.0,
    "translate": 0.0,
    "scale": [1.0, 1.0],
    "shear": 0.0,
    "hflip": False,
    "brightness": 0.0,
    "contrast": 0.0,
    "noise_std": 0.0,
    "ema_decay": 0.0,
}


def _regularisers_off(config: TrainConfig) -> dict[str, Any]:
    from recipes.config import config_to_dict

    plain = config_to_dict(config)
    out = {k: v for k, v in _REGULARISERS.items() if k in plain and plain[k] != v}
    for name in _optimizer_fields(config):
        if getattr(config, name).weight_decay:
            out[f"{name}.weight_decay"] = 0.0
    if config.accum_steps != 1:
        out["accum_steps"] = 1
    return out


def _param_names(trainer: Trainer) -> dict[int, str]:
    names = {}
    for model_name, module in trainer.models.items():
        for name, p in module.named_parameters():
            names.setdefault(id(p), f"{model_name}.{name}")
    return names


def _optimized_params(trainer: Trainer) -> list[tuple[str, torch.Tensor]]:
    names = _param_names(trainer)
    seen, out = set(), []
    for params in trainer.opt_params.values():
        for p in params:
            if id(p) not in seen:
                seen.add(id(p))
                out.append((names.get(id(p), f"<unnamed {tuple(p.shape)}>"), p))
    return out


def _listing(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@dataclass
class _Probe:
    losses: list[float]
    outputs: list[Any]
    no_grad: list[str]
    zero_grad: list[str]
    bad_grad: list[str]
    n_params: int


def _probe(trainer: Trainer, batches: Sequence[Any], loss_key: str) -> _Probe:
    """Forward and backward the first batches at init, without an optimizer step: losses, model outputs,
    and which optimized parameters got no, zero or non-finite gradients (accumulated over the batches)."""
    import torch

    ctx, objective = trainer.ctx, trainer.objective
    module = trainer.models[objective.publish_model]
    outputs: list[Any] = []
    losses: list[float] = []

    def capture(_m: Any, _i: Any, out: Any) -> None:
        first = out[0] if isinstance(out, list | tuple) else out
        if isinstance(first, torch.Tensor):
            outputs.append(first.detach().float())

    def backward_only(loss: torch.Tensor, name: str | None = None) -> None:
        # Stands in for ctx.optimize: backward into that optimizer's parameters, never a step.
        ctx._optimized = True
        losses.append(_scalar(loss))
        if len(trainer.optimizers) > 1 and name is not None:
            loss.backward(inputs=trainer.opt_params[name])
        else:
            loss.backward()

    params = _optimized_params(trainer)
    for opt in trainer.optimizers.values():
        opt.zero_grad(set_to_none=True)
    handle = module.register_forward_hook(capture)
    ctx.optimize = backward_only  # an instance attribute shadows the method; deleted below
    trainer.in_training = True
    for m in trainer.models.values():
        m.train()
    try:
        for batch in batches:
            ctx._optimized = False
            logs = objective.train_step(ctx, batch)
            if not ctx._optimized:
                if loss_key not in logs:
                    raise ConfigError(
                        f"doctor reads the step's '{loss_key}'; it logs {', '.join(sorted(logs))}"
                    )
                backward_only(logs[loss_key])
    finally:
        del ctx.optimize
        handle.remove()
    no_grad, zero_grad, bad_grad = [], [], []
    for name, p in params:
        if p.grad is None:
            no_grad.append(name)
        elif not bool(torch.isfinite(p.grad).all()):
            bad_grad.append(name)
        elif not bool(p.grad.any()):
            zero_grad.append(name)
    for opt in trainer.optimizers.values():
        opt.zero_grad(set_to_none=True)
    return _Probe(losses, outputs, no_grad, zero_grad, bad_grad, len(params))


def _classes_of(trainer: Trainer, probe: _Probe) -> int | None:
    """The number of classes when the published model is a classifier (its output is (N, C, ...) logits)."""
    labels = trainer.data.info.get("labels")
    if not labels or not probe.outputs:
        return None
    out = probe.outputs[0]
    return len(labels) if out.dim() >= 2 and out.shape[1] == len(labels) else None


def _check_initial_loss(trainer: Trainer, probe: _Probe, tolerance: float) -> Check:
    name = "initial loss"
    classes = _classes_of(trainer, probe)
    if classes is None:
        return Check(
            name,
            "skip",
            f"{trainer.objective.name or type(trainer.objective).__name__} is not a classifier: no ln(C) "
            "reference for its loss (initial loss " + ", ".join(f"{v:.4g}" for v in probe.losses) + ")",
            {"losses": probe.losses},
        )
    expected = math.log(classes)
    measured = sum(probe.losses) / len(probe.losses)
    logits = probe.outputs[0]
    mean, std = float(logits.mean()), float(logits.std())
    tol = tolerance * expected
    off = measured - expected
    values = {"loss": measured, "expected": expected, "tolerance": tol, "logit_mean": mean, "logit_std": std}
    text = (
        f"{measured:.4f} vs ln({classes}) = {expected:.4f}: off by {off:+.4f} (tolerance {tol:.3f}); "
        f"logits at init: mean {mean:+.3f}, std {std:.3f}"
    )
    if math.isfinite(measured) and abs(off) <= tol:
        return Check(name, "pass", text, values)
    hint = (
        "the logits are not near zero at init: check the classifier's initialisation (weight scale, bias) "
        "and any scale on the output"
    )
    return Check(name, "fail", f"{text}; {hint}", values)


def _check_gradients(probe: _Probe) -> Check:
    name = "gradient flow"
    values = {"params": probe.n_params, "no_grad": probe.no_grad, "zero_grad": probe.zero_grad}
    problems = []
    if probe.no_grad:
        problems.append(
            f"{len(probe.no_grad)} of {probe.n_params} parameter tensors receive no gradient (detached from the "
            f"loss?): {_listing(probe.no_grad)}"
        )
    if probe.zero_grad:
        problems.append(
            f"{len(probe.zero_grad)} of {probe.n_params} parameter tensors get an all-zero gradient: "
            f"{_listing(probe.zero_grad)}"
        )
    if problems:
        return Check(name, "fail", "; ".join(problems), values)
    return Check(name, "pass", f"all {probe.n_params} optimized parameter tensors receive a gradient", values)


@dataclass
class _Overfit:
    losses: list[float]
    target: float
    reached: bool
    bad_grad: list[str]
    bad_params: list[str]


def _overfit(
    trainer: Trainer, batches: Sequence[Any], steps: int, target: float, lr: float | None
) -> _Overfit:
    import torch

    params = _optimized_params(trainer)
    bad: list[str] = []

    def watch(name: str):
        def hook(p: torch.Tensor) -> None:
            if p.grad is not None and len(bad) < 50 and not bool(torch.isfinite(p.grad).all()):
                bad.append(name)

        return hook

    handles = [p.register_post_accumulate_grad_hook(watch(n)) for n, p in params]
    losses: list[float] = []
    reached = False
    try:
        rates = {}
        for name, (_, ocfg) in trainer.objective.optimizers(trainer.models).items():
            rates[name] = lr if lr is not None else ocfg.lr
        for name, opt in trainer.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = rates.get(name, group["lr"])
        for i in range(steps):
            logs = trainer.train_batch(batches[i % len(batches)])
            loss = _scalar(logs["loss"]) if "loss" in logs else math.nan
            losses.append(loss)
            if not math.isfinite(loss):
                break
            if i + 1 >= len(batches) and max(losses[-len(batches) :]) <= target:
                reached = True
                break
    finally:
        for h in handles:
            h.remove()
    bad_params = [n for n, p in params if not bool(torch.isfinite(p.detach()).all())]
    return _Overfit(losses, target, reached, list(dict.fromkeys(bad)), bad_params)


def doctor(
    target: str | Objective,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    *,
    steps: int = 300,
    lr: float | None = None,
    tolerance: float = 0.1,
    overfit_loss: float | None = None,
    num_batches: int = 2,
) -> DoctorReport:
    """The babysitting checks on a fresh run of a preset (with ``--set`` overrides) or an objective.

    Regularisers that would keep a model from memorising two batches are switched off for all checks
    (label smoothing, MixUp/CutMix, augmentation, input noise, weight decay, EMA; dropout ``p = 0``); the
    report notes which. The checks, on the first `num_batches` training batches:

    - **initial loss** (classifiers only; skipped with a note otherwise): the mean loss at init is within
      ``tolerance * ln(C)`` of ln(C), the loss of uniform predictions (with or without label smoothing);
      logit mean and spread are reported;
    - **gradient flow**: after a backward pass, every parameter an optimizer owns has a gradient that is
      not all zero; the ones that do not are named (``model.blocks.0.fc.weight``);
    - **overfit two batches**: training on just those batches at the config's rate (or `lr`), with the
      schedule held, brings the loss of each below `overfit_loss` within `steps` steps (default: 0.05 for
      a classifier, 10% of the initial loss otherwise, as a loss such as BCE has a floor above zero);
    - **finite**: no NaN or inf in the losses, the gradients (watched on every step) or the weights.
    """
    import torch

    cls, config, recipe = _resolve(target, overrides)
    relax = _regularisers_off(config)
    trainer = make_trainer(target, overrides, extra={**relax, **_QUIET})
    trainer.setup()
    notes = []
    if relax:
        notes.append("regularisers off for the checks: " + ", ".join(f"{k}={v}" for k, v in relax.items()))
    dropouts = [
        m
        for model in trainer.models.values()
        for m in model.modules()
        if isinstance(m, torch.nn.modules.dropout._DropoutNd)
    ]
    for m in dropouts:
        m.p = 0.0
    if dropouts:
        notes.append(f"dropout p=0 in {len(dropouts)} module(s)")
    batch_iter = trainer.batches(0)
    batches = []
    for _ in range(num_batches):
        try:
            batches.append(next(batch_iter))
        except StopIteration:
            break
    trainer.schedulers = {k: _HeldLR() for k in trainer.schedulers}
    probe = _probe(trainer, batches, "loss")
    checks = [_check_initial_loss(trainer, probe, tolerance), _check_gradients(probe)]
    classes = _classes_of(trainer, probe)
    initial = sum(probe.losses) / max(1, len(probe.losses))
    if overfit_loss is None:
        overfit_loss = 0.05 if classes is not None else 0.1 * initial
    fit = _overfit(trainer, batches, steps, overfit_loss, lr)
    rates = sorted({g["lr"] for o in trainer.optimizers.values() for g in o.param_groups})
    last = fit.losses[-len(batches) :] if fit.losses else [math.nan]
    text = (
        f"{len(batches)} batches: loss {initial:.4g} -> {max(last):.4g} in {len(fit.losses)} steps at lr "
        f"{', '.join(f'{r:.3g}' for r in rates)} (target < {fit.target:.3g})"
    )
    values = {"initial": initial, "final": max(last), "steps": len(fit.losses), "target": fit.target}
    if fit.reached:
        checks.append(Check("overfit two batches", "pass", text, values))
    else:
        hint = (
            "the model cannot memorise two batches: check the loss, the targets, the learning rate (lr-find)"
        )
        checks.append(Check("overfit two batches", "fail", f"{text}; {hint}", values))
    bad = []
    if not all(math.isfinite(v) for v in probe.losses):
        bad.append("loss at init: " + ", ".join(f"{v:.4g}" for v in probe.losses))
    if probe.bad_grad:
        bad.append(f"gradients at init in {_listing(probe.bad_grad)}")
    nonfinite_steps = [i for i, v in enumerate(fit.losses) if not math.isfinite(v)]
    if nonfinite_steps:
        bad.append(f"loss while overfitting from step {nonfinite_steps[0] + 1}")
    if fit.bad_grad:
        bad.append(f"gradients while overfitting in {_listing(fit.bad_grad)}")
    if fit.bad_params:
        bad.append(f"weights after overfitting in {_listing(fit.bad_params)}")
    steps_seen = len(probe.losses) + len(fit.losses)
    if bad:
        checks.append(Check("finite", "fail", "NaN/inf in " + "; ".join(bad), {"problems": bad}))
    else:
        checks.append(
            Check(
                "finite",
                "pass",
                f"loss, gradients and weights finite over {steps_seen} forward/backward passes",
            )
        )
    return DoctorReport(recipe or cls.__name__, checks, notes)


# -------------------------------------------------------------------------------------------- search
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
        if config is not None and key in ALIASES and not _has(config, key):
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
    for name in _optimizer_fields(config):
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
    for name in _optimizer_fields(base):
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
        for name in _optimizer_fields(base):
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
        return flags + [_set_flag(k, v) for k, v in self.best["overrides"].items()]

    def summary(self) -> str:
        keys = []
        for row in self.rows:
            keys += [k for k in row.get("overrides", {}) if k not in keys]
        columns = ["trial", "state", *keys, self.metric, "epochs", "time_s", "note"]
        rows = [{**r, **r.get("overrides", {}), self.metric: r.get("value")} for r in self.rows]
        lines = [_table(rows, columns)]
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
    cls, base, recipe = _resolve(target, overrides)
    extra = dict(_QUIET)
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
            params = {s.key: _get(base, s.key) for s in specs}
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
        )
        trainer.setup()
        trainer.data.test = None  # trials never see the test split
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
        _write_csv(out / "search.csv", [{**r, **r["overrides"]} for r in rows], columns)
        _write_json(
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


# ------------------------------------------------------------------------------------------ ensemble
def schedule_lrs(schedule: Any, total_steps: int, steps_per_epoch: int, lr: float = 1.0) -> list[float]:
    """The learning rate of each optimizer step under `schedule` (the engine's `build_scheduler` on a
    dummy optimizer whose peak rate is `lr`)."""
    import torch

    from recipes.engine import build_scheduler

    p = torch.nn.Parameter(torch.zeros(()))
    opt = torch.optim.SGD([p], lr=lr)
    sched = build_scheduler(opt, schedule, total_steps, steps_per_epoch)
    lrs = []
    for _ in range(total_steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def cycle_ends(schedule: Any, total_steps: int, steps_per_epoch: int) -> list[int]:
    """Optimizer-step counts after which a learning-rate cycle ends (the rate drops to a minimum and the
    next step restarts it), found by running the engine's own `build_scheduler` on a dummy optimizer,
    so the snapshots follow whatever the schedule does (warmup included)."""
    lrs = schedule_lrs(schedule, total_steps, steps_per_epoch)
    ends = []
    for t in range(1, total_steps):
        falling = lrs[t] < lrs[t - 1]
        if falling and (t == total_steps - 1 or lrs[t + 1] > lrs[t]):
            ends.append(t + 1)
    return ends


def snapshot_callback(
    at_steps: Sequence[int], store: list[dict[str, Any]], folder: Path | None = None
) -> Callback:
    """An engine `Callback` that keeps a snapshot of the evaluated model (the EMA when on) after each
    optimizer step in `at_steps` (appended to `store`: index, step, epoch, state) and stops the run after the
    last one. The run must call ``on_step_end`` at those steps (``log_every`` dividing them)."""
    from recipes.engine import Callback

    wanted = sorted(set(at_steps))

    class SnapshotKeeper(Callback):
        def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
            step = trainer.global_step
            if step not in wanted or any(s["step"] == step for s in store):
                return
            model = trainer.eval_models()[trainer.objective.publish_model]
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            snap = {
                "index": len(store) + 1,
                "step": step,
                "epoch": round(step / max(1, trainer.steps_per_epoch), 3),
                "state": state,
            }
            if folder is not None and trainer.is_main:
                from zoo.weights import save_state_dict

                path = folder / f"snapshot-{snap['index']}.safetensors"
                path.parent.mkdir(parents=True, exist_ok=True)
                snap["sha256"] = save_state_dict(state, path)
                snap["file"] = str(path)
            store.append(snap)
            if len(store) == len(wanted):
                trainer.should_stop = True

    return SnapshotKeeper()


def ensemble_module(members: Sequence[torch.nn.Module], mode: str = "softmax") -> torch.nn.Module:
    """A module averaging `members`' predictions. ``softmax``: returns ``log(mean_i softmax(f_i(x)))``
    over dim 1 (the class dim of (N, C) and (N, C, H, W)), so an objective that reads logits (argmax,
    cross-entropy) evaluates the averaged probabilities unchanged; ``mean``: the mean output."""
    import torch
    from torch import nn

    if mode not in ("softmax", "mean"):
        raise ConfigError(f"ensemble mode '{mode}': expected softmax or mean")

    class SnapshotEnsemble(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.members = nn.ModuleList(members)
            self.mode = mode

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            outs = [m(x).float() for m in self.members]
            if self.mode == "softmax":
                logp = torch.stack([o.log_softmax(1) for o in outs])
                return torch.logsumexp(logp, 0) - math.log(len(outs))
            return torch.stack(outs).mean(0)

    return SnapshotEnsemble()


@dataclass
class EnsembleResult:
    recipe: str
    mode: str  # "softmax" (average of the snapshots' softmax) or "mean" (average output)
    split: str  # the split measured ("test")
    snapshots: list[dict[str, Any]]  # index, step, epoch, lr, metrics, file
    ensemble: dict[str, float]  # metrics of the averaged prediction
    run_dir: Path | None = None

    def summary(self) -> str:
        keys = sorted(self.ensemble)
        rows = [
            {"model": f"snapshot {s['index']}", "step": s["step"], "epoch": s["epoch"], **s["metrics"]}
            for s in self.snapshots
        ]
        what = "average softmax" if self.mode == "softmax" else "average output"
        rows.append({"model": f"ensemble ({what} of {len(self.snapshots)})", **self.ensemble})
        return f"{self.split} split:\n" + _table(rows, ["model", "step", "epoch", *keys])


def snapshot_ensemble(
    target: str | Objective,
    overrides: Sequence[str] = (),
    *,
    snapshots: int = 3,
    out: str | Path | None = None,
    split: str = "test",
) -> EnsembleResult:
    """Snapshot ensembling: train once with ``schedule.name=cosine_restarts`` and ``schedule.cycles =
    snapshots`` and no early stopping (the preset's warmup, epochs and rate otherwise; other ``--set``
    overrides apply), keep the model
    at the end of each cycle (run folder ``snapshots/snapshot-K.safetensors``), then measure each snapshot
    and their averaged prediction on `split` (``ensemble.json``)."""
    import math as _math

    if snapshots < 1:
        raise ConfigError(f"--snapshots {snapshots} must be >= 1")
    schedule = {"schedule.name": "cosine_restarts", "schedule.cycles": snapshots, "early_stop_metric": ""}
    recipe = target if isinstance(target, str) else ""
    run_dir = Path(out) if out is not None else _run_dir("ensemble", recipe)
    store: list[dict[str, Any]] = []
    trainer = make_trainer(target, overrides, extra=schedule, run_dir=run_dir)
    trainer.setup()
    cfg = trainer.config
    lrs = schedule_lrs(cfg.schedule, trainer.total_steps, trainer.steps_per_epoch, cfg.optim.lr)
    ends = cycle_ends(cfg.schedule, trainer.total_steps, trainer.steps_per_epoch)[:snapshots]
    if len(ends) < snapshots:
        raise ConfigError(
            f"--snapshots {snapshots}: the run has {trainer.total_steps} optimizer steps, which give "
            f"{len(ends)} complete cycle(s); train for more epochs or take fewer snapshots"
        )
    # The engine calls on_step_end every log_every steps: log at a divisor of every snapshot step.
    cfg.log_every = _math.gcd(cfg.log_every, *ends)
    trainer.callbacks.append(snapshot_callback(ends, store, run_dir / "snapshots"))
    trainer.fit()
    data_split = getattr(trainer.data, split, None)
    if data_split is None:
        raise ConfigError(f"the ensemble is measured on the '{split}' split and this config has none")
    publish = trainer.objective.publish_model
    members = []
    if not store:
        raise ConfigError("the run stopped before the end of its first cycle: no snapshot to ensemble")
    for snap in store:
        snap["lr"] = lrs[snap["step"] - 1]  # the rate of the cycle's last step
        member = copy.deepcopy(trainer.eval_models()[publish])
        member.load_state_dict(snap.pop("state"))
        members.append(member)
        snap["metrics"] = trainer.evaluate(split, models={**trainer.eval_models(), publish: member})
    mode = "softmax" if trainer.data.info.get("labels") else "mean"
    ensemble = trainer.evaluate(
        split, models={**trainer.eval_models(), publish: ensemble_module(members, mode)}
    )
    result = EnsembleResult(recipe or type(trainer.objective).__name__, mode, split, store, ensemble, run_dir)
    _write_json(
        run_dir / "ensemble.json",
        {"recipe": result.recipe, "mode": mode, "split": split, "snapshots": store, "ensemble": ensemble},
    )
    return result


# ----------------------------------------------------------------------------------------------- CLI
def _cmd_lr_find(args: argparse.Namespace) -> int:
    out = args.out or _run_dir("lr-find", args.recipe)
    result = lr_find(
        args.recipe, args.set, start=args.start, end=args.end, steps=args.steps, beta=args.smooth,
        diverge=args.diverge, out=out,
    )  # fmt: skip
    print(result.summary())
    print(f"plot: {result.plot}")
    print(
        f"try: zoo train {args.recipe} {' '.join(f'--set {s}' for s in args.set)} --set optim.lr={result.suggestion:.3g}".replace(
            "  ", " "
        )
    )
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    report = doctor(args.recipe, args.set, steps=args.steps, lr=args.lr, tolerance=args.tolerance)
    print(report)
    return 0 if report.passed else 1


def _cmd_search(args: argparse.Namespace) -> int:
    out = args.out or _run_dir("search", args.recipe)
    result = search(
        args.recipe, args.space, args.set, trials=args.trials, sampler=args.sampler, prune=args.prune,
        prune_startup=args.prune_startup, scale_lr=args.scale_lr, metric=args.metric, direction=args.direction,
        baseline=args.baseline, seed=args.seed, out=out,
    )  # fmt: skip
    print(result.summary())
    print(f"results: {result.out / 'search.csv'}, {result.out / 'search.json'}")
    return 0 if result.best is not None else 1


def _cmd_ensemble(args: argparse.Namespace) -> int:
    result = snapshot_ensemble(args.recipe, args.set, snapshots=args.snapshots, out=args.out)
    print(result.summary())
    print(f"run folder: {result.run_dir}")
    return 0


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="a preset name (zoo train --list)")
    add_set_argument(p)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """The toolbox verbs: lr-find, doctor, search, ensemble (registered in `zoo.cli.PLUGIN_MODULES`)."""
    p = subparsers.add_parser(
        "lr-find",
        help="learning-rate range test: plot of loss vs lr and a suggested rate",
        description="Exponentially increasing learning rate over mini-batches; stops on divergence; the model "
        "is restored afterwards. Suggests the rate at the steepest descent of the smoothed loss.",
    )
    _add_set(p)
    p.add_argument("--start", type=float, default=1e-7, help="first learning rate (default 1e-7)")
    p.add_argument("--end", type=float, default=10.0, help="last learning rate (default 10)")
    p.add_argument("--steps", type=int, default=100, help="mini-batches in the sweep (default 100)")
    p.add_argument("--smooth", type=float, default=0.8, help="loss smoothing factor in [0, 1) (default 0.8)")
    p.add_argument("--diverge", type=float, default=4.0, help="stop when the loss exceeds this x its minimum")
    p.add_argument("--out", type=Path, default=None, help="folder for lr_find.png/.csv/.json")
    p.set_defaults(func=_cmd_lr_find)

    p = subparsers.add_parser(
        "doctor",
        help="sanity checks before training: initial loss, gradient flow, overfit two batches, no NaN",
        description="Runs the babysitting checks on a fresh model; exits 1 when one fails.",
    )
    _add_set(p)
    p.add_argument("--steps", type=int, default=300, help="most steps for overfitting two batches")
    p.add_argument(
        "--lr", type=float, default=None, help="learning rate for the overfit check (default: config)"
    )
    p.add_argument("--tolerance", type=float, default=0.1, help="initial-loss tolerance, a fraction of ln(C)")
    p.set_defaults(func=_cmd_doctor)

    p = subparsers.add_parser(
        "search",
        help="hyper-parameter search (Optuna): grid, random or TPE over config keys, with pruning",
        description="Trials are ranked on validation metrics (the test split is never used). SPEC is "
        "log:LOW:HIGH[:POINTS], float:LOW:HIGH[:POINTS], int:LOW:HIGH[:STEP] or choice:A,B,...; KEY is a "
        f"config key or one of {', '.join(ALIASES)}.",
    )
    _add_set(p)
    p.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="KEY=SPEC",
        required=True,
        help="a searched key (repeatable)",
    )
    p.add_argument(
        "--trials", type=int, default=None, help="number of trials (default: the grid size, or 10)"
    )
    p.add_argument("--sampler", choices=("grid", "random", "tpe"), default="random")
    p.add_argument("--prune", action="store_true", help="median pruning on the metric at each validation")
    p.add_argument("--prune-startup", type=int, default=2, help="complete trials before pruning starts")
    p.add_argument(
        "--scale-lr", action="store_true", help="linear scaling rule: lr x k when the batch is x k"
    )
    p.add_argument("--metric", default=None, help="validation metric to optimise (default acc, or loss)")
    p.add_argument("--direction", choices=("min", "max"), default=None)
    p.add_argument("--baseline", action="store_true", help="trial 0 runs the preset as it is")
    p.add_argument("--seed", type=int, default=0, help="sampler seed")
    p.add_argument("--out", type=Path, default=None, help="folder for search.csv/.json")
    p.set_defaults(func=_cmd_search)

    p = subparsers.add_parser(
        "ensemble",
        help="snapshot ensemble: one run with N cosine cycles; each snapshot vs their averaged prediction",
        description="Trains with cosine annealing restarted N times, keeps the model at each cycle end and "
        "measures the snapshots and their average (softmax for classifiers) on the test split.",
    )
    _add_set(p)
    p.add_argument("--snapshots", type=int, default=3, help="number of cycles and snapshots (default 3)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/ensemble-RECIPE-TIME)")
    p.set_defaults(func=_cmd_ensemble)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the zoo command: zoo lr-find | doctor | search | ensemble")
