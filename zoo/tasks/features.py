"""Feature extraction: an embedding per image (self-supervised encoders); judged by kNN and linear probes.

Features are good when a simple classifier on them is good: the weight's metrics are kNN accuracy and
linear-probe accuracy on a labelled split, with the encoder frozen (the protocol of SimCLR, MoCo and BYOL).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.tasks import register_task
from zoo.tasks.base import DEFAULT_ATOL, DEFAULT_RTOL, Agreement, Task, WeightField

__all__ = ["MIN_COSINE", "Embedding", "FeatureExtraction", "label_efficiency_markdown"]

MIN_COSINE = 0.9999  # an exported encoder's embeddings against PyTorch's, every sample


@dataclass
class Embedding:
    """One image's feature vector (unit length when the weight says ``normalize``)."""

    vector: np.ndarray

    def cosine(self, other: Embedding) -> float:
        a, b = self.vector, other.vector
        return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


@register_task
class FeatureExtraction(Task):
    name = "feature-extraction"
    pipeline_tag = "image-feature-extraction"
    aliases = ("image-feature-extraction",)
    summary = "an embedding vector per image, for retrieval, clustering and probes"
    weight_fields = (
        WeightField("embed_dim", None, "length of the embedding", (int,)),
        WeightField("normalize", True, "whether embeddings are L2-normalised before use", (bool,)),
    )
    headline_metrics = (("knn_acc", "kNN top-1", "{:.2%}"), ("linear_acc", "linear probe", "{:.2%}"))
    output_names = ("embedding",)
    outputs_doc = {"embedding": "(N, embed_dim) feature vectors"}

    def postprocess(self, outputs: Mapping[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        value = outputs["embedding"] if "embedding" in outputs else next(iter(outputs.values()))
        vectors = np.asarray(value, np.float32).reshape(len(value), -1)
        if getattr(meta, "normalize", True):
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return [Embedding(v) for v in vectors]

    def describe(self, result: Any, source: str, *, out_dir: Path | None = None, **options: Any) -> str:
        head = " ".join(f"{v:.3f}" for v in result.vector[:6])
        return (
            f"{source}: embedding ({len(result.vector)},) [{head}{' ...' if len(result.vector) > 6 else ''}]"
        )

    def metrics(self, meta: Any) -> dict[str, Any]:
        from zoo.metrics import KNNAccuracy, LinearProbeAccuracy

        return {"knn": KNNAccuracy(k=20), "linear_probe": LinearProbeAccuracy()}

    def fit_metrics(
        self, metrics: Mapping[str, Any], run: Callable[[np.ndarray], Mapping[str, np.ndarray]], meta: Any
    ) -> None:
        """Fit the kNN bank and the linear probe on the features `run` gives the whole train split of the
        weight's dataset (every label: the probes' protocol), preprocessed as the test split is."""
        import torch

        from zoo.data import load_dataset
        from zoo.evaluation import BATCH

        train = load_dataset(meta.dataset).train
        images, labels = self.evaluation_data(train, len(train), meta)
        inputs, labels = self.evaluation_pairs(images, labels, meta)
        features = np.concatenate(
            [self._embedding(run(inputs[i : i + BATCH])) for i in range(0, len(inputs), BATCH)]
        )
        for metric in metrics.values():
            metric.fit(torch.as_tensor(features), torch.as_tensor(np.asarray(labels)))

    def agreement(
        self,
        expected: Mapping[str, np.ndarray],
        actual: Mapping[str, np.ndarray],
        meta: Any,
        *,
        atol: float = DEFAULT_ATOL,
        rtol: float = DEFAULT_RTOL,
    ) -> Agreement:
        """Scaled parity, and every exported embedding's cosine similarity to PyTorch's at least
        `MIN_COSINE`: what retrieval and the probes read is the direction (the test split's kNN and
        linear-probe accuracies are compared by ``zoo export``'s test-split check)."""
        base = super().agreement(expected, actual, meta, atol=atol, rtol=rtol)
        want, got = self._embedding(expected).astype(np.float64), self._embedding(actual).astype(np.float64)
        if want.shape != got.shape:
            return Agreement(False, base.values, f"embedding shapes differ: {want.shape} vs {got.shape}")
        norms = np.maximum(np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1), 1e-12)
        cosine = float(((want * got).sum(1) / norms).min()) if len(want) else 1.0
        base.values["min_cosine"] = cosine
        base.ok = base.ok and cosine >= MIN_COSINE
        return base

    def card_sections(self, config: Mapping[str, Any]) -> list[str]:
        """The label-efficiency table (this weight and its baselines by label budget), then the pictures."""
        w = config.get("weights") or {}
        encoders = {
            f"**{w.get('arch')}.{w.get('tag')}**": w.get("metrics") or {},
            **(w.get("baselines") or {}),
        }
        table = label_efficiency_markdown(encoders)
        lines = []
        if table:
            lines += [
                "## Frozen-feature probes by label budget",
                "",
                "Test accuracy of a linear probe and a cosine kNN (k = 20) fitted on the frozen features of "
                "that many train labels (mean ± spread over the label draws; the last column: every label).",
                "",
                *table,
                "",
            ]
        return lines + super().card_sections(config)

    def _embedding(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        value = outputs["embedding"] if "embedding" in outputs else next(iter(outputs.values()))
        return np.asarray(value, np.float32).reshape(len(value), -1)


def label_efficiency_markdown(encoders: Mapping[str, Mapping[str, float]]) -> list[str]:
    """A markdown table of probe accuracy by label budget, from metrics named ``{linear,knn}_acc`` (every
    label) and ``{linear,knn}_acc_n{labels}`` with their ``_std`` (a budget's draws); one row per encoder and
    probe. Empty when no encoder has a budget below every label."""
    budgets = sorted(
        {
            int(k.rsplit("_n", 1)[1])
            for m in encoders.values()
            for k in m
            if k.startswith(("linear_acc_n", "knn_acc_n")) and not k.endswith("_std")
        }
    )
    if not budgets:
        return []

    def cell(metrics: Mapping[str, float], key: str) -> str:
        if key not in metrics:
            return "-"
        spread = metrics.get(f"{key}_std")
        return f"{metrics[key]:.1%}" + (f" ± {spread:.1%}" if spread else "")

    lines = [
        "| encoder | probe | " + " | ".join(f"{n:,} labels" for n in budgets) + " | all labels |",
        "|---|---|" + "---|" * (len(budgets) + 1),
    ]
    for name, metrics in encoders.items():
        for key, probe in (("linear_acc", "linear probe"), ("knn_acc", "kNN, k = 20")):
            cells = [cell(metrics, f"{key}_n{n}") for n in budgets] + [cell(metrics, key)]
            lines.append(f"| {name} | {probe} | " + " | ".join(cells) + " |")
    return lines
