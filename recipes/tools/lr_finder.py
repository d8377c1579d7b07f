"""The learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural Networks",
https://arxiv.org/abs/1506.01186, section 3.3): ``zoo lr-find RECIPE`` / `lr_find`.

The rate grows exponentially from ``--start`` to ``--end`` over ``--steps`` mini-batches; the loss is
smoothed; the sweep stops when the smoothed loss exceeds ``--diverge`` times its minimum (or is not
finite). It runs inside ``trainer.preserved()`` with the schedules held, so models, optimizers,
schedulers, the gradient scaler, the EMA and every RNG are put back afterwards and it can run on a live
`Trainer`. It writes a PNG and suggests a rate (see `suggest_lr` for the rule and why).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recipes.tools.common import QUIET, endless_batches, make_trainer, scalar, set_lr, write_csv, write_json
from zoo.errors import ConfigError

if TYPE_CHECKING:
    from recipes.engine import Objective, Trainer

__all__ = ["LRFindResult", "lr_find", "smooth_losses", "suggest_lr"]


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


def _plot(result: LRFindResult, path: Path, title: str) -> Path:
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
    trainer = target if isinstance(target, Trainer) else make_trainer(target, overrides, extra=QUIET)
    trainer.setup()
    accum = trainer.config.accum_steps
    ratio = (end / start) ** (1 / (steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    diverged, ema, best = False, 0.0, math.inf
    with trainer.preserved(), trainer.hold_schedules():
        batches = endless_batches(trainer)
        for i in range(steps):
            lr = start * ratio**i
            set_lr(trainer, lr)
            total = 0.0
            for micro in range(accum):
                logs = trainer.train_batch(next(batches), boundary=micro == accum - 1)
                if loss_key not in logs:
                    raise ConfigError(
                        f"lr-find reads the step's '{loss_key}'; this objective logs {', '.join(sorted(logs))}"
                    )
                total += scalar(logs[loss_key]) / accum
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
        result.plot = _plot(result, out / "lr_find.png", trainer.recipe)
        rows = [{"lr": a, "loss": b, "smoothed": c} for a, b, c in zip(lrs, losses, smoothed_all)]
        write_csv(out / "lr_find.csv", rows, ["lr", "loss", "smoothed"])
        data = dataclasses.asdict(result)
        data.update(
            plot=str(result.plot), recipe=trainer.recipe, start=start, end=end, steps=steps, beta=beta
        )
        write_json(out / "lr_find.json", data)
    return result
