"""Noisy tags: the corruption is exact and reproducible, the robust loss is what it says, and the published
weights meet (or are recorded to miss) the issue's bar against the clean-label cnn.mnist."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import zoo
from recipes.noisy_labels import PAIR_FLIPS, NoisyLabelConfig, corrupt_labels
from zoo.errors import ConfigError
from zoo.registry import IN_TREE_HUB

LABELS = np.repeat(np.arange(10), 400)


def test_symmetric_noise_flips_exactly_the_rate_to_other_classes():
    noisy = corrupt_labels(LABELS, "symmetric", 0.4, seed=0)
    for c in range(10):
        assert (noisy[c == LABELS] != c).sum() == 160  # exactly 40% of every class
    assert np.array_equal(noisy, corrupt_labels(LABELS, "symmetric", 0.4, seed=0))
    assert not np.array_equal(noisy, corrupt_labels(LABELS, "symmetric", 0.4, seed=1))
    # "Symmetric": a wrong label is any of the 9 others, about equally often.
    wrong = noisy[(LABELS == 0) & (noisy != 0)]
    assert set(np.unique(wrong)) == set(range(1, 10))


def test_pair_noise_flips_look_alikes_only():
    noisy = corrupt_labels(LABELS, "pairs", 0.4, seed=0)
    for c in range(10):
        changed = noisy[(c == LABELS) & (noisy != LABELS)]
        if c in PAIR_FLIPS:
            assert len(changed) == 160 and (changed == PAIR_FLIPS[c]).all()
        else:
            assert len(changed) == 0


def test_config_and_noise_errors_say_what_is_expected():
    with pytest.raises(ConfigError, match="noise_rate"):
        replace(NoisyLabelConfig(), noise_rate=1.0).validate()
    with pytest.raises(ConfigError, match="'q'"):
        replace(NoisyLabelConfig(), q=0.0).validate()
    with pytest.raises(ConfigError, match="'symmetric' or 'pairs'"):
        corrupt_labels(LABELS, "asymmetric", 0.4, 0)


PUBLISHED = {
    n: zoo.get_weights(n)
    for n in zoo.list_models(pretrained=True)
    if (IN_TREE_HUB / n / "config.json").is_file()
    and n.startswith("cnn.mnist_")
    and n.endswith(("_ce", "_gce"))
}
# Bars a published weight is measured to miss (reported in the issue): checked to be missed still.
KNOWN_MISSES: set[str] = set()  # none: 97.9% against clean 98.8% (2026-11-30)


@pytest.mark.skipif(not PUBLISHED, reason="no published noisy-label weight")
def test_robust_loss_meets_the_issue_bar_at_40_percent_symmetric_noise():
    clean = zoo.get_weights("cnn.mnist").metrics["acc"]
    gce, ce = PUBLISHED["cnn.mnist_sym40_gce"].metrics["acc"], PUBLISHED["cnn.mnist_sym40_ce"].metrics["acc"]
    met = gce >= clean - 0.015
    if "cnn.mnist_sym40_gce" in KNOWN_MISSES:
        assert not met, "cnn.mnist_sym40_gce now meets the bar: drop it from KNOWN_MISSES"
    else:
        assert met, f"generalized cross-entropy {gce:.1%} against clean labels' {clean:.1%} (ce: {ce:.1%})"
