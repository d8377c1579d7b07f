"""The semi-supervised recipe: the labelled draw, the ramp-up, cut-out, config errors, the mean teacher
publishing its teacher, and no label of an unlabelled image ever reaching the weights."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch

from recipes.engine import Trainer, get_preset, resolve_config
from recipes.semi_supervised import (
    FIXMATCH_MNIST,
    FixMatchObjective,
    SemiSupervisedConfig,
    cutout,
    labelled_rows,
    method_label,
    unsupervised_weight,
)
from zoo.errors import ConfigError

SMOKE = ["max_steps=2", "eval_limit=64", "progress=false", "tensorboard=false"]


def test_labelled_draw_is_per_class_seeded_and_sorted():
    labels = np.repeat(np.arange(10), 40)
    rows = labelled_rows(labels, 10, draw=0)
    assert len(rows) == 100 and (np.bincount(labels[rows]) == 10).all()
    assert (np.diff(rows) > 0).all()
    assert np.array_equal(rows, labelled_rows(labels, 10, draw=0))
    assert not np.array_equal(rows, labelled_rows(labels, 10, draw=1))
    with pytest.raises(ConfigError, match="fewer than labels_per_class=50"):
        labelled_rows(labels, 50, draw=0)


def test_unsupervised_weight_ramps_up_then_holds():
    ramp = [unsupervised_weight(t, 10.0, 0.5) for t in np.linspace(0, 1, 11)]
    assert ramp[0] == pytest.approx(10 * np.exp(-5)) and ramp[5:] == [10.0] * 6
    assert all(a < b for a, b in itertools.pairwise(ramp[:6]))
    assert unsupervised_weight(0.0, 3.0, 0.0) == 3.0  # no ramp: FixMatch's constant weight


def test_cutout_zeroes_one_square_per_image():
    x = torch.ones(64, 1, 28, 28)
    out = cutout(x, 0.5, torch.Generator().manual_seed(0))
    zeros = (out == 0).flatten(1).sum(1)
    assert zeros.max() == 14 * 14 and (zeros > 0).all()  # a whole square inside, clipped at a border
    assert torch.equal(cutout(x, 0.0, torch.Generator()), x)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"batch_size": 100, "unlabelled_ratio": 3}, "must split into"),
        ({"labels_per_class": 0}, "labels_per_class"),
        ({"threshold": 0.0}, "threshold"),
        ({"dataset": "digits_8x8"}, "use mnist_5k"),
        ({"cutout": 1.0}, "cutout"),
    ],
)
def test_config_errors_say_what_is_expected(changes, match):
    with pytest.raises(ConfigError, match=match):
        replace(SemiSupervisedConfig(), **changes).validate()


def test_fixmatch_strong_views_carry_noise_of_the_configured_spread():
    grey = torch.full((512, 1, 28, 28), 0.5)
    out = FixMatchObjective(FIXMATCH_MNIST).distort_strong(grey.clone(), torch.Generator().manual_seed(0))
    spread = (out - 0.5).flatten(1).std(1)  # one std per image, drawn in [0, 0.4] (clipping trims the top)
    assert 0.3 < spread.max() <= 0.4 and spread.min() < 0.02 and out.min() >= 0.0 and out.max() <= 1.0
    off = FixMatchObjective(replace(FIXMATCH_MNIST, strong_noise=0.0))
    assert torch.equal(off.distort_strong(grey, torch.Generator()), grey)
    with pytest.raises(ConfigError, match="method 'fixmatch'"):
        replace(FIXMATCH_MNIST, method="supervised").validate()
    with pytest.raises(ConfigError, match="strong_noise >= 0"):
        replace(FIXMATCH_MNIST, strong_noise=-0.1).validate()
    assert get_preset("cnn.mnist100_fixmatch_draw1").objective is FixMatchObjective


def _train(preset: str, tmp_path, labels_of_unlabelled=None):
    _, config = resolve_config(preset, SMOKE)
    objective = get_preset(preset).objective(config)
    if labels_of_unlabelled is not None:
        original = objective.data

        def data():
            data = original()
            train = objective.splits.train
            unlabelled = torch.from_numpy(np.setdiff1d(np.arange(len(train)), objective.labelled.numpy()))
            labels = train.labels.clone()  # a new tensor: the loaded split may share memory with a cache
            labels[unlabelled] = labels_of_unlabelled(labels[unlabelled])
            train.labels = labels
            return data

        objective.data = data
    trainer = Trainer(objective, run_dir=tmp_path / "run", recipe=preset)
    return trainer, trainer.fit()


def test_unlabelled_images_labels_never_reach_the_weights(tmp_path):
    trainer, _ = _train("cnn.mnist100_fixmatch", tmp_path / "a")
    other, _ = _train("cnn.mnist100_fixmatch", tmp_path / "b", lambda y: (y + 1) % 10)
    for (name, a), b in zip(
        trainer.models["model"].state_dict().items(), other.models["model"].state_dict().values()
    ):
        assert torch.equal(a, b), name


def test_mean_teacher_publishes_its_teacher(tmp_path):
    import zoo

    trainer, result = _train("cnn.mnist100_meanteacher", tmp_path)
    published = zoo.create_model(str(result.weight_folder)).state_dict()
    teacher, student = trainer.models["target"].state_dict(), trainer.models["model"].state_dict()
    assert all(torch.equal(published[k], teacher[k].cpu()) for k in published)
    assert not all(torch.equal(published[k], student[k].cpu()) for k in published)


def _published_by_method() -> dict[str, dict[int, float]]:
    """Test error of each published semi-supervised weight, by method and label draw (from the cards; the
    cards' accuracies are re-measured by tests/recipes/test_published.py)."""
    import zoo
    from zoo.registry import IN_TREE_HUB

    errors: dict[str, dict[int, float]] = {}
    for name in zoo.list_models(pretrained=True):
        if not (IN_TREE_HUB / name / "config.json").is_file():
            continue
        meta = zoo.get_weights(name)
        config = meta.recipe_config or {}
        if "labels_per_class" in config:
            errors.setdefault(method_label(config), {})[config["label_draw"]] = 1 - meta.metrics["acc"]
    return errors


def test_semi_supervised_weights_meet_the_issue_bars():
    errors = _published_by_method()
    if not errors:
        pytest.skip("no published semi-supervised weight")
    baseline = errors["supervised"]
    for method, draws in errors.items():
        if method == "supervised":
            continue
        # Same labels, views, steps and optimiser: the unlabelled images must help on every draw.
        assert all(draws[d] < baseline[d] for d in draws if d in baseline), (method, draws, baseline)
    best = min(np.mean(list(d.values())) for m, d in errors.items() if m != "supervised")
    assert best <= 0.05, f"the best method's mean test error {best:.1%} is above the issue's 5%"
    assert len(errors["fixmatch"]) == len(baseline) == 3, "the issue asks for 3 label draws"


def test_pseudo_label_cards_report_each_round():
    import zoo
    from zoo.registry import IN_TREE_HUB

    names = [n for n in zoo.list_models(pretrained=True) if n.startswith("cnn.mnist100_pseudolabel")]
    names = [n for n in names if (IN_TREE_HUB / n / "config.json").is_file()]
    if not names:
        pytest.skip("no published pseudo-labelling weight")
    for name in names:
        meta = zoo.get_weights(name)
        (table,) = meta.tables
        rows = table["rows"]
        assert [r["round"] for r in rows] == list(range(meta.recipe_config["rounds"] + 1)), name
        # The last round is the weight: its row is the card's measured test accuracy.
        assert rows[-1]["test accuracy"] == f"{meta.metrics['acc']:.1%}", name
        for row in rows[1:]:  # every student trained on some pseudo-labels, counted against the truth
            assert 0 < row["right"] <= row["pseudo-labels"] <= 3900, (name, row)
