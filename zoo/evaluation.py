"""Re-measure a weight on the test split it records, with its task's metrics: ``zoo verify NAME``.

A number in a model card is a measurement; this is how anyone measures it again. The split is the one
the weight names (``Weights.dataset``, carved as ``Weights.split`` says, through `zoo.data`), the inputs
are preprocessed by the weight's task exactly as ``zoo predict`` and the ONNX runtime do, and the metrics
are the task's (`zoo.tasks.Task.metrics`), accumulated over the whole split. `measure` takes any way to
run the network, so the export's test-split check (`export.verify.verify_onnx`) is this same code with
onnxruntime in place of PyTorch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zoo.errors import ConfigError

__all__ = [
    "VerifyReport",
    "compare",
    "concatenate_outputs",
    "evaluation_split",
    "measure",
    "run_batches",
    "verify",
]

BATCH = 250


def evaluation_split(meta: Any, limit: int | None = None) -> tuple[np.ndarray, Any]:
    """(model inputs, metric targets) of the weight's recorded test split (the first `limit` items).

    Items are taken in the split's own order; a `limit` is for quick checks (the full split is what the
    card reports). The task reads the split (`zoo.tasks.Task.evaluation_data`: class labels, semantic maps,
    per-image boxes and masks...) and preprocesses it (`zoo.tasks.Task.evaluation_pairs`).
    """
    if not meta.dataset:
        raise ConfigError(f"{meta.name} records no dataset, so there is no split to measure it on")
    from zoo.data import load_dataset

    test = load_dataset(meta.dataset).test
    count = len(test) if limit is None else min(limit, len(test))
    task = meta.task_object
    images, labels = task.evaluation_data(test, count, meta)
    return task.evaluation_pairs(images, labels, meta)


def run_batches(
    run: Callable[[np.ndarray], Mapping[str, np.ndarray]], inputs: np.ndarray
) -> Iterator[tuple[slice, Mapping[str, np.ndarray]]]:
    """`run` over `inputs` in the evaluation's batches (`BATCH` items): each batch's slice and outputs."""
    for start in range(0, len(inputs), BATCH):
        part = slice(start, start + BATCH)
        yield part, run(inputs[part])


def concatenate_outputs(batches: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Batches of named outputs -> each output over every item (empty for no batches)."""
    kept: dict[str, list[np.ndarray]] = {}
    for outputs in batches:
        for key, value in outputs.items():
            kept.setdefault(key, []).append(np.asarray(value))
    return {k: np.concatenate(v) for k, v in kept.items()}


def measure(
    run: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    meta: Any,
    inputs: np.ndarray,
    targets: Any,
    keep_outputs: bool = False,
    metrics_out: dict[str, Any] | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The task's metrics of `run` over (inputs, targets), in batches; optionally every output too, and the
    metric objects themselves into `metrics_out` (per-sample predictions, where a metric keeps them).

    A task whose network takes one image per call (``Task.batched_images`` False) is run image by image,
    and its outputs are not kept."""
    task = meta.task_object
    metrics = task.metrics(meta)
    if not metrics:
        raise ConfigError(f"task '{task.name}' of {meta.name} defines no metrics to measure")
    task.fit_metrics(metrics, run, meta)
    if metrics_out is not None:
        metrics_out.update(metrics)
    if not task.batched_images:
        # One image per call (detectors): per-image outputs differ in length, so none are kept.
        for i in range(len(inputs)):
            task.update_metrics(metrics, run(inputs[i : i + 1]), targets[i : i + 1], meta)
        return {k: v for metric in metrics.values() for k, v in metric.compute().items()}, {}
    kept = []
    for part, outputs in run_batches(run, inputs):
        task.update_metrics(metrics, outputs, targets[part], meta)
        if keep_outputs:
            kept.append(outputs)
    measured = {k: v for metric in metrics.values() for k, v in metric.compute().items()}
    return measured, concatenate_outputs(kept)


@dataclass
class VerifyReport:
    """Recorded against re-measured metrics of one weight."""

    name: str
    items: int
    rows: list[tuple[str, float, float, float, bool]] = field(default_factory=list)  # key, card, now, tol, ok
    measured: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    table: list[str] = field(default_factory=list)  # the task's summary of `measured` (Task.metrics_table)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(row[4] for row in self.rows)

    def summary(self) -> str:
        lines = [f"{self.name}: {self.items} test items, {'verified' if self.ok else 'MISMATCH'}"]
        lines += [
            f"  {key:<12} card {card:.6g}  measured {now:.6g}  (tolerance {tol:.2g}) {'ok' if ok else 'DIFFERS'}"
            for key, card, now, tol, ok in self.rows
        ]
        others = {k: v for k, v in self.measured.items() if k not in {r[0] for r in self.rows}}
        if others:
            lines.append("  also measured: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(others.items())))
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  {line}" for line in self.table]
        return "\n".join(lines)


def compare(measured: Mapping[str, float], recorded: Mapping[str, float], items: int) -> list[tuple]:
    """Rows for every metric both sides have. The tolerance is one item's worth of a fraction (1/N) plus
    a relative 1e-4: enough for float summation order and one near-tie, far below any real change."""
    rows = []
    for key in sorted(set(measured) & set(recorded)):
        card, now = float(recorded[key]), float(measured[key])
        tol = 1.0 / max(items, 1) + 1e-4 * max(1.0, abs(card))
        ok = math.isfinite(now) and abs(now - card) <= tol
        rows.append((key, card, now, tol, ok))
    return rows


def verify(name: str, limit: int | None = None) -> VerifyReport:
    """Load a published weight, re-measure its metrics on its recorded test split, compare with its card.

    With `limit`, only the first items are measured; the comparison then says how far off a subset is,
    not whether the card holds (the report notes it).
    """
    import torch

    from zoo.factory import create_model
    from zoo.models.base import named_outputs

    model = create_model(name, pretrained=True).eval()
    meta = model.pretrained_weights
    if meta.task_object.measured_on_samples:
        return _verify_by_recipe(model, meta, limit)
    inputs, targets = evaluation_split(meta, limit)

    @torch.no_grad()
    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        return named_outputs(model, model(torch.from_numpy(x)), meta.task_object)

    measured, _ = measure(run, meta, inputs, targets)
    report = VerifyReport(meta.name, len(inputs), compare(measured, meta.metrics, len(inputs)), measured)
    report.table = meta.task_object.metrics_table(measured, meta)
    if getattr(meta, "robustness", None):
        # A classifier's card also records its accuracy on the corrupted test split (zoo.reliability): the
        # full suite here, or its quick subset (every 10th image) when only a few items are asked for.
        from zoo.reliability import QUICK_STEP, compare_robustness, measure_robustness, torch_runner

        again = measure_robustness(torch_runner(model), meta, 1 if limit is None else QUICK_STEP)
        rows = compare_robustness(again, meta.robustness)
        report.rows += [(f"corrupted_{key}", *rest) for key, *rest in rows]
    if limit is not None:
        report.notes.append(f"measured on the first {len(inputs)} items only; the card is the full split")
    if not report.rows:
        report.notes.append("no metric the task measures is recorded in the card")
    return report


def _verify_by_recipe(model: Any, meta: Any, limit: int | None) -> VerifyReport:
    """A generator's card is measured on samples drawn by its recipe's process (sampler, seeds, the
    likelihood bounds' importance samples): re-run that evaluation (`recipes.engine.Trainer.evaluate` with
    the weight's recorded recipe config) on the published weights. Same seeds, so the same numbers.

    With a `limit` (a quick check) the recipe draws only the first `QUICK_SAMPLES` of its samples: their
    FID must be the card's ``fid_first250`` and every number that does not depend on the samples (the
    likelihoods, the real-data references) the card's; the other sample metrics are left out. A recipe
    whose likelihoods are estimated by sampling (``quick_likelihood``: the VAE's IWAE bound) measures them
    on its fixed test subset only (its ``*_sub100`` metrics)."""
    import dataclasses

    from recipes.config import config_from_dict
    from recipes.engine import Trainer, get_preset
    from zoo.metrics.sample_quality import QUICK_SAMPLES, SAMPLE_METRICS

    if not meta.recipe or not meta.recipe_config:
        raise ConfigError(f"{meta.name} records no recipe to re-measure its samples with")
    preset = get_preset(meta.recipe)
    config = config_from_dict(preset.objective.Config, meta.recipe_config)
    quick = limit is not None
    if quick:
        key = next((k for k in ("quality_samples", "eval_samples") if hasattr(config, k)), None)
        if key is None:
            raise ConfigError(f"the `{meta.recipe}` recipe has no sample count to limit: verify it in full")
        changes: dict[str, Any] = {key: QUICK_SAMPLES}
        if hasattr(config, "quick_likelihood"):  # likelihoods by sampling (IWAE): a fixed test subset only
            changes["quick_likelihood"] = True
        config = dataclasses.replace(config, **changes)
    trainer = Trainer(preset.objective(config)).setup()
    measured = trainer.evaluate("test", models={"model": model})
    if quick:
        first = measured.get("fid")
        measured = {k: v for k, v in measured.items() if k not in SAMPLE_METRICS}
        if first is not None:
            measured[f"fid_first{QUICK_SAMPLES}"] = first
    rows = []
    for key in sorted(set(measured) & set(meta.metrics)):
        card, now = float(meta.metrics[key]), float(measured[key])
        tol = 1e-4 * max(1.0, abs(card))  # float summation order only: the seeds are the recipe's
        rows.append((key, card, now, tol, math.isfinite(now) and abs(now - card) <= tol))
    report = VerifyReport(meta.name, len(trainer.data.test), rows, measured)
    report.notes.append(f"re-measured by the `{meta.recipe}` recipe's evaluation (its samples and seeds)")
    if quick:
        report.notes.append(
            f"quick check: the first {QUICK_SAMPLES} samples only (their FID is the card's "
            f"fid_first{QUICK_SAMPLES}); `zoo verify {meta.name}` without --limit draws them all"
        )
        if getattr(config, "quick_likelihood", False):
            report.notes.append(
                "quick check: the sampled likelihood bounds on the card's fixed test subset (*_sub100)"
            )
    if not rows:
        report.notes.append("no metric the recipe measures is recorded in the card")
    return report
