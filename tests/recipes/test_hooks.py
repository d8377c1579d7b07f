"""The engine's public hooks for tools: snapshot/restore, held schedules, backward-only steps, split
selection, nested batches (collate, to_device), metric objects in evaluation and the per-step callback."""

from __future__ import annotations

import collections

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from recipes.engine import (
    Callback,
    Data,
    OptimizerConfig,
    ScheduleConfig,
    Trainer,
    collate_ragged,
)
from tests.recipes.toys import Points, RegressionObjective, TwoPlayerObjective, toy_config
from zoo.errors import ConfigError
from zoo.metrics import Accuracy, Mean


class NoisyRegression(RegressionObjective):
    """Every random stream takes part: dropout (torch's global RNG) and input noise (the run's generator)."""

    def build(self, data):
        return {"model": nn.Sequential(nn.Dropout(0.2), nn.Linear(self.config.dim, 1))}

    def train_step(self, ctx, batch):
        x, y = ctx.to_device(batch)
        x = x + 0.1 * torch.randn(x.shape, generator=ctx.generator)
        return {"loss": F.mse_loss(ctx.models["model"](x).squeeze(1), y)}


def _weights(trainer: Trainer) -> list[torch.Tensor]:
    return [t.detach().clone() for m in trainer.models.values() for t in m.state_dict().values()]


def _train(trainer: Trainer, n: int, epoch: int = 0) -> list[dict]:
    return [trainer.train_batch(b) for _, b in zip(range(n), trainer.batches(epoch))]


def test_snapshot_restore_round_trip_is_bit_exact():
    config = toy_config(
        epochs=4,
        ema_decay=0.5,
        optim=OptimizerConfig(name="adam", lr=0.01),
        schedule=ScheduleConfig(name="onecycle", warmup=0.3),
    )
    trainer = Trainer(NoisyRegression(config)).setup()
    _train(trainer, 2)
    trainer.global_step = 2
    snap = trainer.snapshot()
    first = [float(logs["loss"].detach()) for logs in _train(trainer, 3, epoch=1)]
    after_first = _weights(trainer)
    lr_first = trainer.optimizers["main"].param_groups[0]["lr"]
    trainer.global_step = 99
    for _ in range(2):  # a snapshot can be restored more than once
        trainer.restore(snap)
        assert trainer.global_step == 2
        again = [float(logs["loss"].detach()) for logs in _train(trainer, 3, epoch=1)]
        assert again == first  # the same dropout masks and noise: every RNG was put back
        assert all(torch.equal(a, b) for a, b in zip(_weights(trainer), after_first))
        assert trainer.optimizers["main"].param_groups[0]["lr"] == lr_first
    assert set(snap) >= {"models", "optimizers", "schedulers", "scaler", "ema", "rng", "progress"}


def test_preserved_puts_everything_back_even_after_an_error():
    trainer = Trainer(NoisyRegression(toy_config(optim=OptimizerConfig(name="adam", lr=0.01)))).setup()
    _train(trainer, 1)
    before, rng = _weights(trainer), torch.get_rng_state()
    gen = trainer.ctx.generator.get_state()
    with pytest.raises(RuntimeError, match="probe failed"), trainer.preserved():
        _train(trainer, 3)
        raise RuntimeError("probe failed")
    assert all(torch.equal(a, b) for a, b in zip(_weights(trainer), before))
    assert torch.equal(torch.get_rng_state(), rng) and torch.equal(trainer.ctx.generator.get_state(), gen)
    assert all(p.grad is None for p in trainer.models["model"].parameters())


def test_held_schedules_keep_the_rates_and_the_scheduler_state():
    config = toy_config(epochs=3, schedule=ScheduleConfig(name="cosine"))
    trainer = Trainer(RegressionObjective(config)).setup()
    scheduler = trainer.schedulers["main"]
    _train(trainer, 1)
    lr, epoch = trainer.optimizers["main"].param_groups[0]["lr"], scheduler.last_epoch
    with trainer.hold_schedules():
        assert trainer.schedules_held
        before = _weights(trainer)
        _train(trainer, 3)
        assert not all(torch.equal(a, b) for a, b in zip(_weights(trainer), before))  # it trained
        assert trainer.optimizers["main"].param_groups[0]["lr"] == lr and scheduler.last_epoch == epoch
    assert not trainer.schedules_held and trainer.schedulers["main"] is scheduler
    _train(trainer, 1)
    assert scheduler.last_epoch == epoch + 1 and trainer.optimizers["main"].param_groups[0]["lr"] < lr


def test_backward_only_fills_gradients_and_leaves_parameters_alone():
    trainer = Trainer(RegressionObjective(toy_config(optim=OptimizerConfig(lr=0.1)))).setup()
    before = _weights(trainer)
    batches = list(zip(range(2), trainer.batches(0)))
    with trainer.backward_only() as backwards:
        for _, batch in batches:
            trainer.train_batch(batch)
    assert all(torch.equal(a, b) for a, b in zip(_weights(trainer), before))
    assert trainer.optimizers["main"].state == {} and trainer.schedulers["main"].last_epoch == 0
    assert [name for name, _ in backwards] == ["main", "main"]
    # The gradient is the sum of the two batches' loss gradients (it accumulates until zero_grad).
    model = trainer.models["model"]
    expected = [torch.zeros_like(p) for p in model.parameters()]
    for (_, (x, y)), (_, loss) in zip(batches, backwards):
        ref = F.mse_loss(model(x).squeeze(1), y)
        assert torch.equal(ref.detach(), loss)
        for acc, grad in zip(expected, torch.autograd.grad(ref, list(model.parameters()))):
            acc += grad
    for p, g in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, g)
    trainer.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    _train(trainer, 1)  # outside the mode, steps step again
    assert not all(torch.equal(a, b) for a, b in zip(_weights(trainer), before))


def test_backward_only_records_each_optimizer_of_a_two_player_step():
    trainer = Trainer(TwoPlayerObjective(toy_config())).setup()
    before = _weights(trainer)
    with trainer.backward_only() as backwards:
        trainer.train_batch(next(trainer.batches(0)))
    assert [name for name, _ in backwards] == ["d", "g"]
    assert all(torch.equal(a, b) for a, b in zip(_weights(trainer), before))
    assert all(p.grad is not None for m in trainer.models.values() for p in m.parameters())


def test_splits_choose_which_splits_a_run_uses():
    trainer = Trainer(RegressionObjective(toy_config()), splits=("train", "val"))
    result = trainer.fit()
    assert trainer.data.test is None and result.metrics == {} and "mse" in result.val_metrics
    assert trainer.evaluate("test") == {}
    with pytest.raises(ConfigError, match="splits"):
        Trainer(RegressionObjective(toy_config()), splits=("val", "test"))
    with pytest.raises(ConfigError, match="splits"):
        Trainer(RegressionObjective(toy_config()), splits=("train", "valid"))


def test_to_device_moves_nested_batches():
    trainer = Trainer(RegressionObjective(toy_config(channels_last=True))).setup()
    Pair = collections.namedtuple("Pair", "a b")
    batch = (
        torch.zeros(2, 3, 4, 5),
        [{"boxes": torch.zeros(1, 4), "labels": torch.tensor([1]), "id": 7}, {"boxes": torch.zeros(0, 4)}],
        Pair(torch.ones(2), "text"),
    )
    moved = trainer.ctx.to_device(batch)
    assert type(moved) is tuple and type(moved[1]) is list and type(moved[2]) is Pair
    assert moved[0].is_contiguous(memory_format=torch.channels_last)
    assert moved[1][0]["id"] == 7 and moved[1][1]["boxes"].shape == (0, 4) and moved[2].b == "text"
    assert moved[1][0]["labels"].device == trainer.device


class Scenes(torch.utils.data.Dataset):
    """Images with a different number of boxes each: (image, {"boxes", "labels"}), through a DataLoader."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i):
        k = i % 3
        return torch.full((3, 8, 8), float(i)), {"boxes": torch.rand(k, 4), "labels": torch.arange(k)}


class Detection(RegressionObjective):
    name = "toy_detection"
    seen: list

    def data(self):
        return Data(Scenes(), collate=collate_ragged)

    def build(self, data):
        self.seen = []
        return {"model": nn.Linear(3, 1)}

    def train_step(self, ctx, batch):
        images, targets = ctx.to_device(batch)
        self.seen.append((images.shape, [len(t["boxes"]) for t in targets]))
        counts = torch.tensor([float(len(t["labels"])) for t in targets])
        pred = ctx.models["model"](images.mean((2, 3))).squeeze(1)
        return {"loss": F.mse_loss(pred, counts)}


def test_collate_keeps_ragged_targets_as_a_list_of_dicts():
    samples = [Scenes()[i] for i in range(3)]
    images, targets = collate_ragged(samples)
    assert images.shape == (3, 3, 8, 8) and [len(t["boxes"]) for t in targets] == [0, 1, 2]
    numbers, names = collate_ragged([(1, "a"), (2, "b")])
    assert torch.equal(numbers, torch.tensor([1, 2])) and names == ["a", "b"]
    objective = Detection(toy_config(batch_size=4, max_steps=3))
    Trainer(objective).fit()
    assert len(objective.seen) == 3
    for shape, counts in objective.seen:
        assert shape == (4, 3, 8, 8) and len(counts) == 4 and set(counts) <= {0, 1, 2}
    assert objective.batch_size_of((torch.zeros(4, 1), [{}] * 4)) == 4


class Classify(RegressionObjective):
    """Three-class logits from a linear model: accuracy as a metric object, the loss as (sum, count)."""

    def build(self, data):
        torch.manual_seed(0)
        return {"model": nn.Linear(self.config.dim, 3)}

    def metrics(self, split):
        return {"accuracy": Accuracy(topk=(1, 2), names=("acc", "top2")), "err": Mean("abs_err")}

    def eval_step(self, ctx, batch):
        x, y = ctx.to_device(batch)
        labels = (y > 0).long() + (y > 5).long()
        logits = ctx.models["model"](x)
        ctx.metrics["accuracy"].update(logits, labels)
        ctx.metrics["err"].update((logits[:, 0] - y).abs())
        return {"loss": (F.cross_entropy(logits, labels, reduction="sum"), len(y))}


def test_metric_objects_accumulate_over_the_whole_split():
    trainer = Trainer(Classify(toy_config())).setup()
    first = trainer.evaluate("val")
    assert trainer.evaluate("val") == first  # reset before each split: nothing carried over
    assert list(first) == sorted(first) == ["abs_err", "acc", "loss", "top2"]
    # The same numbers from the whole split at once (the engine evaluates it in one batch of <= 256 here,
    # so check against a batchwise computation with batches of 5 too).
    data = Points(32, 4, seed=1)
    model = trainer.models["model"]
    with torch.no_grad():
        correct = top2 = loss = err = 0.0
        for idx in torch.arange(32).split(5):
            x, y = data.get_batch(idx)
            labels = (y > 0).long() + (y > 5).long()
            logits = model(x)
            correct += float((logits.argmax(1) == labels).sum())
            top2 += float(logits.topk(2, 1).indices.eq(labels[:, None]).any(1).sum())
            loss += float(F.cross_entropy(logits, labels, reduction="sum"))
            err += float((logits[:, 0] - y).abs().sum())
    assert first["acc"] == correct / 32 and first["top2"] == top2 / 32
    assert first["loss"] == pytest.approx(loss / 32, rel=1e-6) and first["abs_err"] == pytest.approx(err / 32)
    assert trainer.ctx.metrics == {}  # only exposed to the step during evaluation


def test_a_metric_name_reported_twice_is_refused():
    class Twice(Classify):
        def metrics(self, split):
            return {"a": Mean("loss")}

        def eval_step(self, ctx, batch):
            ctx.metrics["a"].update(torch.zeros(len(batch[0])))
            return {"loss": (0.0, len(batch[0]))}

    with pytest.raises(ConfigError, match="loss"):
        Trainer(Twice(toy_config())).setup().evaluate("val")


def test_sum_count_metrics_are_what_they_were():
    """The (sum, count) path: Python-float sums over batches, divided once (the published numbers)."""
    trainer = Trainer(RegressionObjective(toy_config())).setup()
    model = trainer.models["model"]
    with torch.no_grad():
        x, y = Points(32, 4, seed=1).get_batch(torch.arange(32))
        total = float(F.mse_loss(model(x).squeeze(1), y, reduction="sum"))
    assert trainer.evaluate("val") == {"mse": total / 32.0}


def test_on_optimizer_step_sees_every_step_and_on_step_end_the_logged_ones():
    class Record(Callback):
        def __init__(self):
            self.steps, self.logged = [], []

        def on_optimizer_step(self, trainer):
            self.steps.append(trainer.global_step)

        def on_step_end(self, trainer, logs):
            self.logged.append(trainer.global_step)

    record = Record()
    # 64 samples / 16 = 4 steps per epoch, 2 epochs: logged every 3 steps and at each epoch's end.
    Trainer(RegressionObjective(toy_config(epochs=2, log_every=3)), callbacks=[record]).fit()
    assert record.steps == list(range(1, 9)) and record.logged == [3, 4, 6, 8]
