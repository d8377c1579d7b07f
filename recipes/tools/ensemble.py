"""``zoo ensemble RECIPE --snapshots N`` / `snapshot_ensemble`: snapshot ensembles (Huang et al., "Snapshot
Ensembles: Train 1, get M for free", https://arxiv.org/abs/1704.00109).

One run with cosine annealing restarted N times; a snapshot is taken at the end of each cycle (an engine
`Callback` on every optimizer step), and the test metrics of each snapshot and of their averaged
prediction (the mean of the softmax for a classifier, the mean output otherwise) are printed and saved
(``ensemble.json``, ``snapshots/snapshot-K.safetensors``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recipes.tools.common import default_out, make_trainer, table, write_json
from zoo.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from recipes.engine import Callback, Objective, Trainer

__all__ = [
    "EnsembleResult",
    "cycle_ends",
    "ensemble_module",
    "schedule_lrs",
    "snapshot_callback",
    "snapshot_ensemble",
]


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
    last one."""
    from recipes.engine import Callback

    wanted = sorted(set(at_steps))

    class SnapshotKeeper(Callback):
        def on_optimizer_step(self, trainer: Trainer) -> None:
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
        return f"{self.split} split:\n" + table(rows, ["model", "step", "epoch", *keys])


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
    if snapshots < 1:
        raise ConfigError(f"--snapshots {snapshots} must be >= 1")
    schedule = {"schedule.name": "cosine_restarts", "schedule.cycles": snapshots, "early_stop_metric": ""}
    recipe = target if isinstance(target, str) else ""
    run_dir = Path(out) if out is not None else default_out("ensemble", recipe)
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
    write_json(
        run_dir / "ensemble.json",
        {"recipe": result.recipe, "mode": mode, "split": split, "snapshots": store, "ensemble": ensemble},
    )
    return result
