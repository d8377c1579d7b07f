"""Pseudo-labelling rounds: the selection, the round schedule against the restarting cosine, config errors,
no true label of an unlabelled image reaching training, resume identity, and the card's rounds record."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from recipes.engine import ScheduleConfig, Trainer, resolve_config
from recipes.engine.optim import build_scheduler
from recipes.pseudo_label import (
    PseudoLabelConfig,
    PseudoLabelObjective,
    round_of_step,
    select_pseudo_labels,
)
from zoo.errors import ConfigError

# One epoch (41 steps) in 3 slices of 13 (the last 15): 16 steps reach round 1. A low threshold so that a
# 13-step teacher keeps some pseudo-labels; a checkpoint at step 14, inside round 1.
SMOKE = [
    "epochs=1",
    "rounds=2",
    'schedule={"name": "cosine_restarts", "cycles": 3}',
    "threshold=0.3",
    "max_steps=16",
    "checkpoint_every=14",
    "eval_limit=64",
    "progress=false",
    "tensorboard=false",
]


def test_selection_keeps_confident_predictions_only():
    probs = torch.tensor([[0.96, 0.04], [0.5, 0.5], [0.05, 0.95], [0.1, 0.9]])
    assert select_pseudo_labels(probs, 0.95).tolist() == [0, -1, 1, -1]
    assert select_pseudo_labels(probs, 0.5).tolist() == [0, 0, 1, 1]  # ties: the first class
    assert (select_pseudo_labels(probs, 1.0) == -1).all()


def test_rounds_are_equal_slices_that_start_with_a_cosine_cycle():
    total, rounds = 1640, 4
    starts = [
        s for s in range(1, total) if round_of_step(s, total, rounds) != round_of_step(s - 1, total, rounds)
    ]
    assert starts == [328, 656, 984, 1312] and round_of_step(total - 1, total, rounds) == rounds
    assert round_of_step(1643, 1644, 4) == 4  # the remainder of the division joins the last round
    # The preset's schedule restarts its cosine exactly where a round starts.
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.03)
    sched = build_scheduler(opt, ScheduleConfig(name="cosine_restarts", cycles=rounds + 1), total, 41)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [s for s in range(1, total) if lrs[s] > lrs[s - 1]] == starts


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"rounds": 0}, "'rounds'"),
        ({"schedule": ScheduleConfig(name="cosine_restarts", cycles=4)}, "give each round its own cycle"),
        ({"threshold": 0.0}, "threshold"),
    ],
)
def test_config_errors_say_what_is_expected(changes, match):
    with pytest.raises(ConfigError, match=match):
        replace(PseudoLabelConfig(), **changes).validate()


class Interrupted(Exception):
    pass


def _objective(labels_of_unlabelled=None, stop_at: int | None = None) -> PseudoLabelObjective:
    """The smoke preset's objective; optionally with the unlabelled images' true labels changed, or a crash
    at step `stop_at` (after the checkpoint at step 14)."""
    _, config = resolve_config("cnn.mnist100_pseudolabel", SMOKE)
    objective = PseudoLabelObjective(config)
    if labels_of_unlabelled is not None:
        original = objective.data

        def data():
            out = original()
            train = objective.splits.train
            labels = train.labels.clone()  # a new tensor: the loaded split may share memory with a cache
            labels[objective.unlabelled] = labels_of_unlabelled(labels[objective.unlabelled])
            train.labels = labels
            return out

        objective.data = data
    if stop_at is not None:
        step = objective.train_step

        def train_step(ctx, batch):
            if ctx.step == stop_at:
                raise Interrupted
            return step(ctx, batch)

        objective.train_step = train_step
    return objective


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The smoke run, the same with other true labels for the unlabelled images, and the same crashed at
    step 15 then resumed from its step-14 checkpoint."""
    root = tmp_path_factory.mktemp("pseudo")
    plain = Trainer(_objective(), run_dir=root / "plain", recipe="cnn.mnist100_pseudolabel")
    plain_result = plain.fit()
    relabelled = Trainer(_objective(lambda y: (y + 1) % 10), run_dir=root / "relabelled")
    relabelled.fit()
    with pytest.raises(Interrupted):
        Trainer(_objective(stop_at=15), run_dir=root / "resumed").fit()
    resumed = Trainer(_objective(), run_dir=root / "resumed", resume=True)
    resumed.fit()
    return {"plain": (plain, plain_result), "relabelled": relabelled, "resumed": resumed}


def _same_state(a: Trainer, b: Trainer, name: str) -> None:
    for (key, x), y in zip(a.models[name].state_dict().items(), b.models[name].state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True, msg=f"{name}.{key} differs")


def test_round_one_trains_on_the_teachers_confident_labels(runs):
    trainer, _ = runs["plain"]
    state, objective = trainer.models["pseudo"], trainer.objective
    assert int(state.round) == 1 and state.first_step.tolist() == [0, 13, -1]
    labels = state.labels
    assert (labels[objective.labelled] == -1).all()  # the labelled images keep their own labels only
    kept = int((labels >= 0).sum())
    assert 0 < kept <= len(objective.unlabelled) and int(state.kept[1]) == kept
    truth = objective.splits.train.labels
    assert int(state.right[1]) == int((labels[labels >= 0] == truth[labels >= 0]).sum())
    assert 0 <= state.test_acc[0] <= 1 and torch.isnan(state.test_acc[1:]).all()


def test_unlabelled_images_true_labels_never_reach_training(runs):
    trainer, relabelled = runs["plain"][0], runs["relabelled"]
    _same_state(trainer, relabelled, "model")
    assert torch.equal(trainer.models["pseudo"].labels, relabelled.models["pseudo"].labels)
    # Only the report reads them: the count of right pseudo-labels differs.
    assert int(trainer.models["pseudo"].right[1]) != int(relabelled.models["pseudo"].right[1])


def test_resumed_run_is_identical(runs):
    trainer, resumed = runs["plain"][0], runs["resumed"]
    assert resumed.global_step == trainer.global_step == 16
    _same_state(trainer, resumed, "model")
    _same_state(trainer, resumed, "pseudo")


def test_card_records_each_round(runs):
    _, result = runs["plain"]
    config = json.loads((result.weight_folder / "config.json").read_text())
    (table,) = config["weights"]["tables"]
    rows = table["rows"]
    assert [r["round"] for r in rows] == [0, 1] and rows[0]["pseudo-labels"] == "-"
    assert rows[1]["pseudo-labels"] > 0 and rows[1]["right"] <= rows[1]["pseudo-labels"]
    # The last round is the weight itself: the card's test accuracy (on the whole test split, not eval_limit).
    assert rows[1]["test accuracy"].endswith("%")
    assert (result.weight_folder / config["files"]["rounds"]).is_file()
    card = (result.weight_folder / "README.md").read_text()
    assert "## Pseudo-labelling rounds" in card and "| 1 | student 1 | 13 |" in card


def test_pseudo_labelled_images_are_the_unlabelled_ones_only(runs):
    objective = runs["plain"][0].objective
    labelled = set(objective.labelled.tolist())
    assert labelled.isdisjoint(objective.unlabelled.tolist())
    assert len(labelled) + len(objective.unlabelled) == len(objective.splits.train)
    assert np.array_equal(np.bincount(objective.splits.train.labels[objective.labelled]), [10] * 10)
