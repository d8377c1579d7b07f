"""A published weight's export checked on its whole test split, at the level of its task.

`verify_onnx` exports the weight, runs the recorded test split (preprocessed once, by the weight's task)
through PyTorch and onnxruntime, and asks the task whether they agree (`zoo.tasks.Task.agreement`: same
classes, pixels, boxes...) and whether the metrics measured from onnxruntime's outputs are the card's
(`zoo.evaluation.compare`). ``zoo export NAME --verify`` prints its report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from export.onnx import resolve_model, to_onnx
from zoo.tasks.base import Agreement

__all__ = ["SplitCheck", "same_predictions", "spread_random_detector", "verify_onnx", "weight_test_split"]

# The bound on COCO AP measured from onnxruntime's detections against PyTorch's, on the same images.
AP_TOLERANCE = 0.005
# Generators: the torch-free sampler draws its own noise (numpy), so its samples are other samples of the
# same model and their FID is compared with the card's within the spread that sampling alone causes. FID of
# 1,000 samples moved by up to 14% between seeds in PyTorch (vae.mnist: 28.1 on the card's seed, then 29.0,
# 31.9, 30.9, 28.6 on seeds 0-3; 2026-11-29); a broken export (a wrong scale, a missing step) is off by
# several times that.
SAMPLE_COUNT = 1000
SAMPLE_FID_RTOL = 0.2
SAMPLE_AGREEMENT_ATOL = 0.03  # conditional generators: the share of samples of the requested digit
# Samplers that replay the noise they are given (`export.adapters.Adapter.replays_noise`; a deterministic
# sampler): the quick check draws this many samples from the same noise in both runtimes and compares them
# pixel by pixel, within the bound on a DDIM trajectory. (1,000 DDIM-50 samples with guidance are
# 100,000 network calls: minutes on a CPU; the full check still draws them and scores the card's FID.)
REPLAY_SAMPLES = 50
REPLAY_ATOL = 1e-3


def weight_test_split(name: str) -> tuple[np.ndarray, Any] | None:
    """A published weight's test split as its task feeds it: (model inputs, metric targets).

    The split is the one the weight records (``Weights.dataset``), loaded through ``zoo.data`` and
    preprocessed by the weight's task, exactly as `export.runtime` and ``zoo predict`` do it (see
    `zoo.evaluation.evaluation_split`). None for a name without a published weight, or a dataset that is
    not available offline.
    """
    from zoo.errors import ZooError
    from zoo.evaluation import evaluation_split
    from zoo.registry import get_entry, get_weights, parse_model_name

    arch, tag = parse_model_name(name)
    try:
        tag = tag or get_entry(arch).default_tag
        weights = get_weights(f"{arch}.{tag}") if tag else None
        if weights is None or not weights.dataset:
            return None
        return evaluation_split(weights)
    except (ImportError, ZooError):
        return None


@dataclass
class SplitCheck:
    """An exported weight on its whole test split: the task's verdict against PyTorch, and the card's
    metrics re-measured from onnxruntime's outputs."""

    name: str
    items: int
    agreement: Any  # zoo.tasks.Agreement over every test item at once
    verify: Any  # zoo.evaluation.VerifyReport of the ONNX outputs against the card

    @property
    def ok(self) -> bool:
        return self.agreement.ok and self.verify.ok

    def summary(self) -> str:
        return (
            f"{self.name} on its test split ({self.items} items): onnxruntime vs PyTorch {self.agreement}\n"
            + (self.verify.summary().replace(f"{self.verify.name}:", "card vs onnxruntime:", 1))
        )


@torch.no_grad()
def verify_onnx(
    name: str, path: str | os.PathLike, limit: int | None = None, *, agreement_only: bool = False
) -> SplitCheck:
    """Export a published weight to `path` and check it on its recorded test split at the task's level.

    Both runtimes run the split (preprocessed once, by the task); the task compares their outputs
    (`zoo.tasks.Task.agreement`: same classes, pixels, boxes...), and the metrics measured from
    onnxruntime's outputs must be the card's (`zoo.evaluation.compare`).

    `agreement_only` (with a `limit`: the first `limit` test items, or an exact-likelihood generator's
    digits) is the quick check the test suite runs: the runtimes must agree there, and no metric is
    measured, so nothing is fitted on the train split (a feature extractor's probes) and the report has no
    rows. The card itself is re-measured in PyTorch by the recipe (the suite's test_published) and from
    onnxruntime's outputs by the full check. One-image-per-call tasks measure their metrics either way (the
    runtimes' AP gap is their agreement); sampling generators draw all `SAMPLE_COUNT` samples.
    """
    from export.runtime import OnnxModel
    from zoo.evaluation import (
        VerifyReport,
        compare,
        concatenate_outputs,
        evaluation_split,
        measure,
        run_batches,
    )
    from zoo.models.base import named_outputs

    model = resolve_model(name, True)
    meta = model.pretrained_weights
    result = to_onnx(model, path)
    if meta.task_object.measured_on_samples:
        if "nll_bpd" in meta.metrics and "iwae_k" not in meta.metrics:
            return _verify_exact_likelihood(model, result, limit)
        # Samples have no per-item counterpart to agree on (unless the sampler replays its noise): the quick
        # check draws them all, as the full one.
        return _verify_samples(model, result, None if agreement_only else limit, replay=agreement_only)
    session = OnnxModel(result.path, threads=torch.get_num_threads())
    inputs, targets = evaluation_split(meta, limit)
    task = meta.task_object
    if not task.batched_images:
        return _verify_per_image(model, session, inputs, targets)

    def run_torch(x: np.ndarray) -> dict[str, np.ndarray]:
        return named_outputs(model, model(torch.from_numpy(x)), task)

    if agreement_only:
        expected = concatenate_outputs(out for _, out in run_batches(run_torch, inputs))
        actual = concatenate_outputs(out for _, out in run_batches(session.run, inputs))
        del session
        agreement = task.agreement(expected, {k: actual[k] for k in expected}, meta)
        report = VerifyReport(meta.name, len(inputs), [], {})
        report.notes.append("agreement only: no metric measured (the card is checked on the whole split)")
        return SplitCheck(meta.name, len(inputs), agreement, report)

    fitted: dict[str, dict[str, Any]] = {"torch": {}, "onnx": {}}
    _, expected = measure(run_torch, meta, inputs, targets, keep_outputs=True, metrics_out=fitted["torch"])
    measured, actual = measure(
        session.run, meta, inputs, targets, keep_outputs=True, metrics_out=fitted["onnx"]
    )
    del session  # its idle threads would slow whatever runs next in this process (shared/FACTS.md)
    agreement = task.agreement(expected, {k: actual[k] for k in expected}, meta)
    same_predictions(fitted["torch"], fitted["onnx"], agreement)
    report = VerifyReport(meta.name, len(inputs), compare(measured, meta.metrics, len(inputs)), measured)
    return SplitCheck(meta.name, len(inputs), agreement, report)


def same_predictions(expected: dict[str, Any], actual: dict[str, Any], agreement: Agreement) -> None:
    """Where a metric keeps per-sample predictions (a kNN vote, a linear probe fitted on each runtime's own
    train features), both runtimes must predict the same label for every test sample: ``same_<metric>`` is
    the share that do, and any difference fails the agreement."""
    for name, metric in expected.items():
        if not hasattr(metric, "predictions") or name not in actual:
            continue
        want, got = metric.predictions(), actual[name].predictions()
        share = float((want == got).float().mean()) if len(want) == len(got) and len(want) else 0.0
        agreement.values[f"same_{name}"] = share
        if share < 1.0:
            agreement.ok = False
            differ = int((want != got).sum()) if len(want) == len(got) else len(want)
            agreement.note = (agreement.note + "; " if agreement.note else "") + (
                f"{differ} of {len(want)} {name} predictions differ between the runtimes"
            )


@torch.no_grad()
def _verify_per_image(model: torch.nn.Module, session: Any, inputs: Any, targets: Any) -> SplitCheck:
    """`verify_onnx` for tasks whose graphs take one image per call (detectors, instance segmenters).

    Each image goes through both runtimes alone; detections are matched one to one
    (`export.detection_runtime.match_detections`: IoU >= 0.99, scores within 1e-3), the metrics are
    measured from each runtime's outputs, and onnxruntime's must be PyTorch's within `AP_TOLERANCE` as well
    as the card's.
    """
    from export.detection_runtime import detection_agreement, merge_agreements
    from zoo.evaluation import VerifyReport, compare
    from zoo.models.base import named_outputs

    meta = model.pretrained_weights
    task = meta.task_object
    metrics = {"torch": task.metrics(meta), "onnx": task.metrics(meta)}
    agreements = []
    for i in range(len(inputs)):
        x = inputs[i : i + 1]
        expected = named_outputs(model, model(torch.from_numpy(np.asarray(x))), task)
        actual = session.infer(np.asarray(x))
        agreements.append(detection_agreement(expected, actual, meta))
        for side, outputs in (("torch", expected), ("onnx", actual)):
            task.update_metrics(metrics[side], outputs, targets[i : i + 1], meta)
    del session  # its idle threads would slow whatever runs next in this process (shared/FACTS.md)
    measured = {
        side: {k: v for metric in group.values() for k, v in metric.compute().items()}
        for side, group in metrics.items()
    }
    agreement = merge_agreements(agreements)
    gaps = {k: abs(v - measured["torch"][k]) for k, v in measured["onnx"].items() if np.isfinite(v)}
    agreement.values["max_metric_gap"] = max(gaps.values(), default=0.0)
    if agreement.values["max_metric_gap"] > AP_TOLERANCE:
        worst = max(gaps, key=gaps.__getitem__)
        agreement.ok = False
        agreement.note = (agreement.note + "; " if agreement.note else "") + (
            f"{worst} differs by {gaps[worst]:.4f} (> {AP_TOLERANCE}) between the runtimes"
        )
    report = VerifyReport(
        meta.name, len(inputs), compare(measured["onnx"], meta.metrics, len(inputs)), measured["onnx"]
    )
    return SplitCheck(meta.name, len(inputs), agreement, report)


def _verify_samples(
    model: torch.nn.Module, result: Any, limit: int | None, replay: bool = False
) -> SplitCheck:
    """`verify_onnx` for generators: every graph answered like PyTorch on the exporter's validation inputs
    (`export.onnx.to_onnx` raises otherwise), and samples drawn torch-free (the family's export adapter's
    numpy sampler over onnxruntime, as ``zoo sample --onnx`` draws them) score the card's FID within
    `SAMPLE_FID_RTOL` (and, for a conditional generator, its label agreement within
    `SAMPLE_AGREEMENT_ATOL`). `limit` draws fewer samples (a quick check: FID is biased upward on small sets,
    so the comparison then says how far off, not whether the card holds). With `replay`, a sampler that
    replays its noise (a deterministic one) is checked on `REPLAY_SAMPLES` samples of the same noise in both
    runtimes instead (`_replay_samples`)."""
    from export.runtime import OnnxModel
    from zoo.errors import ConfigError
    from zoo.evaluation import VerifyReport
    from zoo.metrics.sample_quality import sample_quality

    meta = model.pretrained_weights
    # The graph that samples: a VAE's decoder, else the main one (generator, denoiser, PixelCNN).
    path = result.paths.get("decoder", result.path)
    sampler = OnnxModel(path, threads=torch.get_num_threads())
    if getattr(sampler.adapter, "sample", None) is None:
        raise ConfigError(f"{meta.name}: its exported graph {path.name} cannot sample")
    if replay and sampler.adapter.replays_noise and _deterministic(meta):
        return _replay_samples(model, result, sampler)
    n = SAMPLE_COUNT if limit is None else min(limit, SAMPLE_COUNT)
    classes = int(getattr(model, "num_classes", 0) or 0)
    labels = np.arange(n) % classes if classes else None
    images = sampler.sample(n, seed=0, labels=None if labels is None else labels.tolist())
    del sampler  # its idle threads would slow whatever runs next in this process (shared/FACTS.md)
    measured = sample_quality(
        torch.from_numpy(np.ascontiguousarray(images)), None if labels is None else torch.from_numpy(labels)
    )
    rows = []
    for key, tol in (("fid", SAMPLE_FID_RTOL), ("label_agreement", SAMPLE_AGREEMENT_ATOL)):
        if key in meta.metrics and key in measured:
            card, now = float(meta.metrics[key]), float(measured[key])
            tol = tol * card if key == "fid" else tol
            rows.append((key, card, now, tol, bool(np.isfinite(now) and abs(now - card) <= tol)))
    validated = result.report
    agreement = Agreement(
        bool(validated is not None and validated.ok),
        {"max_abs": float(validated.max_abs)} if validated is not None else {},
        "" if validated is not None else "not validated",
    )
    report = VerifyReport(meta.name, n, rows, measured)
    report.notes.append(
        f"{n} samples drawn torch-free (numpy noise, seed 0): other samples than the card's, so FID is "
        f"compared within {SAMPLE_FID_RTOL:.0%} (its spread between seeds)"
    )
    return SplitCheck(meta.name, n, agreement, report)


def _deterministic(meta: Any) -> bool:
    """Whether the weight's default sampler draws no noise after the initial one (DDIM with eta 0)."""
    sampler = getattr(meta, "sampler", None) or {}
    return sampler.get("name") == "ddim" and float(sampler.get("eta", 0.0)) == 0.0


@torch.no_grad()
def _replay_samples(model: torch.nn.Module, result: Any, sampler: Any) -> SplitCheck:
    """`REPLAY_SAMPLES` samples of the same noise (numpy, seed 0) and labels from both runtimes: the
    torch-free sampler over onnxruntime and ``model.sample``; they must agree to `REPLAY_ATOL` per pixel. The
    card's FID is the recipe's to re-measure (`zoo.evaluation.verify`)."""
    from zoo.evaluation import VerifyReport

    meta = model.pretrained_weights
    n = REPLAY_SAMPLES
    noise = np.random.default_rng(0).standard_normal((n, *model.input_size)).astype(np.float32)
    classes = int(getattr(model, "num_classes", 0) or 0)
    labels = (np.arange(n) % classes).tolist() if classes else None
    # PyTorch first: onnxruntime's idle threads would slow whatever runs after it in this process.
    eager = model.sample(n, labels=labels, noise=torch.from_numpy(noise)).cpu().numpy()
    onnx = sampler.sample(n, seed=0, labels=labels, noise=noise)
    max_abs = float(np.abs(onnx - eager).max())
    validated = result.report
    ok = bool(validated is not None and validated.ok and max_abs <= REPLAY_ATOL)
    agreement = Agreement(ok, {"max_abs_samples": max_abs}, "" if ok else f"samples differ by {max_abs:.2g}")
    report = VerifyReport(meta.name, n, [], {})
    report.notes.append(
        f"{n} samples from the same noise in both runtimes (max difference {max_abs:.2g}, bound {REPLAY_ATOL}); "
        f"the full check draws {SAMPLE_COUNT} torch-free and scores the card's FID"
    )
    return SplitCheck(meta.name, n, agreement, report)


@torch.no_grad()
def _verify_exact_likelihood(model: torch.nn.Module, result: Any, limit: int | None = None) -> SplitCheck:
    """`verify_onnx` for a generator with an exact likelihood (PixelCNN): its main graph scores every test
    digit (``nll_bits_per_dim``) like PyTorch, and their mean is the card's ``nll_bpd``. (Sampling through
    the graph re-scores the whole image once per pixel: minutes for a few digits, so the samples are
    checked by `benchmarks/pixelcnn_sampling.py`, not here.)"""
    from export.runtime import OnnxModel
    from zoo.evaluation import VerifyReport, compare, evaluation_split
    from zoo.tasks.base import parity
    from zoo.tasks.generation import NLL_OUTPUT

    meta = model.pretrained_weights
    if getattr(model, "num_classes", 0):
        from zoo.errors import ConfigError

        # The digits' labels would have to be fed to both runtimes; no conditional weight is published yet.
        raise ConfigError(f"{meta.name}: the likelihood check covers unconditional models only")
    session = OnnxModel(result.path, threads=torch.get_num_threads())
    inputs, _ = evaluation_split(meta, limit)
    expected, actual = [], []
    for start in range(0, len(inputs), 250):
        x = np.asarray(inputs[start : start + 250], np.float32)
        expected.append(model(torch.from_numpy(x))[1].double().numpy())
        actual.append(np.asarray(session.run({"image": x})[NLL_OUTPUT], np.float64))
    del session  # its idle threads would slow whatever runs next in this process (shared/FACTS.md)
    expected_nll, actual_nll = np.concatenate(expected), np.concatenate(actual)
    ok, max_abs, max_rel = parity(expected_nll, actual_nll)
    agreement = Agreement(ok, {"max_abs": max_abs, "max_rel": max_rel})
    measured = {"nll_bpd": float(actual_nll.mean())}
    measured["nll_nats"] = measured["nll_bpd"] * float(np.prod(meta.input_size)) * float(np.log(2.0))
    # The card's mean is over the whole split: a subset (`limit`) checks the graph's parity only.
    rows = compare(measured, meta.metrics, len(inputs)) if limit is None else []
    report = VerifyReport(meta.name, len(inputs), rows, measured)
    return SplitCheck(meta.name, len(inputs), agreement, report)


@torch.no_grad()
def spread_random_detector(model: torch.nn.Module, gain: float = 20.0) -> torch.nn.Module:
    """Make a random-init torchvision detector's scores differ, for tests and benchmarks without weights.

    A fresh detector's classification layers start at std 0.01 (and RetinaNet's at a 1% prior), so every
    box gets nearly the same score and the two runtimes pick different, equally valid boxes among the ties
    (shared/FACTS.md). BatchNorm statistics are calibrated (`export.onnx.calibrate_batchnorm`) and the
    classification layers' weights scaled by `gain` (RetinaNet's prior bias set to 0), so scores spread
    over (0, 1) as a trained detector's do. Returns `model`, in eval mode.
    """
    from export.onnx import calibrate_batchnorm

    calibrate_batchnorm(model)
    if hasattr(model, "roi_heads"):  # Faster / Mask R-CNN: the RPN's objectness and the box classifier
        model.rpn.head.cls_logits.weight.mul_(gain)
        model.roi_heads.box_predictor.cls_score.weight.mul_(gain)
    elif hasattr(model, "head") and hasattr(model.head, "classification_head"):  # RetinaNet
        model.head.classification_head.cls_logits.weight.mul_(gain)
        model.head.classification_head.cls_logits.bias.zero_()
    return model.eval()
