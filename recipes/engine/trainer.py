"""The `Trainer` (set-up, the loop, evaluation, checkpoints, the hooks tools use) and `train`, ``zoo
train``'s entry point. See `recipes.engine` for what it does."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from recipes.config import config_from_dict, config_to_dict
from recipes.engine.checkpoint import (
    CHECKPOINT_VERSION,
    read_checkpoint,
    rng_state,
    set_rng_state,
    write_checkpoint,
)
from recipes.engine.context import Context
from recipes.engine.distributed import all_reduce_sum, broadcast_keys, dist_env
from recipes.engine.logging import RunLogger, cpu_has_bf16, git_commit, machine_info
from recipes.engine.objective import Callback, Objective
from recipes.engine.optim import build_optimizer, build_scheduler, ema_avg_fn
from recipes.engine.presets import get_preset, resolve_config
from recipes.engine.results import RunResult, finish_run, training_record
from zoo.errors import ConfigError

__all__ = ["SPLITS", "RunResult", "Trainer", "default_run_dir", "train"]

SPLITS = ("train", "val", "test")


class Trainer:
    """Runs one objective with one config: ``Trainer(objective, run_dir=...).fit()``.

    `splits` names the splits the run uses: ``("train", "val")`` drops the objective's test split (a
    hyper-parameter search must never see it), so it is neither evaluated nor reported.
    """

    def __init__(
        self,
        objective: Objective,
        run_dir: str | os.PathLike | None = None,
        recipe: str = "",
        callbacks: Iterable[Callback] = (),
        resume: bool = False,
        publish: bool = True,
        splits: Iterable[str] = SPLITS,
    ):
        self.objective = objective
        self.config = objective.config
        self.config.validate()
        self.recipe = recipe
        self.callbacks = list(callbacks)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.resume = resume
        self.publish_weights = publish
        self.splits = tuple(splits)
        unknown = [s for s in self.splits if s not in SPLITS]
        if unknown or "train" not in self.splits:
            raise ConfigError(f"splits {self.splits}: name 'train' and any of 'val', 'test'")
        self.should_stop = False
        self.global_step = 0
        self.epoch = 0
        self.in_training = False
        self.step_logs: dict[str, torch.Tensor] = {}
        self._is_setup = False
        self._mode = ""
        self._held = 0  # hold_schedules() depth
        self._backward_record: list[tuple[str, torch.Tensor]] | None = None  # inside backward_only()
        self._metrics: dict[str, dict[str, Any]] = {}  # split -> the objective's Metric objects

    # set-up -------------------------------------------------------------------------------------------
    def setup(self) -> Trainer:
        """Distributed init, data, seeded models, optimizers, schedulers, EMA and (with resume) state."""
        if self._is_setup:
            return self
        cfg = self.config
        self.rank, self.world_size, self.local_rank = dist_env()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        # The code and the machine as the run starts (a weight's provenance): commits made while a long run
        # trains, or other jobs started meanwhile, must not be recorded as its own.
        self.start_record = {"commit": git_commit(), "machine": machine_info()}
        if cfg.device == "auto":
            self.device = torch.device(f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(cfg.device)
            if self.device.type == "cuda" and self.device.index is None:
                # A bare "cuda" names this process's GPU; torch.cuda.set_device refuses an index-less device.
                self.device = torch.device(f"cuda:{self.local_rank}")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.world_size > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend)
        if cfg.batch_size % self.world_size:
            raise ConfigError(
                f"config key 'batch_size': {cfg.batch_size} is not divisible by the {self.world_size} processes"
            )
        self.amp_dtype = self._resolve_precision()
        self.channels_last = cfg.channels_last
        self.is_main = self.rank == 0

        data = self.objective.data()
        self.data = dataclasses.replace(data, **{s: None for s in ("val", "test") if s not in self.splits})
        n_train = len(self.data.train)
        per_epoch = n_train // cfg.batch_size if cfg.drop_last else math.ceil(n_train / cfg.batch_size)
        self.micro_per_epoch = (per_epoch // cfg.accum_steps) * cfg.accum_steps
        if self.micro_per_epoch == 0:
            raise ConfigError(
                f"config key 'batch_size': {cfg.batch_size} x accum_steps {cfg.accum_steps} is larger than "
                f"the {n_train} training samples"
            )
        self.steps_per_epoch = self.micro_per_epoch // cfg.accum_steps
        self.total_steps = self.steps_per_epoch * cfg.epochs

        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        self.models = {k: m.to(self.device) for k, m in self.objective.build(self.data).items()}
        if self.world_size > 1:  # same initial weights everywhere, but each rank its own dropout masks
            torch.manual_seed(cfg.seed + 7919 * self.rank)
        if self.channels_last:
            for m in self.models.values():
                m.to(memory_format=torch.channels_last)
        specs = self.objective.optimizers(self.models)
        schedules = self.objective.schedules()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.opt_params: dict[str, list[torch.Tensor]] = {}
        self.schedulers: dict[str, Any] = {}
        for name, (params, ocfg) in specs.items():
            opt = build_optimizer(params, ocfg)
            self.optimizers[name] = opt
            self.opt_params[name] = [p for g in opt.param_groups for p in g["params"]]
            scfg = schedules.get(name, cfg.schedule)
            self.schedulers[name] = build_scheduler(opt, scfg, self.total_steps, self.steps_per_epoch)
        self.scaler = None
        if self.amp_dtype == torch.float16:
            self.scaler = torch.amp.GradScaler(self.device.type)
        self.ema = None
        if cfg.ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel

            self.ema = AveragedModel(
                self.models[self.objective.publish_model],
                multi_avg_fn=ema_avg_fn(cfg.ema_decay),
                use_buffers=True,
            )
        self.ctx = Context(self)
        self.ctx.generator.manual_seed(cfg.seed * 1000 + 17 + self.rank)
        self._wrap_ddp()
        self.early = {"best": None, "bad": 0, "best_step": -1}
        self.train_time_s = 0.0
        self.batch_in_epoch = 0
        self.stopped_early = False
        if self.resume:
            self._load_checkpoint()
        self._is_setup = True
        return self

    def _resolve_precision(self) -> torch.dtype | None:
        p = self.config.precision
        cuda = self.device.type == "cuda"
        if p == "auto":
            if cuda:
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.bfloat16 if cpu_has_bf16() else None
        if p == "fp16" and not cuda:
            raise ConfigError("config key 'precision': 'fp16' needs CUDA; on CPU use 'bf16' or 'fp32'")
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[p]

    @property
    def precision_name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    def _wrap_ddp(self) -> None:
        self.ddp_modules: list[nn.Module] = []
        trainable = {id(p) for ps in self.opt_params.values() for p in ps}
        for name, module in self.models.items():
            wrapped = module
            if self.world_size > 1 and any(id(p) in trainable for p in module.parameters()):
                from torch.nn.parallel import DistributedDataParallel as DDP

                ids = [self.device.index] if self.device.type == "cuda" else None
                wrapped = DDP(module, device_ids=ids)
                self.ddp_modules.append(wrapped)
            self.ctx.models[name] = wrapped

    # data ---------------------------------------------------------------------------------------------
    def _epoch_indices(self, epoch: int) -> list[torch.Tensor]:
        """This rank's index batches of `epoch`: one seeded permutation, cut into global batches, sharded."""
        cfg = self.config
        n = len(self.data.train)
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)
        out = []
        for i in range(self.micro_per_epoch):
            chunk = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            if len(chunk) % self.world_size:  # ragged last batch: pad from the start so ranks stay equal
                pad = self.world_size - len(chunk) % self.world_size
                chunk = torch.cat([chunk, perm[:pad]])
            out.append(chunk[self.rank :: self.world_size])
        return out

    def batches(self, epoch: int, start: int = 0) -> Iterator[Any]:
        """Training batches of `epoch` from batch `start` on (resume skips the ones already trained)."""
        indices = self._epoch_indices(epoch)[start:]
        yield from self._load(self.data.train, indices)

    def _load(self, dataset: Any, indices: list[torch.Tensor]) -> Iterator[Any]:
        if hasattr(dataset, "get_batch"):
            for idx in indices:
                yield dataset.get_batch(idx)
            return
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=[idx.tolist() for idx in indices],
            num_workers=self.config.num_workers,
            collate_fn=self.data.collate,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        yield from loader

    def _eval_indices(self, n: int, batch_size: int) -> list[torch.Tensor]:
        # Every sample exactly once over all ranks (no padding), so reduced metrics are exact.
        mine = torch.arange(self.rank, n, self.world_size)
        return list(mine.split(batch_size)) if len(mine) else []

    # one micro-step -----------------------------------------------------------------------------------
    def train_batch(self, batch: Any, boundary: bool = True) -> dict[str, torch.Tensor]:
        """One micro-batch through the objective's step (backward, and the optimizer step at a boundary)."""
        self.in_training = True
        if self._mode != "train":  # set once, not every step: evaluation switches it back
            for name, m in self.models.items():
                m.train(name not in self.objective.frozen_modules)
            self._mode = "train"
        ctx = self.ctx
        ctx._begin_step(boundary)
        with contextlib.ExitStack() as stack:
            if not boundary:
                for m in self.ddp_modules:
                    stack.enter_context(m.no_sync())
            logs = self.objective.train_step(ctx, batch)
            if not ctx._optimized:
                if "loss" not in logs:
                    raise ConfigError(
                        f"{type(self.objective).__name__}.train_step returned no 'loss' and did not call "
                        "ctx.optimize"
                    )
                ctx.optimize(logs["loss"])
        if boundary and self.scaler is not None and self._backward_record is None:
            self.scaler.update()
        return logs

    def zero_grad(self) -> None:
        """Drop every optimized parameter's gradient."""
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)

    # hooks for tools ----------------------------------------------------------------------------------
    @property
    def schedules_held(self) -> bool:
        """True inside `hold_schedules`: optimizer steps leave the learning rates alone."""
        return self._held > 0

    @contextlib.contextmanager
    def hold_schedules(self) -> Iterator[None]:
        """Inside, optimizer steps do not step the schedulers: the learning rates stay where they are (or
        where a tool sets them in ``optimizers[name].param_groups``), and a one-cycle schedule is never
        stepped past its end. The schedulers' state is untouched."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1

    @contextlib.contextmanager
    def backward_only(self) -> Iterator[list[tuple[str, torch.Tensor]]]:
        """Inside, ``ctx.optimize`` (and the automatic ``{"loss"}`` path) backpropagates into its
        optimizer's parameters and stops there: no loss scaling, no clipping, no optimizer or scheduler
        step, and gradients accumulate over steps (call `zero_grad` first). Yields the list of
        ``(optimizer name, detached loss)`` of every backward, in order."""
        if self._backward_record is not None:
            raise RuntimeError("backward_only() is already active")
        record: list[tuple[str, torch.Tensor]] = []
        self._backward_record = record
        try:
            yield record
        finally:
            self._backward_record = None

    def _local_state(self) -> dict[str, Any]:
        # Live references (state_dict() shares storage): `snapshot` copies, a checkpoint is serialised.
        return {
            "models": {k: m.state_dict() for k, m in self.models.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "progress": {
                "global_step": self.global_step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "train_time_s": self.train_time_s,
            },
            "early_stop": dict(self.early),
        }

    def _load_local_state(self, state: dict[str, Any], rng: dict[str, Any] | None) -> None:
        for k, m in self.models.items():
            m.load_state_dict(state["models"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if rng is not None:
            set_rng_state(rng, self.ctx.generator, self.device)
        progress = state["progress"]
        self.global_step = progress["global_step"]
        self.epoch = progress["epoch"]
        self.batch_in_epoch = progress["batch_in_epoch"]
        self.train_time_s = progress["train_time_s"]
        self.early = dict(state["early_stop"])

    def snapshot(self) -> dict[str, Any]:
        """A copy, in memory, of everything a checkpoint holds for this process: models, optimizers,
        schedulers, gradient scaler, EMA, every RNG, the position in the run and the early-stopping
        record. Not a collective: each rank snapshots itself. `restore` puts it back."""
        state = copy.deepcopy(self._local_state())
        state["rng"] = rng_state(self.ctx.generator, self.device)
        state["in_training"] = self.in_training
        return state

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Put back a `snapshot` exactly (it stays usable: it can be restored again); gradients are
        dropped."""
        state = copy.deepcopy(snapshot)  # optimizers adopt the tensors they load: keep the snapshot intact
        self._load_local_state(state, state["rng"])
        self.in_training = state["in_training"]
        self.zero_grad()

    @contextlib.contextmanager
    def preserved(self) -> Iterator[None]:
        """Run a probe (a few training steps at chosen rates, an evaluation) and leave the trainer as it was:
        a `snapshot` on entry is restored on exit, exceptions included."""
        self.setup()
        saved = self.snapshot()
        try:
            yield
        finally:
            self.restore(saved)

    # evaluation ---------------------------------------------------------------------------------------
    def eval_models(self) -> dict[str, nn.Module]:
        models = dict(self.models)
        if self.ema is not None:
            models[self.objective.publish_model] = self.ema.module
        return models

    def split_metrics(self, split: str) -> dict[str, Any]:
        """The objective's `zoo.metrics.Metric` objects for `split` (built once, on the run's device)."""
        if split not in self._metrics:
            self._metrics[split] = {k: m.to(self.device) for k, m in self.objective.metrics(split).items()}
        return self._metrics[split]

    @torch.no_grad()
    def evaluate(self, split: str = "val", models: dict[str, nn.Module] | None = None) -> dict[str, float]:
        """Metrics of `split` ("val" or "test") over the whole split and every rank, sorted by name: the
        objective's metric objects, and a `zoo.metrics.Mean` per ``(sum, count)`` name its eval_step
        returns."""
        from zoo.metrics import Mean

        dataset = getattr(self.data, split)
        if dataset is None:
            return {}
        models = models or self.eval_models()
        was_training = self.in_training
        self.in_training = False
        saved = self.ctx.models
        self.ctx.models = dict(models)
        for m in models.values():
            m.eval()
        self._mode = "eval"
        metrics = self.split_metrics(split)
        for metric in metrics.values():
            metric.reset()
        self.ctx.metrics = metrics
        means: dict[str, Any] = {}
        try:
            batch_size = max(256, self.config.batch_size // self.world_size)
            n = len(dataset) if not self.config.eval_limit else min(len(dataset), self.config.eval_limit)
            for batch in self._load(dataset, self._eval_indices(n, batch_size)):
                for key, (total, count) in (self.objective.eval_step(self.ctx, batch) or {}).items():
                    if key not in means:
                        means[key] = Mean(key).to(self.device)
                    means[key].update(total, count)
            # Computing is collective: every rank computes the same metrics in the same order, even one
            # whose shard was empty (and so never saw a key).
            keys = sorted(means)
            if self.world_size > 1:
                keys = broadcast_keys(keys)
            results: dict[str, float] = {}
            for key in keys:
                results.update((means.get(key) or Mean(key).to(self.device)).compute())
            for name, metric in metrics.items():
                values = metric.compute()
                clash = sorted(results.keys() & values.keys())
                if clash:
                    raise ConfigError(
                        f"{type(self.objective).__name__}: metric '{name}' reports {', '.join(clash)}, "
                        "which another metric (or eval_step's return) reports too"
                    )
                results.update(values)
        finally:
            self.ctx.models = saved
            self.ctx.metrics = {}
            self.in_training = was_training
        return dict(sorted(results.items()))

    # checkpoints --------------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / "checkpoints"

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly (plain tensors and containers only); under
        DDP a collective (every rank's RNG state is gathered)."""
        rng = rng_state(self.ctx.generator, self.device)
        if self.world_size > 1:
            rngs: list[Any] = [None] * self.world_size
            torch.distributed.all_gather_object(rngs, rng)
        else:
            rngs = [rng]
        local = self._local_state()
        return {
            "version": CHECKPOINT_VERSION,
            "recipe": self.recipe,
            "config": config_to_dict(self.config),
            "world_size": self.world_size,
            **{k: local[k] for k in ("models", "optimizers", "schedulers", "scaler", "ema")},
            "rng": rngs,
            "progress": local["progress"],
            "early_stop": local["early_stop"],
        }

    def save_checkpoint(self, name: str = "last.pt") -> Path | None:
        state = self.state_dict()  # collective under DDP: every rank takes part
        if not self.is_main or self.checkpoint_dir is None:
            return None
        return write_checkpoint(state, self.checkpoint_dir / name)

    def _load_checkpoint(self) -> None:
        path = self.checkpoint_dir / "last.pt" if self.checkpoint_dir else None
        state = read_checkpoint(path, self.device, config_to_dict(self.config))
        same_world = state["world_size"] == self.world_size
        self._load_local_state(state, state["rng"][self.rank] if same_world else None)
        if not same_world:  # a different number of processes cannot replay the same random streams
            print(
                f"warning: checkpoint written by {state['world_size']} processes, resumed by "
                f"{self.world_size}: random streams restart (the run is no longer bit-exact)",
                file=sys.stderr,
            )

    # the loop -----------------------------------------------------------------------------------------
    def fit(self) -> RunResult:
        self.setup()
        cfg = self.config
        if self.is_main and self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._write_run_config()
        self.logger = RunLogger(
            self.run_dir if self.is_main else None,
            cfg.tensorboard,
            self.global_step if self.resume else None,
        )
        if cfg.early_stop_metric and self.data.val is None:
            raise ConfigError("config key 'early_stop_metric': early stopping needs a validation split")
        try:
            val_metrics = self._loop()
            if cfg.early_stop_metric and cfg.restore_best and self.early["best_step"] >= 0:
                self._restore_best()
            # The published module (e.g. with a logit scale folded into its head) is what is measured.
            module = self.eval_models()[self.objective.publish_model]
            if self.run_dir is not None and self.is_main:
                self.objective.pictures_dir = self.run_dir / "pictures"
            published, meta = self.objective.publish(module, self.data)
            test_metrics = {}
            if self.data.test is not None:
                models = {**self.eval_models(), self.objective.publish_model: published}
                test_metrics = self.evaluate("test", models=models)
                self.logger.log(self.global_step, self.epoch, "test", test_metrics)
            result = self._finish(test_metrics, val_metrics, published, meta)
            if self.world_size > 1:
                # Every rank waits for the main one (which writes the weight folder alone) before the group
                # goes: a rank that tore its group down and exited while another still held its own aborted
                # in gloo's teardown ("terminate called without an active exception") on ~40% of CPU runs.
                # Not in `finally`: after an error in one rank the others would wait here forever.
                torch.distributed.barrier()
            return result
        finally:
            self.logger.close()
            if self.world_size > 1 and torch.distributed.is_initialized():
                # The DDP wrappers' reducers hold the group: dropped first, so that the group's threads are
                # joined here rather than by whatever order the interpreter frees objects in at exit.
                for name, wrapped in list(self.ctx.models.items()):
                    if wrapped in self.ddp_modules:
                        self.ctx.models[name] = wrapped.module
                self.ddp_modules.clear()
                gc.collect()
                torch.distributed.destroy_process_group()

    def _loop(self) -> dict[str, float]:
        cfg = self.config
        val_metrics: dict[str, float] = {}
        window: dict[str, list[torch.Tensor]] = {}
        window_samples, window_start = 0, time.perf_counter()
        bar = None
        if cfg.max_steps and self.global_step >= cfg.max_steps:
            self.should_stop = True
        while self.epoch < cfg.epochs and not self.should_stop:
            start = self.batch_in_epoch
            if self.is_main and cfg.progress:
                from tqdm.auto import tqdm

                bar = tqdm(
                    total=self.steps_per_epoch,
                    initial=start // cfg.accum_steps,
                    desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                    leave=False,
                    dynamic_ncols=True,
                    file=sys.stderr,
                )
            t0 = time.perf_counter()
            for i, batch in enumerate(self.batches(self.epoch, start), start):
                boundary = (i + 1) % cfg.accum_steps == 0
                self.step_logs = {}
                logs = self.train_batch(batch, boundary)
                window_samples += self.objective.batch_size_of(batch) * self.world_size
                for k, v in {**logs, **self.step_logs}.items():
                    window.setdefault(k, []).append(v.detach().float() if isinstance(v, torch.Tensor) else v)
                if not boundary:
                    continue
                self.global_step += 1
                self.batch_in_epoch = i + 1
                if self.ema is not None:
                    self.ema.update_parameters(self.models[self.objective.publish_model])
                for cb in self.callbacks:
                    cb.on_optimizer_step(self)
                if bar is not None:
                    bar.update(1)
                last_of_epoch = self.batch_in_epoch == self.micro_per_epoch
                hit_max = cfg.max_steps and self.global_step >= cfg.max_steps
                if self.global_step % cfg.log_every == 0 or last_of_epoch or hit_max:
                    now = time.perf_counter()
                    logs_f = self._reduce_window(window)
                    logs_f["samples_per_s"] = window_samples / max(now - window_start, 1e-9)
                    logs_f["lr"] = next(iter(self.optimizers.values())).param_groups[0]["lr"]
                    window, window_samples, window_start = {}, 0, now
                    self.logger.log(self.global_step, self.epoch, "train", logs_f)
                    if bar is not None:
                        bar.set_postfix(
                            {k: f"{v:.4g}" for k, v in logs_f.items() if k != "lr"}, refresh=False
                        )
                    for cb in self.callbacks:
                        cb.on_step_end(self, logs_f)
                if cfg.eval_every and self.global_step % cfg.eval_every == 0 and not last_of_epoch:
                    self.train_time_s += time.perf_counter() - t0
                    val_metrics = self._validate() or val_metrics
                    t0 = time.perf_counter()
                if hit_max:
                    self.should_stop = True
                if (
                    cfg.checkpoint_every
                    and self.global_step % cfg.checkpoint_every == 0
                    and not last_of_epoch
                ):
                    now = time.perf_counter()
                    self.train_time_s, t0 = self.train_time_s + now - t0, now
                    self.save_checkpoint()  # its writing counts as training time, like the logging
                if self.should_stop:
                    break
            self.train_time_s += time.perf_counter() - t0
            if bar is not None:
                bar.close()
            epoch_done = self.batch_in_epoch == self.micro_per_epoch
            if epoch_done:
                self.epoch += 1
                self.batch_in_epoch = 0
                val_metrics = self._validate() or val_metrics
                for cb in self.callbacks:
                    cb.on_epoch_end(self, self.epoch)
            t0 = time.perf_counter()
            self.save_checkpoint()
            self.train_time_s += time.perf_counter() - t0
            window_start = time.perf_counter()
        return val_metrics

    def _reduce_window(self, window: dict[str, list[Any]]) -> dict[str, float]:
        keys = sorted(window)
        if not keys:
            return {}
        means = torch.stack(
            [
                torch.stack([torch.as_tensor(v, dtype=torch.float32).cpu() for v in window[k]]).mean()
                for k in keys
            ]
        )
        if self.world_size > 1:
            means = all_reduce_sum(means.to(torch.float64)) / self.world_size
        return dict(zip(keys, means.tolist()))

    def _validate(self) -> dict[str, float]:
        if self.data.val is None:
            return {}
        metrics = self.evaluate("val")
        self.logger.log(self.global_step, self.epoch, "val", metrics)
        for cb in self.callbacks:
            cb.on_eval(self, "val", metrics)
        cfg = self.config
        if cfg.early_stop_metric:
            if cfg.early_stop_metric not in metrics:
                raise ConfigError(
                    f"config key 'early_stop_metric': {cfg.early_stop_metric!r} is not a validation metric; "
                    f"this objective reports {', '.join(sorted(metrics))}"
                )
            value, best = metrics[cfg.early_stop_metric], self.early["best"]
            better = best is None or (value > best if cfg.early_stop_mode == "max" else value < best)
            if better:
                self.early.update(best=value, bad=0, best_step=self.global_step)
                if cfg.restore_best:
                    self._save_best()
            else:
                self.early["bad"] += 1
                if self.early["bad"] >= cfg.patience:
                    self.should_stop = True
                    self.stopped_early = True
        return metrics

    def _save_best(self) -> None:
        state = {k: m.state_dict() for k, m in self.eval_models().items()}
        if self.run_dir is None:
            self._best_in_memory = {k: {n: t.clone() for n, t in sd.items()} for k, sd in state.items()}
            return
        if self.is_main:
            write_checkpoint({"step": self.global_step, "models": state}, self.checkpoint_dir / "best.pt")

    def _restore_best(self) -> None:
        if self.run_dir is None:
            state = self._best_in_memory
        else:
            if self.world_size > 1:
                torch.distributed.barrier()
            path = self.checkpoint_dir / "best.pt"
            state = torch.load(path, map_location=self.device, weights_only=True)["models"]
        for k, m in self.eval_models().items():
            m.load_state_dict(state[k])

    # results ------------------------------------------------------------------------------------------
    def _write_run_config(self) -> None:
        from zoo.weights import write_json

        write_json(
            self.run_dir / "config.json",
            {"recipe": self.recipe, "objective": self.objective.name, "config": config_to_dict(self.config)},
        )

    def training_record(self) -> dict[str, Any]:
        """How the weights were made (Weights.training): seed, commit, time, machine, precision, steps."""
        return training_record(self)

    def _finish(
        self,
        test_metrics: dict[str, float],
        val_metrics: dict[str, float],
        published: nn.Module,
        meta: dict[str, Any],
    ) -> RunResult:
        return finish_run(self, test_metrics, val_metrics, published, meta)


# ------------------------------------------------------------------------------------------ entry point
def default_run_dir(recipe: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{recipe}-{stamp}"


def train(
    recipe: str,
    overrides: list[str] | dict[str, Any] = (),
    out: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    callbacks: Iterable[Callback] = (),
) -> RunResult:
    """``zoo train``: run preset `recipe` (or resume the run folder `resume`), returning its result."""
    if resume is not None:
        run_dir = Path(resume)
        saved_path = run_dir / "config.json"
        if not saved_path.is_file():
            raise ConfigError(f"cannot resume {run_dir}: it holds no config.json (is it a run folder?)")
        if overrides:
            raise ConfigError("--set cannot change a resumed run: its config is fixed in config.json")
        saved = json.loads(saved_path.read_text())
        preset = get_preset(saved["recipe"])
        config = config_from_dict(preset.objective.Config, saved["config"])
        config.validate()
        recipe = saved["recipe"]
    else:
        preset, config = resolve_config(recipe, overrides)
        if out is None and dist_env()[1] > 1:
            raise ConfigError(
                "under torchrun, name the run folder with --out (every process must agree on it)"
            )
        run_dir = Path(out) if out is not None else default_run_dir(recipe)
    objective = preset.objective(config)
    trainer = Trainer(objective, run_dir, recipe=recipe, callbacks=callbacks, resume=resume is not None)
    return trainer.fit()
