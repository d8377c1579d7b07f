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

__all__ = ["SplitCheck", "verify_onnx", "weight_test_split"]


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
def verify_onnx(name: str, path: str | os.PathLike, limit: int | None = None) -> SplitCheck:
    """Export a published weight to `path` and check it on its recorded test split at the task's level.

    Both runtimes run the split (preprocessed once, by the task); the task compares their outputs
    (`zoo.tasks.Task.agreement`: same classes, pixels, boxes...), and the metrics measured from
    onnxruntime's outputs must be the card's (`zoo.evaluation.compare`).
    """
    from export.runtime import OnnxModel
    from zoo.evaluation import VerifyReport, compare, evaluation_split, measure
    from zoo.models.base import named_outputs

    model = resolve_model(name, True)
    meta = model.pretrained_weights
    result = to_onnx(model, path)
    session = OnnxModel(result.path, threads=torch.get_num_threads())
    inputs, targets = evaluation_split(meta, limit)
    task = meta.task_object

    def run_torch(x: np.ndarray) -> dict[str, np.ndarray]:
        return named_outputs(model, model(torch.from_numpy(x)), task)

    _, expected = measure(run_torch, meta, inputs, targets, keep_outputs=True)
    measured, actual = measure(session.run, meta, inputs, targets, keep_outputs=True)
    del session  # its idle threads would slow whatever runs next in this process (shared/FACTS.md)
    agreement = task.agreement(expected, {k: actual[k] for k in expected}, meta)
    report = VerifyReport(meta.name, len(inputs), compare(measured, meta.metrics, len(inputs)), measured)
    return SplitCheck(meta.name, len(inputs), agreement, report)
