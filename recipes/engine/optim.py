"""Optimizers and learning-rate schedules from their configs.

SGD / momentum / Nesterov, AdaGrad, RMSProp, Adam and AdamW, with norm scales and biases kept out of
weight decay; linear warmup then step, exponential, cosine, cosine with restarts or one-cycle decay, as one
``torch.optim.lr_scheduler`` stepped per optimizer step.
"""

from __future__ import annotations

from typing import Any

import torch

from recipes.engine.config import OptimizerConfig, ScheduleConfig
from zoo.errors import ConfigError

__all__ = ["build_optimizer", "build_scheduler", "ema_avg_fn"]


def _param_groups(params: Any, cfg: OptimizerConfig) -> list[dict[str, Any]]:
    params = list(params)
    if params and isinstance(params[0], dict):
        return params
    params = [p for p in params if p.requires_grad]
    if cfg.decay_norm_and_bias or cfg.weight_decay == 0:
        return [{"params": params}]
    # 1-d tensors are norm scales/shifts and biases: decaying them only hurts ("Bag of Tricks", 2019).
    decay = [p for p in params if p.ndim > 1]
    rest = [p for p in params if p.ndim <= 1]
    return [{"params": decay}, {"params": rest, "weight_decay": 0.0}]


def build_optimizer(params: Any, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """A torch optimizer from its config (norm and bias parameters excluded from weight decay)."""
    groups = _param_groups(params, cfg)
    wd = cfg.weight_decay
    if cfg.name == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=wd
        )
    if cfg.name == "adagrad":
        return torch.optim.Adagrad(groups, lr=cfg.lr, weight_decay=wd, eps=cfg.eps)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(
            groups, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum, weight_decay=wd
        )
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=wd)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=wd)
    raise ConfigError(f"config key 'optim.name': unknown optimizer {cfg.name!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warmup, then the decay, as one torch scheduler stepped per optimizer step."""
    from torch.optim import lr_scheduler as S

    total_steps = max(1, total_steps)
    if cfg.name == "onecycle":
        if total_steps < 3:
            # torch's OneCycleLR divides by each phase's length in steps: a run of one or two steps has no
            # room for a warmup and a decay, and keeps its learning rate.
            return S.LambdaLR(optimizer, lambda _: 1.0)
        max_lr = [g["lr"] for g in optimizer.param_groups]
        return S.OneCycleLR(
            optimizer,
            max_lr=max_lr,
            total_steps=total_steps,
            # Each phase at least one step long (else torch divides by zero): warmup ends at step >= 1 and
            # before the last step.
            pct_start=min(max(cfg.warmup, 2.0 / total_steps), (total_steps - 1) / total_steps),
            anneal_strategy="cos",
            div_factor=cfg.div_factor,
            final_div_factor=cfg.final_div,
            cycle_momentum=False,
        )
    warmup = min(round(cfg.warmup * total_steps), total_steps - 1)
    rest = total_steps - warmup
    if cfg.name == "constant":
        decay = S.ConstantLR(optimizer, factor=1.0, total_iters=0)
    elif cfg.name == "step":
        decay = S.StepLR(
            optimizer, step_size=max(1, round(cfg.step_epochs * steps_per_epoch)), gamma=cfg.gamma
        )
    elif cfg.name == "exponential":
        decay = S.ExponentialLR(optimizer, gamma=cfg.gamma ** (1.0 / max(1, steps_per_epoch)))
    elif cfg.name == "cosine":
        base = optimizer.param_groups[0]["lr"]
        decay = S.CosineAnnealingLR(optimizer, T_max=rest, eta_min=base * cfg.min_lr)
    elif cfg.name == "cosine_restarts":
        base = optimizer.param_groups[0]["lr"]
        decay = S.CosineAnnealingWarmRestarts(
            optimizer, T_0=max(1, rest // cfg.cycles), eta_min=base * cfg.min_lr
        )
    else:
        raise ConfigError(f"config key 'schedule.name': unknown schedule {cfg.name!r}")
    if warmup == 0:
        return decay
    ramp = S.LinearLR(optimizer, start_factor=cfg.warmup_start, end_factor=1.0, total_iters=warmup)
    return S.SequentialLR(optimizer, [ramp, decay], milestones=[warmup])


def ema_avg_fn(decay: float):
    """The multi-tensor EMA update of ``torch.optim.swa_utils.AveragedModel`` for the weights' EMA."""
    from torch.optim.swa_utils import get_ema_multi_avg_fn

    return get_ema_multi_avg_fn(decay)
