"""Segmentation from scribbles (issue 14): the config refuses losses that need complete masks, the pool
trains on scribbles and weights classes by scribbled pixels only, the augmentation leaves uncovered pixels
unlabelled, the card's picture shows the strokes, and the published weight meets (or is recorded to miss)
the issue's bar against the fully supervised U-Net."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from recipes.augment import SceneAugment
from recipes.config import apply_overrides
from recipes.segmentation import (
    ScribbleSegmentationConfig,
    ScribbleSegmentationObjective,
    SegmentationConfig,
    TrainPool,
    prediction_picture,
)
from zoo.data.scenes import SEMANTIC_CLASSES, DigitScenes
from zoo.errors import ConfigError
from zoo.losses import class_frequency_weights
from zoo.metrics.segmentation import FOREGROUND_KEYS
from zoo.registry import IN_TREE_HUB

SCRIBBLES = ScribbleSegmentationConfig(loss="ce", crf_weight=0.1)


def test_config_errors_say_what_is_expected():
    with pytest.raises(ConfigError, match=r"'loss': 'ce_dice' needs complete masks.*\['ce', 'weighted_ce'\]"):
        replace(SCRIBBLES, loss="ce_dice").validate()
    with pytest.raises(ConfigError, match="'targets': 'boxes' must be 'masks' or 'scribbles'"):
        replace(SCRIBBLES, targets="boxes").validate()
    # The scribble keys belong to the scribble config: a full-mask run names the keys it does accept.
    with pytest.raises(ConfigError, match="targets"):
        apply_overrides(SegmentationConfig(), ["targets=scribbles"])
    with pytest.raises(ConfigError, match="crf_sigma_rgb"):
        replace(SCRIBBLES, crf_sigma_rgb=0.0).validate()
    with pytest.raises(ConfigError, match="crf_weight"):
        replace(SCRIBBLES, crf_weight=-1.0).validate()
    with pytest.raises(ConfigError, match="crf_classes"):
        apply_overrides(SCRIBBLES, ["crf_classes=digits"])
    with pytest.raises(ConfigError, match="'propagate_k'.*>= 0"):
        replace(SCRIBBLES, propagate_k=-1).validate()
    with pytest.raises(ConfigError, match="'propagate_k' spreads scribbles: it needs targets='scribbles'"):
        replace(SCRIBBLES, targets="masks", propagate_k=10).validate()
    with pytest.raises(ConfigError, match="'spread_identity' and 'propagate_share'.*need propagate_k > 0"):
        replace(SCRIBBLES, propagate_k=0, spread_identity=1.0).validate()
    with pytest.raises(ConfigError, match="'propagate_share': 1.5 must be in"):
        replace(SCRIBBLES, propagate_k=10, propagate_share=1.5).validate()
    SCRIBBLES.validate()
    replace(SCRIBBLES, loss="weighted_ce").validate()


def test_foreground_crf_ignores_which_digit(monkeypatch):
    # crf_classes="foreground": the CRF sees background against digit only, so a map that splits one region
    # between two digits pays nothing for it, while the all-class CRF does.
    import recipes.segmentation as seg

    seen = []
    monkeypatch.setattr(seg, "gated_crf_loss", lambda probs, *a, **k: seen.append(probs) or probs.sum() * 0)
    logits = torch.full((1, 11, 4, 4), -20.0)
    logits[0, 1, :, :2] = logits[0, 2, :, 2:] = 20.0  # left half digit 0, right half digit 1: no background
    images = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    target = torch.full((1, 4, 4), 255, dtype=torch.long)
    target[0, 0, 0] = 1
    for classes, channels in (("all", 11), ("foreground", 2)):
        objective = ScribbleSegmentationObjective(replace(SCRIBBLES, crf_classes=classes))
        objective.splits = SimpleNamespace(mean=(0.0,) * 3, std=(1.0,) * 3, labels=SEMANTIC_CLASSES)
        objective.augment = SceneAugment()
        model = lambda x: logits.clone().requires_grad_()  # noqa: E731
        ctx = SimpleNamespace(
            to_device=lambda t: t,
            device=torch.device("cpu"),
            config=SimpleNamespace(channels_last=False),
            autocast=contextlib.nullcontext,
            models={"model": model},
            generator=torch.Generator(),
        )
        objective.train_step(ctx, (images, target))
        probs = seen[-1]
        assert probs.shape[1] == channels
        if classes == "foreground":
            assert torch.allclose(probs[:, 1], torch.ones(1, 4, 4))  # every pixel is "digit", whichever


def test_augment_leaves_uncovered_pixels_unlabelled_for_scribbles():
    mask = torch.full((2, 32, 32), 255, dtype=torch.long)
    mask[:, 10:20, 10:20] = 3
    image = torch.ones(2, 3, 32, 32)
    augment = SceneAugment(degrees=20, translate=0.2, scale=(0.7, 0.8), fill=255)
    x, y = augment(image, mask, torch.Generator().manual_seed(0))
    uncovered = x.sum(1) < 1e-6
    assert uncovered.any() and (y[uncovered] == 255).all()
    assert set(y.unique().tolist()) <= {3, 255}  # no background is invented
    # The full-mask default is unchanged: uncovered pixels are background.
    _, y0 = SceneAugment(degrees=20, translate=0.2, scale=(0.7, 0.8))(
        image, mask, torch.Generator().manual_seed(0)
    )
    assert (y0[uncovered] == 0).all()


def test_pool_trains_on_scribbles_and_weights_classes_by_scribbled_pixels():
    small = DigitScenes("train", 12)
    pool = TrainPool(small, copies=1, scribbles=True)
    assert len(pool) == 24
    images, target = pool.get_batch(torch.tensor([0, 13]))
    assert images.dtype == torch.uint8 and target.dtype == torch.int64
    fresh = DigitScenes("train", 12, start=12, scribbles=True)
    assert torch.equal(target[1], torch.from_numpy(fresh.scribble_map(1).astype(np.int64)))
    assert torch.equal(pool.semantic[13], torch.from_numpy(fresh.scene(1).semantic))
    objective = ScribbleSegmentationObjective(replace(SCRIBBLES, loss="weighted_ce"))
    objective.train_pool, objective.splits = pool, SimpleNamespace(labels=SEMANTIC_CLASSES)
    scribbled = pool.labels.flatten().long()
    counts = torch.bincount(scribbled[scribbled != 255], minlength=11)
    torch.testing.assert_close(objective.class_weights, class_frequency_weights(counts, 0.5, None))


@pytest.mark.parametrize("share", [0.0, 0.5])
def test_pool_with_propagation_codes_the_spread_pixels_apart_from_the_strokes(share):
    from recipes.segmentation import SPREAD_OFFSET
    from zoo.data.scribbles import propagate_scribbles

    small = DigitScenes("train", 12)
    pool = TrainPool(small, copies=0, scribbles=True, propagate_k=10, propagate_share=share)
    drawn = pool.scenes.scribbles
    spread = propagate_scribbles(pool.scenes.images, drawn, 10, share)
    labels = pool.labels
    assert labels is pool.labels  # computed once, then cached
    # Strokes keep their classes; pixels only the spread labelled hold their spread class past SPREAD_OFFSET.
    assert torch.equal(labels[drawn != 255], drawn[drawn != 255])
    only_spread = (drawn == 255) & (spread != 255)
    assert torch.equal(labels[only_spread], spread[only_spread] + SPREAD_OFFSET)
    assert {SPREAD_OFFSET, SPREAD_OFFSET + 1} < set(labels[only_spread].unique().tolist())
    assert ((labels == 255) == (spread == 255)).all() and only_spread.float().mean() > 0.8
    _, target = pool.get_batch(torch.tensor([3]))
    assert torch.equal(target[0], labels[3].long())
    # The class weights still count the strokes' classes only.
    objective = ScribbleSegmentationObjective(replace(SCRIBBLES, loss="weighted_ce", propagate_k=10))
    objective.train_pool, objective.splits = pool, SimpleNamespace(labels=SEMANTIC_CLASSES)
    counts = torch.bincount(drawn.flatten().long()[drawn.flatten() != 255], minlength=11)
    torch.testing.assert_close(objective.class_weights, class_frequency_weights(counts, 0.5, None))


@pytest.mark.parametrize("identity", [0.0, 0.5])
def test_spread_pixels_add_background_vs_digit_and_identity_cross_entropies(identity):
    from recipes.segmentation import SPREAD_BACKGROUND, SPREAD_OFFSET

    config = replace(SCRIBBLES, crf_weight=0.0, propagate_k=10, spread_identity=identity)
    objective = ScribbleSegmentationObjective(config)
    objective.splits = SimpleNamespace(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), labels=SEMANTIC_CLASSES)
    objective.augment = SimpleNamespace(active=False)
    torch.manual_seed(0)
    logits = torch.randn(2, 11, 4, 4)
    model = lambda x: logits  # noqa: E731
    ctx = SimpleNamespace(
        to_device=lambda t: t,
        device="cpu",
        config=SimpleNamespace(channels_last=False),
        autocast=contextlib.nullcontext,
        models={"model": model},
    )
    target = torch.full((2, 4, 4), 255)
    target[0, 0, :2] = torch.tensor([0, 7])  # strokes: background, digit 6
    # spread: background, digit 2 (class 3), digit 8 (class 9)
    target[1, 1, :3] = torch.tensor([SPREAD_BACKGROUND, SPREAD_OFFSET + 3, SPREAD_OFFSET + 9])
    out = objective.train_step(ctx, (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), target))
    p = logits.softmax(1)
    strokes = -(p[0, 0, 0, 0].log() + p[0, 7, 0, 1].log()) / 2
    spread = -(p[1, 0, 1, 0].log() + (1 - p[1, 0, 1, 1]).log() + (1 - p[1, 0, 1, 2]).log()) / 3
    torch.testing.assert_close(out["spread"], spread)
    # Which digit, given a digit: p(c) / (1 - p(background)) on the spread digit pixels.
    which = -((p[1, 3, 1, 1] / (1 - p[1, 0, 1, 1])).log() + (p[1, 9, 1, 2] / (1 - p[1, 0, 1, 2])).log()) / 2
    torch.testing.assert_close(out["loss"], strokes + spread + identity * which)
    if identity:
        torch.testing.assert_close(out["identity"], which)
    else:
        assert "identity" not in out


def test_prediction_picture_draws_the_scribbles_column(tmp_path):
    data = DigitScenes("test", 3, scribbles=True)
    memory = data.to_memory()
    model = zoo.create_model("unet_resnet8_small", num_classes=11).eval()
    info = {"labels": SEMANTIC_CLASSES, "mean": (0.5,) * 3, "std": (0.25,) * 3}
    with_strokes = prediction_picture(model, memory, info, tmp_path / "s.png", 3, 2, memory.scribbles)
    without = prediction_picture(model, memory, info, tmp_path / "p.png", 3, 2)
    wide, narrow = Image.open(with_strokes).size[0], Image.open(without).size[0]
    assert wide - narrow == 64 * 2 + 2  # one more tile column (and its border)


# ---------------------------------------------------------------------------------- the published weight
NAME, FULL_MASKS = "unet_resnet8_small.scenes_scribbles", "unet_resnet8_small.scenes"
BAR = 0.85  # the issue: >= 85% of the fully supervised U-Net's mIoU on the same test scenes
# Bars a published weight is measured to miss (reported in the issue and the card): checked to be missed
# still, so the entry must go when a better weight lands. (2026-12-01: mIoU 0.641, 92.6% of the full-mask
# U-Net's 0.692 on the same 2,500 steps; the bar is met.)
KNOWN_MISSES: set[str] = set()


@pytest.mark.skipif(not (IN_TREE_HUB / NAME / "config.json").is_file(), reason="weight not published")
def test_scribble_weight_reaches_the_issue_bar_against_full_masks():
    scribbles, full = zoo.get_weights(NAME), zoo.get_weights(FULL_MASKS)
    assert scribbles.dataset == full.dataset and scribbles.arch == full.arch
    assert (
        scribbles.recipe_config["targets"] == "scribbles"
        and full.recipe_config.get("targets", "masks") == "masks"
    )
    ratio = scribbles.metrics["miou"] / full.metrics["miou"]
    # The card says it: the ratio and the labelled fraction in the description, the ablation beside it.
    assert f"{ratio:.1%}" in scribbles.description and "pixels labelled" in scribbles.description
    assert any("CRF" in change for change in scribbles.ablations)
    if NAME in KNOWN_MISSES:
        assert ratio < BAR, f"{NAME} now meets the bar ({ratio:.1%}): drop it from KNOWN_MISSES"
    else:
        assert ratio >= BAR, (
            f"mIoU {scribbles.metrics['miou']:.4f} is {ratio:.1%} of full masks' (bar {BAR:.0%})"
        )


@pytest.mark.skipif(not (IN_TREE_HUB / NAME / "config.json").is_file(), reason="weight not published")
def test_card_splits_the_gap_into_digits_found_and_which_digit():
    # The card's baseline row carries the full-mask weight's foreground/identity split (its own card records
    # mIoU only): re-measured here with zoo verify's MeanIoU, on the whole test split.
    from zoo.evaluation import verify

    scribbles = zoo.get_weights(NAME)
    [row] = [v for k, v in scribbles.baselines.items() if k.startswith(FULL_MASKS + " ")]
    measured = verify(FULL_MASKS).measured
    assert {k: row[k] for k in FOREGROUND_KEYS} == pytest.approx(
        {k: measured[k] for k in FOREGROUND_KEYS}, abs=1e-5
    )
    # What the README says of them: the scribble weight tells digits apart as well as the full-mask one
    # (within a point), and what it misses is where digits end (foreground precision).
    assert abs(scribbles.metrics["identity"] - row["identity"]) < 0.01
    assert scribbles.metrics["fg_precision"] < row["fg_precision"] - 0.05
