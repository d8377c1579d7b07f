"""`Context`: everything a train or eval step sees of the engine (see `recipes.engine`)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from zoo.errors import ConfigError

if TYPE_CHECKING:
    from recipes.engine.trainer import Trainer
    from zoo.metrics import Metric

__all__ = ["Context"]


class Context:
    """What a step sees of the engine (see `recipes.engine`). Created by the `Trainer`."""

    def __init__(self, trainer: Trainer):
        self._t = trainer
        self.config = trainer.config
        self.device = trainer.device
        self.rank, self.world_size = trainer.rank, trainer.world_size
        self.models: dict[str, nn.Module] = {}
        # The split's metric objects during evaluation (`Objective.metrics`); empty while training.
        self.metrics: dict[str, Metric] = {}
        self.generator = torch.Generator(device=self.device)
        self._optimized = False
        self._boundary = True

    # state --------------------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self._t.global_step

    @property
    def epoch(self) -> int:
        return self._t.epoch

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole run (epochs x steps an epoch; ``max_steps`` may stop it sooner)."""
        return self._t.total_steps

    @property
    def progress(self) -> float:
        return min(1.0, self._t.global_step / max(1, self._t.total_steps))

    @property
    def training(self) -> bool:
        return self._t.in_training

    def unwrap(self, name: str) -> nn.Module:
        return self._t.models[name]

    def _begin_step(self, boundary: bool) -> None:
        self._optimized, self._boundary = False, boundary

    # tensors ------------------------------------------------------------------------------------------
    def to_device(self, x: Any) -> Any:
        """`x` on the run's device (4-d tensors channels-last when configured); tuples, lists and dicts
        (a batch of detection targets: a list of dicts of tensors) are moved leaf by leaf, anything
        else is returned as it is."""
        if isinstance(x, torch.Tensor):
            if self._t.channels_last and x.dim() == 4:
                return x.to(self.device, non_blocking=True, memory_format=torch.channels_last)
            return x.to(self.device, non_blocking=True)
        if isinstance(x, Mapping):
            return type(x)((k, self.to_device(v)) for k, v in x.items())
        if isinstance(x, tuple) and hasattr(x, "_fields"):  # a named tuple
            return type(x)(*(self.to_device(v) for v in x))
        if isinstance(x, list | tuple):
            return type(x)(self.to_device(v) for v in x)
        return x

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the forward pass (fp32 everywhere during evaluation)."""
        dtype = self._t.amp_dtype
        if dtype is None or not self._t.in_training:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    # optimisation -------------------------------------------------------------------------------------
    def optimize(self, loss: torch.Tensor, name: str | None = None) -> None:
        """Backward `loss` into optimizer `name`'s parameters; step it at the accumulation boundary.

        Inside `Trainer.backward_only` it only backpropagates (no loss scaling, no step) and records the
        loss; inside `Trainer.hold_schedules` the optimizer steps but its schedule does not.
        """
        t = self._t
        if name is None:
            if len(t.optimizers) != 1:
                raise ConfigError(f"this run has optimizers {sorted(t.optimizers)}: name the one to step")
            name = next(iter(t.optimizers))
        if name not in t.optimizers:
            raise ConfigError(f"unknown optimizer '{name}'; this run has {sorted(t.optimizers)}")
        self._optimized = True
        opt = t.optimizers[name]
        scaled = loss / t.config.accum_steps
        record = t._backward_record
        if record is not None:
            record.append((name, loss.detach()))
        elif t.scaler is not None:
            scaled = t.scaler.scale(scaled)
        if len(t.optimizers) > 1:
            # Only this optimizer's parameters: two optimizers used in turn (a GAN) never pollute each
            # other's gradients.
            scaled.backward(inputs=t.opt_params[name])
        else:
            scaled.backward()
        if not self._boundary or record is not None:
            return
        if t.scaler is not None:
            t.scaler.unscale_(opt)
        if t.config.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(t.opt_params[name], t.config.grad_clip)
            t.step_logs[f"grad_norm/{name}" if len(t.optimizers) > 1 else "grad_norm"] = norm.detach()
        if t.scaler is not None:
            t.scaler.step(opt)
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        if not t.schedules_held:
            t.schedulers[name].step()

    @staticmethod
    @torch.no_grad()
    def ema_update(target: nn.Module, source: nn.Module, decay: float) -> None:
        """target <- decay * target + (1 - decay) * source, parameters and float buffers (BYOL, mean teacher)."""
        tp = [p for p in target.parameters()]
        sp = [p.detach() for p in source.parameters()]
        if tp:
            torch._foreach_lerp_(tp, sp, 1.0 - decay)
        for tb, sb in zip(target.buffers(), source.buffers()):
            if tb.dtype.is_floating_point:
                tb.lerp_(sb, 1.0 - decay)
            else:
                tb.copy_(sb)
