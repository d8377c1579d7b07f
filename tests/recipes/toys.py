"""Tiny objectives defined only for the tests: they prove the engine's interface on losses and set-ups
that are not a classifier's (two optimizers used in turn, an EMA target network)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from recipes.engine import Data, Objective, OptimizerConfig, ScheduleConfig, TrainConfig


class Points(torch.utils.data.Dataset):
    """n fixed random points (x, y) with y = x @ w: in memory, batched by indexing."""

    def __init__(self, n: int = 64, dim: int = 4, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        self.y = self.x @ torch.arange(1.0, dim + 1) + 0.5

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def get_batch(self, idx: torch.Tensor):
        return self.x[idx], self.y[idx]


@dataclass
class ToyConfig(TrainConfig):
    dim: int = 4


def toy_config(**changes: Any) -> ToyConfig:
    base = dict(
        epochs=1,
        batch_size=16,
        progress=False,
        tensorboard=False,
        precision="fp32",
        # The tests recompute what the engine did with CPU tensors; CUDA has its own test (test_cuda.py).
        device="cpu",
        optim=OptimizerConfig(name="sgd", lr=0.05, momentum=0.0),
        schedule=ScheduleConfig(name="constant"),
    )
    base.update(changes)
    return ToyConfig(**base)


class _Base(Objective):
    Config = ToyConfig

    def data(self) -> Data:
        return Data(
            Points(64, self.config.dim),
            Points(32, self.config.dim, seed=1),
            Points(32, self.config.dim, seed=2),
        )

    def eval_step(self, ctx, batch):
        x, y = (ctx.to_device(t) for t in batch)
        pred = ctx.models["model"](x).squeeze(1)
        return {"mse": (F.mse_loss(pred, y, reduction="sum"), len(y))}


class RegressionObjective(_Base):
    """One optimizer, the automatic path: return {"loss"}."""

    name = "toy_regression"

    def build(self, data):
        return {"model": nn.Linear(self.config.dim, 1)}

    def train_step(self, ctx, batch):
        x, y = batch
        with ctx.autocast():
            pred = ctx.models["model"](ctx.to_device(x)).squeeze(1)
        return {"loss": F.mse_loss(pred.float(), ctx.to_device(y))}


class TwoPlayerObjective(_Base):
    """A GAN-shaped step: a critic `d` and a generator `model` stepped in turn with their own optimizers.

    The critic's loss reads the generator's output without detaching it, and the generator's loss reads
    the critic: each backward must still reach only its own optimizer's parameters.
    """

    name = "toy_two_player"
    record: list[dict[str, Any]]

    def build(self, data):
        self.record = []
        return {"model": nn.Linear(self.config.dim, 1), "d": nn.Linear(1, 1)}

    def optimizers(self, models):
        return {
            "d": (models["d"].parameters(), OptimizerConfig(name="sgd", lr=0.1, momentum=0.0)),
            "g": (models["model"].parameters(), OptimizerConfig(name="adam", lr=0.01)),
        }

    def schedules(self):
        return {"d": ScheduleConfig(name="constant"), "g": ScheduleConfig(name="cosine")}

    def losses(self, g: nn.Module, d: nn.Module, x: torch.Tensor, y: torch.Tensor):
        fake = g(x)
        d_loss = F.softplus(-d(y[:, None])).mean() + F.softplus(d(fake)).mean()
        return d_loss, fake

    def train_step(self, ctx, batch):
        x, y = batch
        g, d = ctx.models["model"], ctx.models["d"]
        snapshot = {k: [p.detach().clone() for p in m.parameters()] for k, m in (("g", g), ("d", d))}
        d_loss, _ = self.losses(g, d, x, y)
        ctx.optimize(d_loss, "d")
        after_d = {k: [p.detach().clone() for p in m.parameters()] for k, m in (("g", g), ("d", d))}
        g_loss = F.softplus(-d(g(x))).mean() + 0.1 * F.mse_loss(g(x).squeeze(1), y)
        ctx.optimize(g_loss, "g")
        self.record.append({"before": snapshot, "after_d": after_d, "batch": (x.clone(), y.clone())})
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}


class MeanTeacherObjective(_Base):
    """A student trained by SGD and a teacher that only follows it by EMA (BYOL / mean teacher)."""

    name = "toy_mean_teacher"
    decay = 0.9
    record: list[dict[str, Any]]

    def build(self, data):
        self.record = []
        student = nn.Linear(self.config.dim, 1)
        teacher = nn.Linear(self.config.dim, 1)
        teacher.load_state_dict(student.state_dict())
        teacher.requires_grad_(False)
        return {"model": student, "teacher": teacher}

    def train_step(self, ctx, batch):
        x, y = batch
        student, teacher = ctx.models["model"], ctx.unwrap("teacher")
        with torch.no_grad():
            target = teacher(x).squeeze(1)
        pred = student(x).squeeze(1)
        loss = F.mse_loss(pred, y) + 0.5 * F.mse_loss(pred, target)
        ctx.optimize(loss)
        before = [p.detach().clone() for p in teacher.parameters()]
        ctx.ema_update(teacher, ctx.unwrap("model"), self.decay)
        self.record.append(
            {
                "teacher_before": before,
                "student_after": [p.detach().clone() for p in ctx.unwrap("model").parameters()],
                "teacher_after": [p.detach().clone() for p in teacher.parameters()],
            }
        )
        return {"loss": loss.detach()}


class ConstantMetricObjective(RegressionObjective):
    """Validation never improves (the metric is a constant): early stopping must end the run."""

    name = "toy_constant"

    def eval_step(self, ctx, batch):
        return {"const": (torch.tensor(float(len(batch[0]))), len(batch[0]))}
