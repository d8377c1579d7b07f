"""The self-supervised recipe: queue and momentum mechanics, a smoke run per method, the probe protocol."""

from __future__ import annotations

import pytest
import torch

import zoo
from recipes.contrastive import ContrastiveObjective, NegativeQueue
from recipes.engine import resolve_config, train
from zoo.errors import ConfigError

FAST = ["progress=false", "tensorboard=false", "eval_limit=64", "batch_size=32"]


def test_queue_is_first_in_first_out_and_wraps():
    queue = NegativeQueue(5, 2)
    first = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])
    queue.push(first)
    assert int(queue.pointer) == 3
    torch.testing.assert_close(queue.keys[:3], torch.nn.functional.normalize(first, dim=1))
    second = torch.tensor([[0.0, -2.0], [-1.0, 0.0], [0.6, 0.8]])
    queue.push(second)  # fills slots 3, 4, then overwrites the oldest (slot 0)
    assert int(queue.pointer) == 1
    torch.testing.assert_close(queue.keys[[3, 4, 0]], torch.nn.functional.normalize(second, dim=1))
    torch.testing.assert_close(queue.keys[1], torch.tensor([0.0, 1.0]))


def test_byol_momentum_rises_to_one_and_moco_keeps_it():
    byol = ContrastiveObjective(resolve_config("byol_cnn.mnist", [])[1])
    assert byol.target_momentum(0.0) == pytest.approx(0.99)
    assert byol.target_momentum(0.5) == pytest.approx(0.995)
    assert byol.target_momentum(1.0) == pytest.approx(1.0)
    moco = ContrastiveObjective(resolve_config("moco_cnn.mnist", [])[1])
    assert moco.target_momentum(0.0) == moco.target_momentum(1.0) == 0.99


def test_moco_step_fills_the_queue_and_moves_the_key_encoder(tmp_path):
    run = tmp_path / "run"
    result = train("moco_cnn.mnist", [*FAST, "max_steps=2", "queue_size=96"], out=run)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert int(state["models"]["queue"]["pointer"]) == (2 * 2 * 32) % 96  # two views' keys per step
    online, target = state["models"]["model"], state["models"]["target"]
    moved = [k for k in online if online[k].is_floating_point() and not torch.equal(online[k], target[k])]
    assert moved, "the key encoder should trail the query encoder, not equal it"
    # The published weight is the query encoder (the target is training machinery).
    model = zoo.create_model(str(result.weight_folder))
    published = model.state_dict()
    assert all(torch.equal(published[k], online[k]) for k in published)
    # A smoke run's sweep: one label a class, one draw; the baselines were measured the same way.
    meta = model.pretrained_weights
    assert {"knn_acc", "linear_acc", "linear_acc_n10", "knn_acc_n10"} <= set(meta.metrics)
    assert set(meta.baselines) == {
        "raw pixels",
        "random-init encoder",
        "autoencoder latent",
        "supervised CNN features",
    }


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="queue_size"):
        resolve_config("moco_cnn.mnist", ["queue_size=8"])
    with pytest.raises(ConfigError, match="method"):
        resolve_config("moco_cnn.mnist", ["method=swav"])
    with pytest.raises(ConfigError, match="predictor"):
        train("simclr_cnn.mnist", ["method=byol", "max_steps=1", *FAST], out=None)
    with pytest.raises(ConfigError, match="proj_dim=4"):
        train("simclr_cnn.mnist", ["method=rotation", "max_steps=1", *FAST], out=None)


def test_rotation_pretext_learns_quarter_turns(tmp_path):
    """A few steps on one batch of digits: the 4-way rotation classifier is far above chance (25%)."""
    overrides = [*FAST, "max_steps=30", "optim.lr=3e-3", "degrees=0", "shear=0", "scale=[1.0,1.0]"]
    result = train("rotnet_cnn.mnist", overrides, out=tmp_path / "run")
    import csv

    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    acc = [float(r["value"]) for r in rows if r["metric"] == "rotation_acc"]
    assert acc[-1] > 0.5, acc  # twice chance
    assert result.weight_folder is not None


# ------------------------------------------------------------------------------ the published encoders
def _published_encoders() -> list[str]:
    from zoo.registry import IN_TREE_HUB, get_weights, list_models

    names = [n for n in list_models(pretrained=True) if (IN_TREE_HUB / n / "config.json").is_file()]
    return [n for n in names if get_weights(n).task == "feature-extraction"]


ENCODERS = _published_encoders()
CONTRASTIVE = ("simclr_cnn", "moco_cnn", "byol_cnn")  # the issue's >= 97% linear-probe bar names these
# Bars a published encoder is measured to miss (reported in the issue and the card), as (arch, metric,
# baseline): checked to be missed still, so an entry goes when a better weight lands.
KNOWN_MISSES = {
    # 2026-11-30: CPC (40 epochs, 6x6 grid of 8 px patches) with 100 labels: linear 80.0%, kNN 54.0%, against
    # raw pixels' 70.5% / 75.7% and its random-init encoder's 79.2% / 45.2%: predicting digit patches
    # rows ahead teaches this network little that identifies the digit (all labels: 95.7% linear).
    ("cpc_cnn", "linear_acc_n100", "raw pixels"),
    ("cpc_cnn", "knn_acc_n100", "raw pixels"),
    ("cpc_cnn", "linear_acc_n100", "random-init encoder"),
    ("cpc_cnn", "knn_acc_n100", "random-init encoder"),
    # 2026-11-30: context prediction (100 epochs, 199 s) with 100 labels: linear 87.2% (raw pixels + 16.7, but
    # its random-init patch encoder's 79.2% + 8.0) and kNN 73.0% (below raw pixels' 75.7%).
    ("context_cnn", "linear_acc_n100", "random-init encoder"),
    ("context_cnn", "knn_acc_n100", "raw pixels"),
}


@pytest.mark.parametrize("name", ENCODERS)
def test_published_encoder_meets_the_issue_bars(name):
    """The card meets the issue's bars against the baselines it records (the weight's own numbers are
    re-measured by tests/recipes/test_published.py through the recipe and by tests/export/test_pretrained.py
    through the task's path with onnxruntime; the raw-pixel baseline below)."""
    meta = zoo.create_model(name, pretrained=True).pretrained_weights
    if meta.arch in CONTRASTIVE:
        assert meta.metrics["linear_acc"] >= 0.97, meta.metrics["linear_acc"]
    for key in ("linear_acc_n100", "knn_acc_n100"):
        for baseline in ("raw pixels", "random-init encoder"):
            met = meta.metrics[key] >= meta.baselines[baseline][key] + 0.10
            if (meta.arch, key, baseline) in KNOWN_MISSES:
                assert not met, f"{name}: {key} now meets the bar over {baseline}: drop it from KNOWN_MISSES"
            else:
                assert met, (key, baseline, meta.metrics[key], meta.baselines[baseline][key])


@pytest.mark.skipif(not ENCODERS, reason="no published encoder")
def test_raw_pixel_baseline_of_every_card_re_measures():
    """The bars' reference: raw pixels with 100 labels (3 draws), as every encoder's card records it."""
    from zoo.data import load_dataset
    from zoo.probing import encode_split, probe

    splits = load_dataset("mnist_5k")
    train, test = (encode_split(lambda x: x.flatten(1), s.images) for s in (splits.train, splits.test))
    raw = probe(train, splits.train.labels, test, splits.test.labels, labels_per_class=10)
    for name in ENCODERS:
        recorded = zoo.create_model(name, pretrained=True).pretrained_weights.baselines["raw pixels"]
        assert raw.linear[0] == pytest.approx(recorded["linear_acc_n100"], abs=1e-6), name
        assert raw.knn[0] == pytest.approx(recorded["knn_acc_n100"], abs=1e-6), name


def test_patch_pairs_cut_the_centre_and_the_named_neighbour():
    from recipes.contrastive import patch_pairs

    # 26 px: nine 8 px cells 1 px apart, each filled with its own cell number (row-major), gaps at -1.
    image = torch.full((1, 26, 26), -1.0)
    for cell in range(9):
        top, left = (cell // 3) * 9, (cell % 3) * 9
        image[:, top : top + 8, left : left + 8] = cell
    images = image.expand(64, 1, 26, 26)
    centre, neighbour, position = patch_pairs(images, 8, 1, 0, torch.Generator().manual_seed(0))
    assert centre.shape == neighbour.shape == (64, 1, 8, 8)
    assert (centre == 4).all()
    expected = (position + (position >= 4).long()).float().view(-1, 1, 1, 1)
    assert (neighbour == expected).all()
    assert set(position.tolist()) == set(range(8))
    # With jitter, patches move by at most that much: a 1 px shift shows the gap (-1) on one edge at most.
    _, moved, _ = patch_pairs(
        torch.nn.functional.pad(images, (1, 1, 1, 1), value=-1), 8, 1, 1, torch.Generator()
    )
    assert ((moved == -1).flatten(1).sum(1) <= 15).all()
    with pytest.raises(ConfigError, match="do not fit"):
        patch_pairs(images, 8, 1, 2, torch.Generator())


def test_context_pretext_learns_positions(tmp_path):
    overrides = [*FAST, "max_steps=30", "optim.lr=3e-3"]
    train("context_cnn.mnist", overrides, out=tmp_path / "run")
    import csv

    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    acc = [float(r["value"]) for r in rows if r["metric"] == "position_acc"]
    assert acc[-1] > 0.25, acc  # 8 positions: chance is 12.5%
