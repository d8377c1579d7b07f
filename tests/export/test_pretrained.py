"""Published weights: the exported file reproduces PyTorch, and the weight's metrics, on its test split.

Parametrised over `zoo.list_models(pretrained=True)`: every weight that lands in ``hub/`` is covered. The
split is the one the weight records, loaded through ``zoo.data`` and preprocessed as the runtime does
(`export.onnx.weight_test_split`). Classifiers: ONNX top-1 agrees with PyTorch on every test image, and
the ONNX accuracy is the one the weight records. Autoencoders: the ONNX reconstruction error is the one
the weight records.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zoo
from export.onnx import to_onnx, weight_test_split
from export.runtime import OnnxModel

WEIGHTS = zoo.list_models(pretrained=True)


def check_top1_agreement(name: str, folder) -> int:
    """Export weight `name` and compare top-1 with PyTorch on its test split; returns the split size."""
    meta = zoo.get_weights(name)
    split = weight_test_split(name)
    assert split is not None, f"{name}: its test split ({meta.dataset}) could not be loaded offline"
    inputs, labels = split
    model = zoo.create_model(name, pretrained=True).eval()
    result = to_onnx(model, folder / f"{name}.onnx")
    onnx_model = OnnxModel(result.path)
    chunks = range(0, len(inputs), 250)
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(inputs[i : i + 250])) for i in chunks])
    ort_logits = np.concatenate([onnx_model.run(inputs[i : i + 250])["logits"] for i in chunks])
    torch_top1, ort_top1 = logits.argmax(1).numpy(), ort_logits.argmax(1)
    # A sample may flip only where PyTorch's two best logits are closer than the fp32 parity bound.
    top2 = torch.topk(logits, 2, dim=1).values
    near_tie = (top2[:, 0] - top2[:, 1]).numpy() <= 1e-4
    disagree = (torch_top1 != ort_top1) & ~near_tie
    assert not disagree.any(), f"{name}: {int(disagree.sum())} of {len(labels)} test images differ in top-1"
    assert len(labels) == len(inputs) > 0
    recorded = meta.metrics.get("acc", meta.metrics.get("top1"))
    if recorded is not None:  # the file reproduces the published number (to one image)
        accuracy = float((ort_top1 == labels).mean())
        assert abs(accuracy - recorded) <= 1 / len(labels) + 1e-6, f"{name}: ONNX {accuracy} vs {recorded}"
    return len(labels)


def check_reconstruction(name: str, folder) -> float:
    """An autoencoder's ONNX reconstructions of its test split: PyTorch's, and the recorded MSE."""
    meta = zoo.get_weights(name)
    split = weight_test_split(name)
    assert split is not None, f"{name}: its test split ({meta.dataset}) could not be loaded offline"
    inputs, _ = split
    model = zoo.create_model(name, pretrained=True).eval()
    result = to_onnx(model, folder / f"{name}.onnx")
    onnx_model = OnnxModel(result.path)
    chunks = range(0, len(inputs), 250)
    with torch.no_grad():
        expected = torch.cat([model(torch.from_numpy(inputs[i : i + 250])) for i in chunks]).numpy()
    got = np.concatenate([onnx_model.run(inputs[i : i + 250])["reconstruction"] for i in chunks])
    assert np.abs(got - expected).max() <= 1e-4
    mse = float(np.square(got - inputs).mean())
    if "mse" in meta.metrics:
        assert abs(mse - meta.metrics["mse"]) <= 5e-6, (
            f"{name}: ONNX mse {mse} vs recorded {meta.metrics['mse']}"
        )
    return mse


@pytest.mark.parametrize("name", WEIGHTS)
def test_exported_weight_reproduces_pytorch_on_the_test_split(name, tmp_path):
    task = zoo.get_weights(name).task
    if task == "image-classification":
        check_top1_agreement(name, tmp_path)
    elif task == "autoencoding":
        check_reconstruction(name, tmp_path)
    else:
        pytest.skip(f"no test-split check for task '{task}' yet")
