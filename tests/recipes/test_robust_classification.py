"""The robust classification recipe: its style augmentation is seeded, bounded and does what it says, its
config refuses bad values, and its published weight fits the temperature on held-out images."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from recipes.engine import get_preset
from recipes.robust_classification import RobustClassificationConfig, StyleAugment
from zoo.errors import ConfigError
from zoo.registry import IN_TREE_HUB

NAME = "resnet8_small.mnist_robust"


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    from zoo.data import load_dataset

    return load_dataset("mnist_5k").train.images[::40][:64].float() / 255


def test_style_augment_is_seeded_and_bounded(batch):
    augment = StyleAugment(RobustClassificationConfig(style_p=0.5))
    first = augment(batch.clone(), torch.Generator().manual_seed(0))
    again = augment(batch.clone(), torch.Generator().manual_seed(0))
    other = augment(batch.clone(), torch.Generator().manual_seed(1))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == batch.shape and first.min() >= 0 and first.max() <= 1
    changed = (first - batch).abs().flatten(1).amax(1) > 1e-6
    assert changed.float().mean() > 0.8  # six changes at p = 0.5 each: 1/64 of images keep none
    rare = StyleAugment(RobustClassificationConfig(style_p=0.02))(
        batch.clone(), torch.Generator().manual_seed(0)
    )
    kept = (rare - batch).abs().flatten(1).amax(1) <= 1e-6
    assert kept.float().mean() > 0.7  # six changes at p = 0.02 each: about 89% of images keep none


def test_style_augment_off_is_the_identity(batch):
    assert torch.equal(StyleAugment(RobustClassificationConfig(style_p=0.0))(batch, torch.Generator()), batch)


def test_style_augment_each_change_is_what_it_says(batch):
    """With one change at a time at probability 1 (the others at their no-op setting where they have one),
    noise alone changes the background, and contrast alone keeps each image's mean."""
    quiet = dict(max_blur=0.3, min_res=20, min_contrast=1.0, max_warp=0.0)
    noisy = StyleAugment(RobustClassificationConfig(style_p=1.0, **quiet, max_noise=0.4))
    out = noisy(batch.clone(), torch.Generator().manual_seed(0))
    background = batch == 0
    assert out[background].mean() > 0.02  # noise lifts some of the black background


def test_config_refuses_bad_values():
    with pytest.raises(ConfigError, match="style_p"):
        replace(RobustClassificationConfig(), style_p=1.5).validate()
    with pytest.raises(ConfigError, match="min_res"):
        replace(RobustClassificationConfig(), min_res=1).validate()
    with pytest.raises(ConfigError, match="min_contrast"):
        replace(RobustClassificationConfig(), min_contrast=0.0).validate()
    with pytest.raises(ConfigError, match="max_noise"):
        replace(RobustClassificationConfig(), max_noise=-0.1).validate()


def test_preset_holds_out_the_temperature_split():
    config = get_preset(NAME).config
    assert isinstance(config, RobustClassificationConfig) and config.val_per_class == 50


@pytest.mark.skipif(not (IN_TREE_HUB / NAME / "config.json").is_file(), reason="weight not published")
def test_published_weight_applies_a_held_out_temperature():
    w = json.loads((IN_TREE_HUB / NAME / "config.json").read_text())["weights"]
    assert w["calibration"]["held_out"] and w["temperature"] == w["calibration"]["temperature"]
    assert w["calibration"]["ece_calibrated"] < w["calibration"]["ece"]
    assert w["recipe_config"]["val_per_class"] == 50
