"""`SampleQuality` with the zoo's published MNIST classifier on real digits: the real-data floor, digit
shares, the conditional agreement, the Inception Score and the memorisation check."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.data import load_dataset
from zoo.metrics import SampleQuality


@pytest.fixture(scope="module")
def digits():
    splits = load_dataset("mnist_5k")
    return splits.train, splits.test


@pytest.fixture(scope="module")
def quality(digits):
    train, test = digits
    return SampleQuality(test.images, train.images, floor_samples=500)


def test_real_digits_score_at_the_floor_with_balanced_shares(quality, digits):
    _, test = digits
    # Unseen real digits (the test split itself against itself would be exactly 0): a random half of
    # the test digits against all of them, so the FID is the small-set floor, finite and small.
    pick = torch.randperm(len(test.images), generator=torch.Generator().manual_seed(0))[:500]
    out = quality(test.images[pick], test.labels[pick])
    assert math.isfinite(out["fid_floor"]) and 0 < out["fid_floor"] < 20
    assert out["fid"] < 2 * out["fid_floor"]
    assert out["shares_ok"] == 1.0 and 0.07 <= out["share_min"] <= out["share_max"] <= 0.13
    assert out["label_agreement"] > 0.97  # the classifier agrees with the true labels
    assert 5 < out["inception_score"] <= 10 and out["inception_score_real"] > 5
    # Unseen digits: as far from the training set as unseen digits are; hardly any near copy.
    assert 0.8 < out["nn_ratio"] < 1.2 and out["near_copy_share"] < 0.05


def test_collapsed_samples_fail_the_shares_and_score_badly(quality, digits):
    _, test = digits
    ones = test.images[test.labels == 1].repeat(3, 1, 1, 1)  # the right pictures, one class only
    out = quality(ones)
    assert out["share_1"] > 0.95 and out["shares_ok"] == 0.0 and out["share_min"] == 0.0
    assert out["inception_score"] < 1.5 and out["fid"] > 10 * out["fid_floor"]
    assert "label_agreement" not in out
    wrong = quality(ones, torch.full((len(ones),), 7))
    assert wrong["label_agreement"] < 0.05


def test_copies_of_training_digits_are_flagged(quality, digits):
    train, _ = digits
    copies = train.images[:300].float() / 255
    out = quality(copies)
    assert out["near_copy_share"] == 1.0 and out["nn_ratio"] < 0.01


def test_bad_sample_batches_are_refused(quality):
    with pytest.raises(ValueError, match="samples must be"):
        quality(torch.rand(4, 3, 28, 28))
    with pytest.raises(ValueError, match="at least 2"):
        quality(torch.rand(1, 1, 28, 28))
