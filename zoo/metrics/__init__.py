"""Metrics as objects: state accumulated over a whole split, reduced across DDP ranks, named outputs.

Every metric follows one protocol (`Metric`)::

    metric = Accuracy().to(device)
    metric.reset()
    for images, labels in loader:
        metric.update(model(images), labels)
    metric.compute()                     # {"acc": ..., "top5": ...}; over every rank when distributed
    metric.higher_is_better              # {"acc": True, "top5": True}

| metric | outputs | inputs to ``update`` |
|---|---|---|
| `Mean` | ``name`` | per-sample values, or (sum, count) |
| `Accuracy` | ``acc``, ``top5`` (configurable) | logits ``(N, C)``, labels ``(N,)`` |
| `MeanIoU` | ``miou``, ``pixel_acc``, ``iou_<c>`` | logits ``(N, C, H, W)`` or labels ``(N, H, W)``, labels |
| `PSNR`, `SSIM` | ``psnr`` / ``ssim`` | images ``(N, C, H, W)``, reference images |
| `MeanAveragePrecision` | ``map``, ``map_50``, ... (COCO's twelve) | torchvision detection dicts |
| `FID` | ``fid`` | generated images, real images (features: `classifier_features`) |
| `SampleQuality` | ``fid``, ``fid_floor``, ``inception_score``, ``share_<d>``, ``nn_ratio``, ... | called on generated digits |
| `KNNAccuracy`, `LinearProbeAccuracy` | ``knn_acc`` / ``linear_acc`` | ``fit(train features, labels)``, then test features, labels |

Likelihoods of binarized digits (`zoo.metrics.likelihood`): `binarize` (the zoo's one stated binarization),
`bits_per_dim`, and the `IndependentBernoulli` / `BernoulliMixture` baselines (`likelihood_baselines`).

Calibration of a classifier's confidences (`zoo.metrics.calibration`, numpy only): `expected_calibration_error`
and `fit_temperature` (temperature scaling, Guo et al. 2017).

``coco_evaluate`` runs pycocotools' COCOeval directly on a COCO-format ground truth and detections;
``CocoEvaluation`` accumulates torchvision detections as COCO results and evaluates them that way.

Importing this package is cheap: torchmetrics, pycocotools and scikit-learn are imported by the classes
that need them, when they are built, and nothing here is imported by ``import zoo``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoo._lazy import lazy_exports

_EXPORTS = {
    "Metric": "zoo.metrics.base",
    "Mean": "zoo.metrics.base",
    "Accuracy": "zoo.metrics.base",
    "all_reduce_sum": "zoo.metrics.base",
    "all_gather_cat": "zoo.metrics.base",
    "MeanIoU": "zoo.metrics.segmentation",
    "PropagatedMaskIoU": "zoo.metrics.segmentation",
    "CorLoc": "zoo.metrics.localization",
    "MultiLabelTags": "zoo.metrics.localization",
    "PSNR": "zoo.metrics.image",
    "SSIM": "zoo.metrics.image",
    "MeanAveragePrecision": "zoo.metrics.detection",
    "CocoEvaluation": "zoo.metrics.detection",
    "coco_evaluate": "zoo.metrics.detection",
    "FID": "zoo.metrics.generation",
    "classifier_features": "zoo.metrics.generation",
    "SampleQuality": "zoo.metrics.sample_quality",
    "sample_quality": "zoo.metrics.sample_quality",
    "binarize": "zoo.metrics.likelihood",
    "bits_per_dim": "zoo.metrics.likelihood",
    "IndependentBernoulli": "zoo.metrics.likelihood",
    "expected_calibration_error": "zoo.metrics.calibration",
    "fit_temperature": "zoo.metrics.calibration",
    "BernoulliMixture": "zoo.metrics.likelihood",
    "likelihood_baselines": "zoo.metrics.likelihood",
    "KNNAccuracy": "zoo.metrics.representation",
    "LinearProbeAccuracy": "zoo.metrics.representation",
}

__all__ = [
    "FID",
    "PSNR",
    "SSIM",
    "Accuracy",
    "BernoulliMixture",
    "CocoEvaluation",
    "CorLoc",
    "IndependentBernoulli",
    "KNNAccuracy",
    "LinearProbeAccuracy",
    "Mean",
    "MeanAveragePrecision",
    "MeanIoU",
    "Metric",
    "MultiLabelTags",
    "PropagatedMaskIoU",
    "SampleQuality",
    "all_gather_cat",
    "all_reduce_sum",
    "binarize",
    "bits_per_dim",
    "classifier_features",
    "coco_evaluate",
    "expected_calibration_error",
    "fit_temperature",
    "likelihood_baselines",
    "sample_quality",
]

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

if TYPE_CHECKING:
    from zoo.metrics.base import Accuracy, Mean, Metric, all_gather_cat, all_reduce_sum
    from zoo.metrics.calibration import expected_calibration_error, fit_temperature
    from zoo.metrics.detection import CocoEvaluation, MeanAveragePrecision, coco_evaluate
    from zoo.metrics.generation import FID, classifier_features
    from zoo.metrics.image import PSNR, SSIM
    from zoo.metrics.likelihood import (
        BernoulliMixture,
        IndependentBernoulli,
        binarize,
        bits_per_dim,
        likelihood_baselines,
    )
    from zoo.metrics.localization import CorLoc, MultiLabelTags
    from zoo.metrics.representation import KNNAccuracy, LinearProbeAccuracy
    from zoo.metrics.sample_quality import SampleQuality, sample_quality
    from zoo.metrics.segmentation import MeanIoU, PropagatedMaskIoU
