"""The engine's interface on toy objectives: two optimizers in turn, an EMA target, the automatic path,
accumulation, schedules, optimizers, early stopping and EMA of the weights."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from recipes.engine import OptimizerConfig, ScheduleConfig, Trainer, build_optimizer, build_scheduler
from tests.recipes.toys import (
    ConstantMetricObjective,
    MeanTeacherObjective,
    RegressionObjective,
    TwoPlayerObjective,
    toy_config,
)
from zoo.errors import ConfigError


def test_two_optimizers_in_turn_each_update_only_their_own_parameters():
    objective = TwoPlayerObjective(toy_config(max_steps=3))
    trainer = Trainer(objective)
    trainer.fit()
    assert trainer.global_step == 3 and len(objective.record) == 3
    lr_d = 0.1
    for rec in objective.record:
        g_before, d_before = rec["before"]["g"], rec["before"]["d"]
        g_mid, d_mid = rec["after_d"]["g"], rec["after_d"]["d"]
        # The critic's step left the generator alone although its loss reads the generator's output.
        assert all(torch.equal(a, b) for a, b in zip(g_before, g_mid))
        # ... and moved the critic by exactly -lr * grad of its own loss (plain SGD).
        x, y = rec["batch"]
        g = torch.nn.Linear(4, 1)
        d = torch.nn.Linear(1, 1)
        with torch.no_grad():
            g.weight.copy_(g_before[0]), g.bias.copy_(g_before[1])
            d.weight.copy_(d_before[0]), d.bias.copy_(d_before[1])
        d_loss, _ = objective.losses(g, d, x, y)
        grads = torch.autograd.grad(d_loss, list(d.parameters()))
        for p0, p1, grad in zip(d_before, d_mid, grads):
            torch.testing.assert_close(p1, p0 - lr_d * grad)
    # The generator's step changed the generator and not the critic.
    last = objective.record[-1]
    g_final = list(trainer.models["model"].parameters())
    d_final = list(trainer.models["d"].parameters())
    assert not all(torch.equal(a, b) for a, b in zip(last["after_d"]["g"], g_final))
    assert all(torch.equal(a, b) for a, b in zip(last["after_d"]["d"], d_final))
    # Each optimizer kept its own schedule: constant for d, cosine (decaying) for g.
    assert trainer.optimizers["d"].param_groups[0]["lr"] == pytest.approx(0.1)
    assert trainer.optimizers["g"].param_groups[0]["lr"] < 0.01


def test_ema_target_network_follows_the_student():
    objective = MeanTeacherObjective(toy_config(max_steps=4))
    trainer = Trainer(objective)
    trainer.fit()
    decay = objective.decay
    for rec in objective.record:
        for before, student, after in zip(rec["teacher_before"], rec["student_after"], rec["teacher_after"]):
            torch.testing.assert_close(after, decay * before + (1 - decay) * student)
    teacher = trainer.models["teacher"]
    assert all(p.grad is None for p in teacher.parameters())
    # The target network is one of the run's modules: it is in the checkpoint state.
    assert "teacher" in trainer.state_dict()["models"]


def test_automatic_path_learns_and_checkpoints(tmp_path):
    objective = RegressionObjective(toy_config(epochs=30, optim=OptimizerConfig(name="sgd", lr=0.05)))
    trainer = Trainer(objective, run_dir=tmp_path / "run", publish=False)
    first = None
    result = trainer.fit()
    for row in trainer.logger.history:
        if row["split"] == "val" and row["metric"] == "mse":
            first = first if first is not None else row["value"]
    assert result.val_metrics["mse"] < 0.05 * first
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    assert (tmp_path / "run" / "metrics.csv").read_text().startswith("step,epoch,split,metric,value")
    assert (tmp_path / "run" / "curves.png").read_bytes()[:4] == b"\x89PNG"


def _final_weights(**changes):
    trainer = Trainer(RegressionObjective(toy_config(**changes)))
    trainer.fit()
    return [p.detach().clone() for p in trainer.models["model"].parameters()]


def test_gradient_accumulation_matches_one_large_batch():
    opt = OptimizerConfig(name="sgd", lr=0.05, momentum=0.9)
    one = _final_weights(batch_size=32, accum_steps=1, epochs=2, optim=opt)
    two = _final_weights(batch_size=16, accum_steps=2, epochs=2, optim=opt)
    for a, b in zip(one, two):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_gradient_clipping_is_applied_and_logged():
    optim = OptimizerConfig(lr=1.0, momentum=0.0)
    trainer = Trainer(RegressionObjective(toy_config(grad_clip=1e-3, max_steps=1, optim=optim)))
    trainer.setup()
    before = [p.detach().clone() for p in trainer.models["model"].parameters()]
    trainer.train_batch(next(trainer.batches(0)))
    assert float(trainer.step_logs["grad_norm"]) > 1e-3  # the norm before clipping
    moved = torch.sqrt(
        sum((p.detach() - b).square().sum() for p, b in zip(trainer.models["model"].parameters(), before))
    )
    assert float(moved) == pytest.approx(1e-3, rel=1e-3)  # lr 1 x clipped norm


def test_ema_of_weights_is_what_is_evaluated():
    trainer = Trainer(RegressionObjective(toy_config(epochs=3, ema_decay=0.9)))
    trainer.fit()
    raw = trainer.models["model"].weight
    ema = trainer.eval_models()["model"].weight
    assert not torch.equal(raw, ema)
    assert trainer.ema.n_averaged.item() == trainer.global_step


@pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adam", "adamw"])
def test_every_optimizer_trains(name):
    lr = {"sgd": 0.05, "adagrad": 0.5, "rmsprop": 0.1, "adam": 0.05, "adamw": 0.05}[name]
    optim = OptimizerConfig(name=name, lr=lr, momentum=0.0, weight_decay=1e-4)
    trainer = Trainer(RegressionObjective(toy_config(epochs=15, optim=optim))).setup()
    initial = trainer.evaluate("val")["mse"]
    result = trainer.fit()
    assert result.val_metrics["mse"] < 0.2 * initial, f"{name} did not learn"


@pytest.mark.parametrize("name", ["constant", "step", "exponential", "cosine", "cosine_restarts", "onecycle"])
def test_schedules_warm_up_then_decay(name):
    model = torch.nn.Linear(2, 1)
    opt = build_optimizer(model.parameters(), OptimizerConfig(lr=1.0))
    cfg = ScheduleConfig(name=name, warmup=0.2, gamma=0.5, step_epochs=1.0, cycles=2)
    total, per_epoch = 50, 10
    sched = build_scheduler(opt, cfg, total, per_epoch)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < 0.5, "warmup starts low"
    assert max(lrs) == pytest.approx(1.0, rel=1e-6), "peak is the configured lr"
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(lrs[:10])), "warmup increases"
    if name != "constant":
        assert lrs[-1] < 0.5 * max(lrs), "decays after warmup"
    assert all(math.isfinite(v) and v > 0 for v in lrs)


def test_early_stopping_ends_a_run_that_stopped_improving():
    cfg = toy_config(epochs=50, early_stop_metric="const", early_stop_mode="min", patience=2)
    trainer = Trainer(ConstantMetricObjective(cfg))
    result = trainer.fit()
    assert result.stopped_early
    assert trainer.epoch == 3  # one best, then two evaluations without improvement


def test_early_stopping_needs_a_metric_the_objective_reports():
    trainer = Trainer(RegressionObjective(toy_config(epochs=2, early_stop_metric="accuracy")))
    with pytest.raises(ConfigError, match="'early_stop_metric'.*mse"):
        trainer.fit()


def test_fp16_on_cpu_is_refused():
    with pytest.raises(ConfigError, match="'precision'"):
        Trainer(RegressionObjective(toy_config(precision="fp16", device="cpu"))).setup()


def test_bf16_autocast_trains_on_cpu():
    trainer = Trainer(RegressionObjective(toy_config(precision="bf16", epochs=10)))
    result = trainer.fit()
    assert trainer.amp_dtype == torch.bfloat16
    assert result.val_metrics["mse"] < 5.0


def test_a_step_without_loss_or_optimize_fails_clearly():
    class Broken(RegressionObjective):
        def train_step(self, ctx, batch):
            return {"mse": F.mse_loss(ctx.models["model"](batch[0]).squeeze(1), batch[1])}

    with pytest.raises(ConfigError, match="no 'loss'"):
        Trainer(Broken(toy_config(max_steps=1))).fit()


def test_curves_show_series_measured_more_than_once_and_the_gradient_norm_apart():
    from recipes.engine.logging import MAX_CURVES, curve_panels

    rows = [
        {"step": s, "split": "train", "metric": m, "value": 1.0}
        for s in (10, 20)
        for m in ("loss", "grad_norm")
    ]
    rows += [{"step": s, "split": "val", "metric": "acc", "value": 0.5} for s in (10, 20)]
    # the final test numbers (one point each, many per-class ones) are the card's table, not curves
    rows += [{"step": 20, "split": "test", "metric": f"ap_{i}", "value": 0.7} for i in range(12)]
    # ... also when a finished run, resumed to publish again, logs them a second time at the same step
    rows += [{"step": 20, "split": "test", "metric": f"ap_{i}", "value": 0.8} for i in range(12)]
    panels = dict(curve_panels(rows))
    assert list(panels) == ["loss", "gradient norm", "metrics"]
    assert set(panels["metrics"]) == {("val", "acc")} and set(panels["gradient norm"]) == {
        ("train", "grad_norm")
    }
    many = [{"step": s, "split": "val", "metric": f"ap_{i}", "value": 0.1} for s in (1, 2) for i in range(12)]
    assert len(dict(curve_panels(many + rows[:2]))["metrics"]) == MAX_CURVES
    # a run that logs only its loss still gets a second panel: the learning rate
    lr = [{"step": s, "split": "train", "metric": m, "value": 0.1} for s in (1, 2) for m in ("loss", "lr")]
    assert [name for name, _ in curve_panels(lr)] == ["loss", "learning rate"]
