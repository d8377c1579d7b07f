"""Feature extraction: an embedding per image (self-supervised encoders); judged by kNN and linear probes.

Features are good when a simple classifier on them is good: the weight's metrics are kNN accuracy and
linear-probe accuracy on a labelled split, with the encoder frozen (the protocol of SimCLR, MoCo and BYOL).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.tasks import register_task
from zoo.tasks.base import Task, WeightField

__all__ = ["Embedding", "FeatureExtraction"]


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
