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
from recipes.config import apply_overrides
from recipes.segmentation import (
    SceneAugment,
    ScribbleSegmentationConfig,
    ScribbleSegmentationObjective,
    SegmentationConfig,
    TrainPool,
    prediction_picture,
)
from zoo.data.scenes import SEMANTIC_CLASSES, DigitScenes
from zoo.errors import ConfigError
from zoo.losses import class_frequency_weights
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
# still, so the entry must go when a better weight lands.
KNOWN_MISSES = {
    # 2026-12-01: mIoU 0.463, 66.9% of the full-mask U-Net's 0.692 on the same 2,500 steps (partial CE alone:
    # 0.381): the foreground-only CRF carves the background between strokes, but digits on low-contrast
    # textures still come out as blobs.
    NAME,
}


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
