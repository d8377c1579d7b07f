"""The GAN generator's export: (latent[, label]) inputs, and torch-free sampling that matches PyTorch from the
same latents."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.onnx import to_onnx
from export.runtime import OnnxModel
from tests.export.conftest import run_without_torch
from tests.helpers import build
from zoo.errors import ConfigError


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = build("dcgan_cond").eval()
    result = to_onnx(model, tmp_path_factory.mktemp("gan") / "dcgan_cond.onnx")
    return model, result


def test_graph_inputs_and_metadata(exported):
    model, result = exported
    assert result.report.ok
    onnx_model = OnnxModel(result.path)
    assert [i.name for i in onnx_model.inputs] == ["latent", "label"]
    assert onnx_model.output_names == ["image"]
    assert onnx_model.meta.extra["latent_dim"] == model.latent_dim == 64
    assert onnx_model.meta.extra["num_classes"] == 10


def test_runtime_sampling_matches_pytorch_from_the_same_latents(exported):
    model, result = exported
    z = np.random.default_rng(0).standard_normal((6, model.latent_dim)).astype(np.float32)
    labels = [3, 1, 4, 1, 5, 9]
    got = OnnxModel(result.path).sample(6, labels=labels, latent=z)
    with torch.no_grad():
        want = model(torch.from_numpy(z), torch.tensor(labels)).numpy()
    assert got.shape == (6, 1, 28, 28) and np.abs(got - want).max() < 1e-4
    # Seeded: the same seed gives the same digits.
    a = OnnxModel(result.path).sample(4, seed=7)
    assert np.array_equal(a, OnnxModel(result.path).sample(4, seed=7))


def test_runtime_bad_input(exported):
    _, result = exported
    onnx_model = OnnxModel(result.path)
    with pytest.raises(ConfigError, match="n=0"):
        onnx_model.sample(0)
    with pytest.raises(ConfigError, match="label 12"):
        onnx_model.sample(2, labels=[12])
    with pytest.raises(ConfigError, match="no sampler options"):
        onnx_model.sample(2, steps=3)


def test_sampling_runs_without_torch(exported, tmp_path):
    _, result = exported
    code = (
        "import sys\n"
        "from export.runtime import OnnxModel\n"
        "x = OnnxModel(sys.argv[1]).sample(5, seed=0, labels=[2])\n"
        "print(x.shape, float(x.min()) >= 0, float(x.max()) <= 1)\n"
    )
    out = run_without_torch(code, str(result.path))
    assert "(5, 1, 28, 28) True True" in out
