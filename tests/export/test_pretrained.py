"""Published weights: ONNX top-1 agrees with PyTorch on the weight's whole test split.

Parametrised over `zoo.list_models(pretrained=True)`: every weight that lands in ``hub/`` is covered. The
split is the one the weight records, loaded through ``recipes.data`` and preprocessed as the runtime does
(`export.onnx.weight_test_split`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import zoo
from export.onnx import to_onnx, weight_test_split
from export.runtime import OnnxModel

WEIGHTS = zoo.list_models(pretrained=True)


@pytest.mark.parametrize("name", WEIGHTS)
def test_onnx_top1_agrees_with_pytorch_on_the_test_split(name, tmp_path):
    meta = zoo.get_weights(name)
    if meta.task != "image-classification":
        pytest.skip(f"{name} is a {meta.task} weight: top-1 agreement is for classifiers")
    split = weight_test_split(name)
    assert split is not None, f"{name}: its test split ({meta.dataset}) could not be loaded offline"
    inputs, labels = split
    model = zoo.create_model(name, pretrained=True).eval()
    result = to_onnx(model, tmp_path / f"{name}.onnx")
    onnx_model = OnnxModel(result.path)
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(inputs[i : i + 256])) for i in range(0, len(inputs), 256)])
    ort_logits = np.concatenate(
        [onnx_model.run(inputs[i : i + 256])["logits"] for i in range(0, len(inputs), 256)]
    )
    torch_top1, ort_top1 = logits.argmax(1).numpy(), ort_logits.argmax(1)
    # A sample may flip only if PyTorch's two best logits are closer than the fp32 parity bound.
    top2 = torch.topk(logits, 2, dim=1).values
    near_tie = (top2[:, 0] - top2[:, 1]).numpy() <= 1e-4
    disagree = (torch_top1 != ort_top1) & ~near_tie
    assert not disagree.any(), f"{name}: {int(disagree.sum())} of {len(labels)} test images differ in top-1"
    assert len(labels) == len(inputs) > 0
