"""Corruption robustness and calibration of classifiers: the suite (`zoo.data.corruptions`), the metrics
(`zoo.metrics.calibration`), the measurement (`zoo.reliability`), the cards, and the published records
re-measured from the shipped weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zoo.data.corruptions import CORRUPTIONS, MIDDLE_SEVERITY, SEVERITIES, corrupt, corrupted_split
from zoo.errors import ConfigError
from zoo.metrics.calibration import expected_calibration_error, fit_temperature, nll
from zoo.registry import IN_TREE_HUB, list_models

# The published classifiers whose cards record robustness (`zoo robustness NAME --record`).
RECORDED = [
    n
    for n in list_models(pretrained=True)
    if (IN_TREE_HUB / n / "config.json").is_file()
    and "robustness" in json.loads((IN_TREE_HUB / n / "config.json").read_text())["weights"]
]
# The bars: every published classifier >= 85% on each corruption at the middle severity, and the
# best weight >= 95% mean corruption accuracy.
SINGLE_BAR, MEAN_BAR = 0.85, 0.95
# Bars a published weight is measured to miss (the card shows it): checked to be missed still, so an entry
# must go when the weight improves; a bar is never dropped silently. 2026-11-30, middle severity, full split.
KNOWN_MISSES: dict[str, str] = {
    # Each value: the corruptions below the bar at severity 2. Trained with a small random affine map (or
    # FixMatch's weak/strong pair), blur, lower resolution, faint ink and noise move their inputs far from
    # anything seen, batch-normalised CNNs the most. resnet8_small.mnist_robust (recipes.robust_classification)
    # is the recipe that closes the gap (mlp, cnn_dws and lstm.mnist are trained by it now; FixMatch's
    # strong views carry noise now); retraining these
    # with it would change weights other recipes and README tables cite (cnn.mnist and resnet8_small.mnist
    # start or measure other weights; the semi-supervised and noisy-label ones are their recipes' results).
    "cnn.mnist": "contrast 10.1%, noise 10.4%, lowres 21.1%, blur 68.7%",
    "cnn.mnist100_byol_finetune": "noise 10.9%, contrast 39.0%, rotate 74.3%, lowres 75.3%, scale 84.3%, erode 84.6%",
    "cnn.mnist100_meanteacher": "noise 10.5%, contrast 11.0%, lowres 43.9%, blur 77.6%, rotate 81.1%, erode 81.4%, scale 81.5%",
    "cnn.mnist100_moco_finetune": "noise 10.0%, contrast 27.9%, lowres 60.4%, rotate 75.5%, scale 84.7%",
    "cnn.mnist100_pseudolabel": "contrast 10.0%, noise 10.0%, lowres 31.6%, blur 73.9%, rotate 81.4%, scale 82.6%, erode 84.2%",
    "cnn.mnist100_pseudolabel_draw1": "contrast 10.1%, noise 10.6%, lowres 43.3%, erode 76.1%, scale 77.2%, blur 79.2%, rotate 80.6%",
    "cnn.mnist100_pseudolabel_draw2": "noise 10.0%, contrast 10.1%, lowres 18.0%, blur 66.8%, scale 80.3%, rotate 80.4%, erode 84.5%",
    "cnn.mnist100_simclr_finetune": "noise 10.0%, contrast 36.8%, lowres 64.9%, rotate 74.5%, scale 82.1%, erode 83.9%",
    "cnn.mnist100_supervised": "noise 10.0%, contrast 10.5%, lowres 36.2%, rotate 68.1%, blur 68.7%, erode 71.5%, scale 73.2%, elastic 82.1%",
    "cnn.mnist100_supervised_draw1": "contrast 12.9%, noise 34.3%, lowres 40.9%, erode 65.8%, rotate 71.5%, scale 73.5%, blur 75.3%, dilate 80.7%, elastic 82.0%",
    "cnn.mnist100_supervised_draw2": "contrast 10.0%, noise 10.0%, lowres 13.4%, blur 50.8%, rotate 69.8%, scale 75.5%, erode 76.1%, dilate 83.0%, elastic 84.8%",
    "cnn.mnist_pairs40_ce": "noise 10.0%, contrast 10.6%, lowres 34.2%, blur 75.6%, erode 79.1%, rotate 81.8%, shift 81.9%, scale 82.4%, elastic 83.3%",
    "cnn.mnist_pairs40_gce": "contrast 13.5%, noise 19.5%, lowres 24.0%, blur 58.1%, erode 78.8%, rotate 79.6%, shift 81.7%, scale 81.8%, elastic 82.3%",
    "cnn.mnist_sym40_ce": "contrast 10.2%, noise 12.8%, lowres 18.7%, blur 57.2%, erode 78.8%",
    "cnn.mnist_sym40_gce": "contrast 10.0%, lowres 10.1%, noise 10.1%, blur 40.4%",
    "resnet8_small.mnist": "noise 14.7%, contrast 15.7%, lowres 53.7%",
}


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    from zoo.data import load_dataset

    return load_dataset("mnist_5k").test.images[::10].numpy()  # 10 of each digit


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruptions_are_deterministic_and_grow_with_severity(digits, name):
    changes = []
    for severity in SEVERITIES:
        out = corrupt(digits, name, severity)
        assert out.shape == digits.shape and out.dtype == np.uint8
        assert np.array_equal(out, corrupt(digits, name, severity)), "same inputs, same seed: same images"
        changes.append(np.abs(out.astype(float) - digits).mean())
    assert changes[0] > 0
    assert changes == sorted(changes), f"{name}: mean change {changes} must grow with severity"
    other_seed = corrupt(digits, name, MIDDLE_SEVERITY, seed=1)
    assert other_seed.shape == digits.shape  # seeds only move the random draws


def test_corruptions_take_both_layouts_and_refuse_bad_input(digits):
    assert np.array_equal(corrupt(digits[:, 0], "blur")[:, None], corrupt(digits, "blur"))
    with pytest.raises(ConfigError, match="unknown corruption 'fog'"):
        corrupt(digits, "fog")
    with pytest.raises(ConfigError, match="severity 4"):
        corrupt(digits, "blur", 4)
    with pytest.raises(ConfigError, match="uint8"):
        corrupt(digits.astype(np.float32), "blur")
    with pytest.raises(ConfigError, match="grey images"):
        corrupt(np.repeat(digits, 3, axis=1), "blur")


def test_corrupted_split_is_a_labelled_subset():
    split = corrupted_split("mnist_5k", "lowres", 3, step=10)
    assert len(split) == 100 and np.bincount(split.labels.numpy()).tolist() == [10] * 10


def test_expected_calibration_error_by_hand():
    # Two bins used: confidence 0.9 (right 2 of 3 -> gap 0.9 - 0.667) and 0.6 (right 1 of 1 -> gap 0.4).
    p_high, p_low = np.log([0.9, 0.1]), np.log([0.6, 0.4])
    logits = np.array([p_high, p_high, p_high, p_low])
    labels = np.array([0, 0, 1, 0])
    expected = (3 * abs(2 / 3 - 0.9) + 1 * abs(1.0 - 0.6)) / 4
    assert expected_calibration_error(logits, labels) == pytest.approx(expected)
    with pytest.raises(ValueError, match="labels must be in"):
        expected_calibration_error(logits, np.array([0, 0, 2, 0]))


def test_temperature_recovers_the_temperature_labels_were_drawn_at():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (20000, 10))
    true_t = 2.5
    probs = np.exp(logits / true_t) / np.exp(logits / true_t).sum(1, keepdims=True)
    labels = (probs.cumsum(1) > rng.random((len(probs), 1))).argmax(1)
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(true_t, rel=0.05)
    assert nll(logits, labels, t) < nll(logits, labels, 1.0)
    assert expected_calibration_error(logits, labels, t) < expected_calibration_error(logits, labels)


def test_temperature_scales_probabilities_not_predictions():
    from zoo.registry import get_weights
    from zoo.tasks import get_task

    task = get_task("image-classification")
    meta = get_weights("cnn.mnist").replace(task_fields={"temperature": 0.5})
    logits = {"logits": np.array([[2.0, 1.0, 0.0]])}
    (sharp,) = task.postprocess(logits, meta)
    (plain,) = task.postprocess(logits, meta.replace(task_fields={}))
    assert sharp.index == plain.index == 0
    assert sharp.probability == pytest.approx(np.exp(4) / (np.exp(4) + np.exp(2) + 1))
    assert plain.probability == pytest.approx(np.exp(2) / (np.exp(2) + np.exp(1) + 1))
    with pytest.raises(Exception, match="temperature"):
        meta.replace(task_fields={"temperature": "hot"})


def test_card_shows_robustness_and_calibration():
    from zoo.card import render_model_card

    name = RECORDED[0] if RECORDED else pytest.skip("no card records robustness")
    config = json.loads((IN_TREE_HUB / name / "config.json").read_text())
    card = render_model_card(config)
    record = config["weights"]["robustness"]
    assert "## Robustness" in card and "## Calibration" in card
    assert (
        f"| {record['clean']:.2%} | {record['mean']:.2%} | {record['worst']} {record['worst_acc']:.2%} |"
        in card
    )
    assert all(f"| {c} |" in card for c in CORRUPTIONS)
    assert card == (IN_TREE_HUB / name / "README.md").read_text(), "the shipped card is the rendered one"


def test_every_published_digit_classifier_records_robustness():
    configs = {p.parent.name: json.loads(p.read_text())["weights"] for p in IN_TREE_HUB.glob("*/config.json")}
    classifiers = {
        n
        for n, w in configs.items()
        if w["task"] == "image-classification" and w.get("dataset") == "mnist_5k"
    }
    assert len(classifiers) >= 23 and classifiers == set(RECORDED)


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_robustness_and_calibration_are_measured(name):
    """The card's quick-subset robustness (every 10th test image, 100 images x 30 corruptions) comes back
    within one image's worth (1/100) from the shipped weight; its calibration in full (1,500 images, one
    forward pass). The full robustness record is `zoo robustness NAME`'s to re-measure."""
    from zoo.reliability import QUICK_STEP, assess

    report = assess(name, step=QUICK_STEP)
    assert {row[0] for row in report.rows} == {"clean", "mean", "worst_acc"}, report.summary()
    assert report.ok, report.summary()
    recorded = report.recorded
    assert report.robustness["worst"] == recorded["quick"]["worst"] or report.robustness[
        "worst_acc"
    ] == pytest.approx(recorded["quick"]["worst_acc"], abs=0.011)
    cal = json.loads((IN_TREE_HUB / name / "config.json").read_text())["weights"]["calibration"]
    for key in ("temperature", "ece", "ece_calibrated", "nll", "nll_calibrated"):
        assert report.calibration[key] == pytest.approx(cal[key], abs=2e-3), key
    if cal["held_out"]:  # one fitted on seen images may well make it worse: that is why it is not applied
        assert cal["ece_calibrated"] <= cal["ece"], "the applied temperature must not make the test ECE worse"


@pytest.mark.parametrize("name", RECORDED)
def test_robustness_bars(name):
    record = json.loads((IN_TREE_HUB / name / "config.json").read_text())["weights"]["robustness"]
    middle = {c: accs[SEVERITIES.index(MIDDLE_SEVERITY)] for c, accs in record["per_corruption"].items()}
    worst = min(middle.values())
    if name in KNOWN_MISSES:
        assert worst < SINGLE_BAR, f"{name} now meets the {SINGLE_BAR:.0%} bar: drop it from KNOWN_MISSES"
    else:
        assert worst >= SINGLE_BAR, (
            f"{name}: {min(middle, key=middle.get)} {worst:.1%} below {SINGLE_BAR:.0%}"
        )


def test_the_best_weight_meets_the_mean_corruption_bar():
    records = {
        n: json.loads((IN_TREE_HUB / n / "config.json").read_text())["weights"]["robustness"]
        for n in RECORDED
    }
    best = max(records, key=lambda n: records[n]["mean"])
    assert records[best]["mean"] >= MEAN_BAR, f"best {best}: mean corruption {records[best]['mean']:.1%}"


def test_cli_measures_a_subset_and_refuses_non_classifiers(capsys):
    from zoo.cli import main

    name = "cnn.mnist"
    assert main(["robustness", name, "--step", "10", "--no-calibration"]) == 0
    out = capsys.readouterr().out
    assert f"{name}: 100 test images" in out and "worst at severity 2" in out and "DIFFERS" not in out
    assert main(["robustness", "autoencoder.mnist", "--step", "10"]) == 2
    assert "robustness is measured for classifiers" in capsys.readouterr().err


def test_verify_re_measures_the_quick_robustness_record():
    from zoo.evaluation import verify

    report = verify("cnn.mnist", limit=100)
    rows = [row for row in report.rows if row[0].startswith("corrupted_")]
    assert {row[0] for row in rows} == {"corrupted_clean", "corrupted_mean", "corrupted_worst_acc"}
    # The first 100 clean items are not the card's split (verify says so); the quick subset is the card's.
    assert all(row[4] for row in rows), report.summary()


def test_robustness_table_lists_every_recorded_weight():
    from recipes.report import robustness_table

    table = robustness_table()
    assert all(f"`{name}`" in table for name in RECORDED)
    assert "not applied: fitted on seen images" in table  # the five weights trained on all of train


def test_both_predict_paths_apply_the_weights_temperature(tmp_path, capsys):
    """`zoo predict` (PyTorch) and the exported file (onnxruntime, torch-free) give softmax(logits / T)."""
    from pathlib import Path

    import torch

    import zoo
    from export.onnx import to_onnx
    from export.runtime import OnnxModel
    from zoo.cli import main

    name = "resnet8_small.mnist_robust"
    if not (IN_TREE_HUB / name / "config.json").is_file():
        pytest.skip(f"{name} is not published")
    digit = sorted((Path(__file__).resolve().parents[1] / "recipes" / "samples").glob("5_*.png"))[0]
    model = zoo.create_model(name, pretrained=True).eval()
    meta = model.pretrained_weights
    assert meta.temperature != 1.0
    task = meta.task_object
    from zoo.preprocess import load_image

    x = task.preprocess(load_image(digit, 1), meta)
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).double().numpy()[0]
    want = np.exp(logits / meta.temperature - (logits / meta.temperature).max())
    want /= want.sum()
    assert main(["predict", name, str(digit), "--topk", "1"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == f"{digit}: 5 {want.max():.3f}", line
    (result,) = OnnxModel(to_onnx(model, tmp_path / "robust.onnx").path).predict([str(digit)])
    assert result.label == "5" and result.probability == pytest.approx(want.max(), abs=1e-4)
