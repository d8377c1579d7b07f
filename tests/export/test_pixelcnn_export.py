"""PixelCNN export: masks folded into the weights (no run-time mask multiply), parity, torch-free sampling."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import zoo
from export.onnx import to_onnx
from export.runtime import OnnxModel
from zoo.errors import ConfigError
from zoo.models.pixelcnn import MaskedConv2d


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = zoo.create_model("pixelcnn_cond", channels=8, layers=1, head=8).eval()
    path = tmp_path_factory.mktemp("pixelcnn") / "pixelcnn.onnx"
    return model, to_onnx(model, path)


def test_masks_are_folded_into_the_file(exported):
    model, result = exported
    assert result.report.ok, result.report.summary()
    assert not any(m.folded for m in model.modules() if isinstance(m, MaskedConv2d)), "the model is untouched"
    proto = onnx.load(str(result.path))
    weights = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert not [n for n in weights if "mask" in n], "a mask travelled into the file"
    # Every masked kernel in the file is already zero where its mask is: no multiply is left to do.
    for module in (m for m in model.modules() if isinstance(m, MaskedConv2d)):
        mask = module.mask.numpy()[0, 0]
        kernels = [w for w in weights.values() if w.shape == tuple(module.weight.shape)]
        assert kernels and all((w[..., mask == 0] == 0).all() for w in kernels)
    # The file holds about the parameters once (FACTS: an unfolded mask multiply doubles it).
    stored = sum(w.size for w in weights.values())
    assert stored < 1.2 * sum(p.numel() for p in model.parameters())


def test_parity_with_pytorch(exported):
    model, result = exported
    onnx_model = OnnxModel(result.path)
    assert [i.name for i in onnx_model.inputs] == ["image", "label"]
    images = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    labels = torch.tensor([0, 4, 9])
    with torch.no_grad():
        logits, bpd = model(images, labels)
    out = onnx_model.run({"image": images.numpy(), "label": labels.numpy()})
    assert np.abs(out["logits"] - logits.numpy()).max() < 1e-4
    assert np.abs(out["nll_bits_per_dim"] - bpd.numpy()).max() < 1e-5


def test_torch_free_sampling(exported):
    _, result = exported
    onnx_model = OnnxModel(result.path)
    a = onnx_model.sample(2, seed=3, labels=[1, 7])
    assert a.shape == (2, 1, 28, 28) and a.dtype == np.float32
    assert set(np.unique(a).tolist()) <= {0.0, 1.0}
    assert np.array_equal(a, onnx_model.sample(2, seed=3, labels=[1, 7]))  # seeded
    with pytest.raises(ConfigError, match="label 12 is not one of this model's classes"):
        onnx_model.sample(1, labels=[12])
    with pytest.raises(ConfigError, match="n=0"):
        onnx_model.sample(0)
