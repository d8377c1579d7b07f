"""The diffusion denoiser's export: (noisy_image, timestep, label) inputs, and torch-free sampling whose DDIM
trajectory matches PyTorch's from the same noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.onnx import to_onnx
from export.runtime import OnnxModel
from tests.export.conftest import run_without_torch
from tests.helpers import build
from zoo.errors import ConfigError

PROCESS = {"schedule": "cosine", "prediction": "v"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = build("ddpm_unet_mnist_cond", process=PROCESS).eval()
    result = to_onnx(model, tmp_path_factory.mktemp("ddpm") / "ddpm.onnx")
    return model, result


def test_graph_inputs_and_metadata(exported):
    model, result = exported
    assert result.report.ok and result.exporters == {"model": "dynamo"}
    onnx_model = OnnxModel(result.path)
    assert [i.name for i in onnx_model.inputs] == ["noisy_image", "timestep", "label"]
    assert onnx_model.output_names == ["prediction"]
    assert onnx_model.meta.extra["process"] == model.process.to_dict()
    assert onnx_model.meta.extra["num_classes"] == 10


def test_runtime_ddim_trajectory_matches_pytorch(exported):
    model, result = exported
    noise = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = [3, 1, 4, 1]
    ours: list[torch.Tensor] = []
    theirs: list[np.ndarray] = []
    want = model.sample(
        4,
        labels=labels,
        steps=10,
        guidance=2.0,
        noise=noise,
        callback=lambda i, t, x, x0: ours.append(x.clone()),
    )
    got = OnnxModel(result.path).sample(
        4,
        labels=labels,
        steps=10,
        guidance=2.0,
        noise=noise.numpy(),
        callback=lambda i, t, x, x0: theirs.append(x),
    )
    assert len(ours) == len(theirs) == 10
    for a, b in zip(ours, theirs):
        assert np.abs(a.numpy() - b).max() < 1e-3
    assert np.abs(want.numpy() - got).max() < 1e-3 and got.shape == (4, 1, 28, 28)


def test_runtime_refuses_bad_input(exported):
    _, result = exported
    onnx_model = OnnxModel(result.path)
    with pytest.raises(ConfigError, match="allowed: 0, 1"):
        onnx_model.sample(2, labels=[10, 0], steps=2)
    with pytest.raises(ConfigError, match="from 1 to 1000"):
        onnx_model.sample(2, steps=-5)
    with pytest.raises(ConfigError, match="at least|>= 1"):
        onnx_model.sample(0)


def test_zoo_sample_onnx_runs_without_torch(exported, tmp_path):
    _, result = exported
    out = tmp_path / "grid.png"
    code = (
        "import sys; from zoo.cli import main; "
        "sys.exit(main(['sample', '--onnx', sys.argv[1], '--n', '4', '--steps', '3', '--labels', '7', "
        "'--out', sys.argv[2]]))"
    )
    printed = run_without_torch(code, str(result.path), str(out))
    assert "4 samples" in printed and out.is_file()
