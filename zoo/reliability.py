"""How far a classifier weight can be trusted off its test split: corruption robustness and calibration.

    zoo robustness cnn.mnist                 # the full suite, compared with the card's record
    zoo robustness cnn.mnist --step 10       # the card's quick subset (every 10th test image)
    zoo robustness cnn.mnist --record        # measure and write into the in-tree weight's card

`measure_robustness` runs a network over the weight's test split corrupted by every corruption of
`zoo.data.corruptions` at every severity: clean accuracy, the mean corruption accuracy (over corruptions
and severities, as MNIST-C reports it) and the worst corruption at the middle severity. `measure_calibration`
fits a temperature on a validation split carved from train (`zoo.data`'s ``val_per_class``) and reports the
expected calibration error on the test split before and after. Both take any way to run the network (`run`:
preprocessed inputs -> logits), like `zoo.evaluation.measure`, and are recorded in a weight's
``robustness`` / ``calibration`` / ``temperature`` fields (`zoo.tasks.classification`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo.errors import ConfigError

__all__ = [
    "CALIBRATION_VAL_PER_CLASS",
    "QUICK_STEP",
    "Assessment",
    "assess",
    "corrupted_test_split",
    "measure_calibration",
    "measure_robustness",
    "record_assessment",
]

QUICK_STEP = 10  # the card's quick subset: every 10th test image (10 per digit on MNIST 5k's test split)
# The validation split a temperature is fitted on: the last 50 train images of each digit (zoo.data's
# val_per_class carving). Held out only for a weight trained with that val_per_class; the card says which.
CALIBRATION_VAL_PER_CLASS = 50
BATCH = 500

Run = Callable[[np.ndarray], np.ndarray]  # preprocessed (N, C, H, W) float32 inputs -> (N, classes) logits


def _inputs(meta: Any, images: np.ndarray) -> np.ndarray:
    """(N, 1, H, W) uint8 -> the network's inputs, preprocessed by the weight's task as `zoo predict` does."""
    task = meta.task_object
    inputs, _ = task.evaluation_pairs(images.transpose(0, 2, 3, 1), None, meta)
    return inputs


def _logits(run: Run, inputs: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [np.asarray(run(inputs[i : i + BATCH]), np.float64) for i in range(0, len(inputs), BATCH)]
    )


def _accuracy(run: Run, meta: Any, images: np.ndarray, labels: np.ndarray) -> float:
    return float((_logits(run, _inputs(meta, images)).argmax(1) == labels).mean())


@functools.lru_cache(maxsize=4)
def corrupted_test_split(
    dataset: str, step: int = 1
) -> tuple[np.ndarray, np.ndarray, dict[tuple[str, int], np.ndarray]]:
    """(images, labels, {(corruption, severity): corrupted images}) of a dataset's test split (every
    `step`-th image), as uint8 (N, 1, H, W), read-only. The copies are a pure function of the split and the
    suite's seed, so one process makes them once for every weight it measures."""
    from zoo.data import load_dataset
    from zoo.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt, subset

    test = subset(load_dataset(dataset).test, step)
    images, labels = test.images.numpy(), test.labels.numpy()
    if images.ndim != 4 or images.shape[1] != 1:
        raise ConfigError(f"the corruption suite is for grey digits; {dataset} has images {images.shape}")
    copies = {(name, s): corrupt(images, name, s) for name in CORRUPTIONS for s in SEVERITIES}
    for array in (images, labels, *copies.values()):
        array.setflags(write=False)
    return images, labels, copies


def measure_robustness(run: Run, meta: Any, step: int = 1) -> dict[str, Any]:
    """Accuracy of `run` on the weight's test split (every `step`-th image), clean and corrupted.

    Returns the record a card keeps: ``clean``, ``mean`` (over every corruption and severity), ``worst``
    and ``worst_acc`` (the lowest corruption at the middle severity), ``per_corruption`` (name -> accuracy
    at severities 1, 2, 3), the suite's name, and the number of images.
    """
    from zoo.data.corruptions import CORRUPTIONS, MIDDLE_SEVERITY, SEVERITIES, SUITE

    if not meta.dataset:
        raise ConfigError(f"{meta.name} records no dataset, so there is no test split to corrupt")
    images, labels, copies = corrupted_test_split(meta.dataset, step)
    per = {
        name: [round(_accuracy(run, meta, copies[name, s], labels), 6) for s in SEVERITIES]
        for name in CORRUPTIONS
    }
    middle = {name: accs[SEVERITIES.index(MIDDLE_SEVERITY)] for name, accs in per.items()}
    worst = min(middle, key=middle.get)
    return {
        "suite": SUITE,
        "images": len(labels),
        "clean": round(_accuracy(run, meta, images, labels), 6),
        "mean": round(float(np.mean([a for accs in per.values() for a in accs])), 6),
        "worst": worst,
        "worst_acc": middle[worst],
        "per_corruption": per,
    }


def measure_calibration(
    run: Run, meta: Any, val: Any | None = None, held_out: bool = False
) -> dict[str, Any]:
    """Fit a temperature on a validation split and report ECE and NLL on the test split before and after.

    `val` is an `InMemoryImages` split; by default the last `CALIBRATION_VAL_PER_CLASS` train images of each
    class of the weight's dataset. Say with `held_out` whether the weight never trained on it: a weight
    trained on all of train fits its temperature on images it has seen, which the record states.
    """
    from zoo.data import load_dataset
    from zoo.metrics.calibration import BINS, expected_calibration_error, fit_temperature, nll

    if val is None:
        val = load_dataset(meta.dataset, val_per_class=CALIBRATION_VAL_PER_CLASS).val
    test = load_dataset(meta.dataset).test
    val_logits = _logits(run, _inputs(meta, val.images.numpy()))
    temperature = fit_temperature(val_logits, val.labels.numpy())
    logits, labels = _logits(run, _inputs(meta, test.images.numpy())), test.labels.numpy()
    return {
        "temperature": round(temperature, 4),
        "ece": round(expected_calibration_error(logits, labels), 6),
        "ece_calibrated": round(expected_calibration_error(logits, labels, round(temperature, 4)), 6),
        "nll": round(nll(logits, labels), 6),
        "nll_calibrated": round(nll(logits, labels, round(temperature, 4)), 6),
        "bins": BINS,
        "fit_on": f"{len(val)} validation images carved from train (the last {len(val) // 10} of each digit)"
        + ("" if held_out else "; not held out: they belong to the train split the weight was trained from"),
        "held_out": held_out,
    }


@dataclass
class Assessment:
    """A weight's robustness and calibration, measured now, beside what its card records."""

    name: str
    robustness: dict[str, Any]
    calibration: dict[str, Any] | None = None
    recorded: dict[str, Any] = field(default_factory=dict)  # the card's robustness record, if any
    rows: list[tuple[str, float, float, float, bool]] = field(default_factory=list)  # key, card, now, tol, ok

    @property
    def ok(self) -> bool:
        return all(row[4] for row in self.rows)

    def summary(self) -> str:
        r = self.robustness
        lines = [
            f"{self.name}: {r['images']} test images, suite {r['suite']}",
            f"  clean {r['clean']:.2%}  mean corruption {r['mean']:.2%}  "
            f"worst at severity 2: {r['worst']} {r['worst_acc']:.2%}",
            "  "
            + "  ".join(f"{k} {'/'.join(f'{a:.1%}' for a in v)}" for k, v in r["per_corruption"].items()),
        ]
        if self.calibration:
            c = self.calibration
            lines.append(
                f"  ECE {c['ece']:.4f} -> {c['ece_calibrated']:.4f} at temperature {c['temperature']:.3f} "
                f"(NLL {c['nll']:.4f} -> {c['nll_calibrated']:.4f})"
            )
        lines += [
            f"  {key:<10} card {card:.6g}  measured {now:.6g}  (tolerance {tol:.2g}) {'ok' if ok else 'DIFFERS'}"
            for key, card, now, tol, ok in self.rows
        ]
        if self.recorded and not self.rows:
            lines.append("  the card's record is of another subset or suite: nothing compared")
        return "\n".join(lines)


def compare_robustness(measured: Mapping[str, Any], recorded: Mapping[str, Any]) -> list[tuple]:
    """Rows for clean, mean and worst_acc where the card measured the same suite on as many images (the
    card's full record, or its ``quick`` subset record). Tolerance: one image's worth (1/N) plus 1e-6."""
    candidates = [recorded, recorded.get("quick") or {}]
    same = next(
        (
            c
            for c in candidates
            if c.get("images") == measured["images"]
            and c.get("suite", recorded.get("suite")) == measured["suite"]
        ),
        None,
    )
    if not same:
        return []
    tol = 1.0 / measured["images"] + 1e-6
    return [
        (
            key,
            float(same[key]),
            float(measured[key]),
            tol,
            math.isfinite(measured[key]) and abs(measured[key] - same[key]) <= tol,
        )
        for key in ("clean", "mean", "worst_acc")
        if key in same
    ]


def torch_runner(model: Any) -> Run:
    """`run` for a published PyTorch classifier (eval mode, no grad): inputs -> logits as numpy."""
    import torch

    from zoo.models.base import named_outputs

    task = model.pretrained_weights.task_object

    @torch.no_grad()
    def run(x: np.ndarray) -> np.ndarray:
        out = named_outputs(model, model(torch.from_numpy(np.ascontiguousarray(x, np.float32))), task)
        return out["logits"] if "logits" in out else next(iter(out.values()))

    return run


def assess(name: str, step: int = 1, calibration: bool = True) -> Assessment:
    """Load a published classifier and measure its robustness (every `step`-th test image) and, unless
    told not to, its calibration; compared with its card's record where the card has one."""
    from zoo.factory import create_model

    model = create_model(name, pretrained=True).eval()
    meta = model.pretrained_weights
    if meta.task != "image-classification":
        raise ConfigError(f"{meta.name} is a '{meta.task}' weight; robustness is measured for classifiers")
    run = torch_runner(model)
    measured = measure_robustness(run, meta, step)
    recorded = dict(meta.robustness or {})
    report = Assessment(meta.name, measured, None, recorded, compare_robustness(measured, recorded))
    if calibration:
        held_out = int(meta.recipe_config.get("val_per_class", 0) or 0) == CALIBRATION_VAL_PER_CLASS
        report.calibration = measure_calibration(run, meta, held_out=held_out)
    return report


def record_assessment(name: str, folder: Any) -> Assessment:
    """Measure a weight's full robustness, its quick-subset robustness and its calibration, and write them
    (and the fitted temperature) into the weight folder's config.json; the card is re-rendered. The
    safetensors file is untouched, so the weight's sha256 stands."""
    from pathlib import Path

    from zoo.card import render_model_card
    from zoo.registry import clear_weights_cache
    from zoo.weights import CARD_NAME, CONFIG_NAME, atomic_write_bytes, read_config, write_json

    folder = Path(folder)
    report = assess(name)
    quick = assess(name, step=QUICK_STEP, calibration=False).robustness
    config = read_config(folder)
    robustness = dict(report.robustness)
    robustness["quick"] = {k: quick[k] for k in ("images", "clean", "mean", "worst", "worst_acc")}
    config["weights"]["robustness"] = robustness
    config["weights"]["calibration"] = report.calibration
    # Only a temperature fitted on images the weight never trained on is applied: one fitted on seen
    # images learns the network's confidence on its training set (lstm.mnist: T = 0.05, test NLL 0.17 ->
    # 0.97), so such a weight keeps T = 1 and its card says why.
    config["weights"]["temperature"] = (
        report.calibration["temperature"] if report.calibration["held_out"] else 1.0
    )
    write_json(folder / CONFIG_NAME, config)
    atomic_write_bytes(folder / CARD_NAME, render_model_card(config).encode())
    clear_weights_cache()
    return report
