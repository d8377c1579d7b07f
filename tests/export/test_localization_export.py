"""CAM localisation exported: the graph gives the tag scores and the class activation maps, and boxes come
from the task's numpy post-processing, the same with onnxruntime (torch-free) as with PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.onnx import calibrate_batchnorm, to_onnx
from export.runtime import OnnxModel, OnnxModelError
from tests.export.conftest import run_without_torch
from tests.helpers import build
from zoo.models.base import named_outputs
from zoo.tasks.detection import box_iou


@pytest.fixture(scope="module")
def cam(tmp_path_factory):
    model = calibrate_batchnorm(build("cam_resnet8_small")).eval()
    result = to_onnx(model, tmp_path_factory.mktemp("cam") / "cam.onnx")
    return model, result


def _scenes(count: int = 4) -> list[np.ndarray]:
    from zoo.data import DigitScenes

    scenes = DigitScenes("test", count)
    return [scenes.scene(i).image for i in range(count)]


def test_graph_outputs_scores_and_maps_within_parity(cam):
    model, result = cam
    assert result.report.ok, result.report.summary()
    onnx = OnnxModel(result.path)
    assert onnx.output_names == ["logits", "cams"]
    x = np.random.default_rng(0).standard_normal((3, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        expected = named_outputs(model, model(torch.from_numpy(x)), onnx.task)
    actual = onnx.run(x)
    assert actual["cams"].shape == (3, 10, 16, 16)
    agreement = onnx.task.agreement(expected, actual, onnx.meta)
    assert agreement.ok, agreement


def test_localize_gives_the_same_boxes_in_both_runtimes(cam):
    model, result = cam
    onnx = OnnxModel(result.path)
    images = _scenes()

    def torch_run(x: np.ndarray) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return named_outputs(model, model(torch.from_numpy(x)), onnx.task)

    want = onnx.task.localize(torch_run, onnx.meta, images)
    got = onnx.localize(images)
    assert len(got) == len(images)
    for a, b in zip(want, got):
        assert a.labels.tolist() == b.labels.tolist() and len(a) > 0
        assert np.diag(box_iou(a.boxes, b.boxes)).min() >= 0.99
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)


def test_localize_runs_without_torch(cam, tmp_path):
    from PIL import Image

    _, result = cam
    png = tmp_path / "scene.png"
    Image.fromarray(_scenes(1)[0]).resize((96, 96)).save(png)  # any size: boxes in its own pixels
    (here,) = OnnxModel(result.path).localize([png])
    code = (
        "import sys\nfrom export.runtime import OnnxModel\n"
        "(r,) = OnnxModel(sys.argv[1]).localize([sys.argv[2]])\n"
        "print(r.heatmaps.shape, r.labels.tolist(), r.boxes.round().astype(int).tolist())"
    )
    line = run_without_torch(code, str(result.path), str(png)).strip()
    assert line == f"{here.heatmaps.shape} {here.labels.tolist()} {here.boxes.round().astype(int).tolist()}"
    assert here.heatmaps.shape[1:] == (96, 96)


def test_localize_refuses_a_model_without_maps(demo_export):
    with pytest.raises(OnnxModelError, match="class activation maps"):
        OnnxModel(demo_export.result.path).localize([np.zeros((28, 28, 1), np.uint8)])
