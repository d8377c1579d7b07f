"""``zoo doctor RECIPE`` / `doctor`: the checks to run before a long training run.

The initial loss of a classifier is ln(num_classes) (logits near zero at init); every optimized
parameter receives a gradient (the report names those that do not); loss and gradients stay finite; and
the model can overfit two batches to near-zero loss. Each check reports pass/fail with its numbers; the
verb exits 1 on a failure. The gradients are computed with the engine's ``trainer.backward_only()`` (the
objective's own step, never an optimizer step) and the overfitting runs with ``trainer.hold_schedules()``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from recipes.tools.common import QUIET, make_trainer, optimizer_fields, resolve_target, scalar

if TYPE_CHECKING:
    import torch

    from recipes.engine import Objective, TrainConfig, Trainer

__all__ = ["Check", "DoctorReport", "doctor"]


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
    for name in optimizer_fields(config):
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


def _probe(trainer: Trainer, batches: Sequence[Any]) -> _Probe:
    """Forward and backward the first batches at init through the objective's own step, in the engine's
    backward-only mode (no optimizer step): losses, model outputs, and which optimized parameters got no,
    zero or non-finite gradients (accumulated over the batches)."""
    import torch

    module = trainer.models[trainer.objective.publish_model]
    outputs: list[Any] = []

    def capture(_m: Any, _i: Any, out: Any) -> None:
        first = out[0] if isinstance(out, list | tuple) else out
        if isinstance(first, torch.Tensor):
            outputs.append(first.detach().float())

    params = _optimized_params(trainer)
    trainer.zero_grad()
    handle = module.register_forward_hook(capture)
    try:
        with trainer.backward_only() as backwards:
            for batch in batches:
                trainer.train_batch(batch)
    finally:
        handle.remove()
    losses = [scalar(loss) for _, loss in backwards]
    no_grad, zero_grad, bad_grad = [], [], []
    for name, p in params:
        if p.grad is None:
            no_grad.append(name)
        elif not bool(torch.isfinite(p.grad).all()):
            bad_grad.append(name)
        elif not bool(p.grad.any()):
            zero_grad.append(name)
    trainer.zero_grad()
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
        with trainer.hold_schedules():  # at the rates set above: a one-cycle schedule must not move them
            for i in range(steps):
                logs = trainer.train_batch(batches[i % len(batches)])
                loss = scalar(logs["loss"]) if "loss" in logs else math.nan
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

    cls, config, recipe = resolve_target(target, overrides)
    relax = _regularisers_off(config)
    trainer = make_trainer(target, overrides, extra={**relax, **QUIET})
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
    probe = _probe(trainer, batches)
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
