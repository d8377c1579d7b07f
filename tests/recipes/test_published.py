"""The published weights in hub/: reproducible by a named recipe, recorded metrics re-measured, quality bars."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import zoo
from recipes.config import config_from_dict, config_to_dict
from recipes.engine import Trainer, get_preset
from zoo.registry import IN_TREE_HUB, list_models

SAMPLES = Path(__file__).resolve().parents[2] / "recipes" / "samples"
# The list of first weights and the quality each must reach on the MNIST 5k test split.
EXPECTED = {
    "mlp.mnist": ("acc", 0.97),
    "cnn.mnist": ("acc", 0.985),
    "cnn_dws.mnist": ("acc", 0.98),
    "resnet8_small.mnist": ("acc", 0.99),
    "lstm.mnist": ("acc", 0.97),
    "autoencoder.mnist": ("psnr", 18.0),
}
# The bars for the digit-scene detectors (COCOeval on the 1000 test scenes), by architecture:
# AP50 and AP@[.5:.95] of boxes (of masks for instance models' "map").
DETECTION_BARS = {
    "fasterrcnn_resnet8_small": (("map_50", 0.95), ("map", 0.65)),
    "retinanet_resnet8_small": (("map_50", 0.93), ("map", 0.60)),
    "maskrcnn_resnet8_small": (
        ("bbox_map_50", 0.95),
        ("bbox_map", 0.65),
        ("map", 0.55),
    ),  # boxes as Faster R-CNN
    "instance_unet_resnet8_small": (("map", 0.45),),
}
# Bars a published weight is measured to miss (reported in its issue and card): checked to be missed still,
# so the entry must go when a better weight lands; a bar is never dropped silently.
KNOWN_MISSES: set[tuple[str, str]] = set()
SUBSET = 100  # test scenes a detector is re-measured on here (see below)
PUBLISHED = [n for n in list_models(pretrained=True) if (IN_TREE_HUB / n / "config.json").is_file()]


def test_the_first_weights_are_published():
    assert set(EXPECTED) <= set(PUBLISHED)


@pytest.mark.parametrize("name", PUBLISHED)
def test_weight_is_reproducible_and_its_metrics_are_measured(name):
    model = zoo.create_model(name, pretrained=True).eval()  # sha256 verified on load
    meta = model.pretrained_weights
    preset = get_preset(meta.recipe)  # the recipe name resolves
    config = config_from_dict(preset.objective.Config, meta.recipe_config)
    assert config_to_dict(config) == meta.recipe_config
    for key in ("seed", "commit", "train_time_s", "machine", "torch", "epochs"):
        assert key in meta.training, f"{name}: training record lacks {key}"
    # MNIST 5k or the digit scenes: either way the test images are the last 100 of each digit; the photos
    # (image-to-image) are split by photograph.
    scenes = ("mnist_5k", "digit_scenes_64", "digit_scenes_128", "digit_videos")
    digits = meta.dataset in scenes and "last 100 images of each digit" in meta.split
    photos = meta.dataset == "photos_128" and meta.split.startswith("by photo: test = every 128x128 patch")
    assert digits or photos
    assert meta.papers and meta.license
    if meta.task_object.measured_on_samples:
        # Generators: the recipe's evaluation (its sampler and seeds) on the published weights, drawing only
        # the first 250 of its samples (sampling takes minutes: `zoo verify NAME` draws all 1000). Their FID
        # is the card's fid_first250, and every number that does not depend on the samples comes back.
        from zoo.evaluation import verify
        from zoo.metrics.sample_quality import SAMPLE_METRICS

        report = verify(name, limit=250)
        assert report.ok, report.summary()
        independent = set(meta.metrics) - SAMPLE_METRICS - {"train_time_s"}
        if "quick_likelihood" in meta.recipe_config:
            # Likelihoods estimated by sampling (the VAE's IWAE-1000) come back on the fixed test subset
            # (*_sub100, recorded beside the full split's); the full split and the train gap are zoo verify's.
            independent -= {k for k in independent if k.startswith(("nelbo_", "nll_", "train_", "gap_"))}
            independent |= {"nll_nats_sub100", "nelbo_nats_sub100"}
        assert {row[0] for row in report.rows} == independent | {"fid_first250"}
    elif meta.task_object.batched_images:
        # Re-measure on the test split with the recipe's own evaluation: the card's numbers are measurements.
        trainer = Trainer(preset.objective(config)).setup()
        again = trainer.evaluate("test", models={"model": model})
        # Plus what the objective measured itself at publish (a self-supervised encoder's label sweep).
        again |= trainer.objective.publish_metrics(model, trainer.data)
        recorded = {k: v for k, v in meta.metrics.items() if k != "train_time_s"}
        assert again == pytest.approx(recorded, rel=1e-4, abs=1e-4)
    else:
        # Detectors run one image per call: the full re-measure (1000 scenes, COCOeval) is `zoo verify NAME`'s
        # job. Here both evaluations run on the first SUBSET test scenes: the recipe's own (eval_limit) and
        # zoo verify's (the task's hooks), which must give the same numbers; the card is the full split.
        from zoo.evaluation import verify

        trainer = Trainer(preset.objective(replace(config, eval_limit=SUBSET))).setup()
        again = trainer.evaluate("test", models={"model": model})
        report = verify(name, limit=SUBSET)
        assert report.items == SUBSET and set(again) <= set(report.measured)
        assert report.measured == pytest.approx({**report.measured, **again}, rel=1e-4, abs=1e-4)
        assert set(meta.metrics) <= set(report.measured) | {"train_time_s"}, (
            "card metrics verify cannot measure"
        )
    if name in EXPECTED:
        metric, bar = EXPECTED[name]
        assert meta.metrics[metric] >= bar, f"{name}: {metric} {meta.metrics[metric]} below {bar}"
    for metric, bar in DETECTION_BARS.get(meta.arch, ()):
        # The bars, on the card's full-split COCOeval numbers (which `zoo verify NAME` re-measures).
        if (meta.arch, metric) in KNOWN_MISSES:
            assert meta.metrics[metric] < bar, f"{name}: {metric} now meets {bar}: drop it from KNOWN_MISSES"
            continue
        assert meta.metrics[metric] >= bar, f"{name}: {metric} {meta.metrics[metric]} below {bar}"


def test_sample_digits_are_test_split_images():
    from PIL import Image

    from zoo.data.images import mnist_5k, mnist_5k_arrays

    images, labels = mnist_5k_arrays()
    test = {bytes(x.numpy()) for x in mnist_5k().test.images}
    files = sorted(SAMPLES.glob("*.png"))
    assert len(files) == 10
    for path in files:
        row = int(path.stem.split("_row")[1])
        pixels = np.asarray(Image.open(path))
        assert np.array_equal(pixels, images[row, 0]) and int(labels[row]) == int(path.stem[0])
        assert bytes(pixels[None]) in test


@pytest.mark.skipif("resnet8_small.mnist" not in PUBLISHED, reason="weight not published")
def test_readme_main_job_predicts_the_bundled_digits(capsys):
    from zoo.cli import main

    files = sorted(str(p) for p in SAMPLES.glob("*.png"))
    assert main(["predict", "resnet8_small.mnist", *files, "--topk", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 10
    for line in lines:
        path, prediction = line.split(": ")
        assert prediction.split()[0] == Path(path).name[0], line
