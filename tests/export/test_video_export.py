"""The colorization tracker's export: a per-frame embedder, and torch-free mask propagation through a video that
matches PyTorch's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from export.onnx import calibrate_batchnorm, to_onnx
from export.runtime import OnnxModel, OnnxModelError
from tests.export.conftest import run_without_torch
from tests.helpers import build
from zoo.data.videos import DigitVideos
from zoo.tasks import get_task


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = build("colorization_tracker").eval()
    calibrate_batchnorm(model)
    path = tmp_path_factory.mktemp("video") / "colorization_tracker.onnx"
    return model, to_onnx(model, path, input_size=(1, 48, 48))


@pytest.fixture(scope="module")
def video():
    return DigitVideos("test", 1).video(0)


def test_propagation_matches_pytorch(exported, video):
    model, result = exported
    assert result.report.ok, result.report.summary()
    onnx_model = OnnxModel(result.path)
    task = get_task("mask-propagation")

    @torch.no_grad()
    def torch_run(x):
        return {"embeddings": model(torch.from_numpy(x)).numpy()}

    options = {"temperature": 0.1}  # sharp attention: a random-init network's masks still move
    want = task.propagate(torch_run, onnx_model.meta, video.frames, video.instances[0], **options)
    got = onnx_model.propagate(video.frames, video.instances[0], **options)
    assert got.shape == video.instances.shape and got.dtype == video.instances.dtype
    np.testing.assert_array_equal(got[0], video.instances[0])
    assert (got == want).mean() > 0.999  # float differences may flip a tie, never a mask


def test_propagation_runs_without_torch(exported, video, tmp_path):
    _, result = exported
    np.savez(tmp_path / "video.npz", frames=video.frames, first=video.instances[0])
    code = (
        "import sys, numpy as np; from export.runtime import OnnxModel; "
        "v = np.load(sys.argv[2]); masks = OnnxModel(sys.argv[1]).propagate(v['frames'], v['first']); "
        "print(masks.shape, sorted(np.unique(masks).tolist()))"
    )
    printed = run_without_torch(code, str(result.path), str(tmp_path / "video.npz"))
    assert printed.startswith(f"{video.instances.shape}")


def test_only_propagation_models_propagate(demo_export, video):
    with pytest.raises(OnnxModelError, match="only mask-propagation models"):
        OnnxModel(demo_export.result.path).propagate(video.frames, video.instances[0])


def test_zoo_track_onnx_runs_without_torch(exported, video, tmp_path):
    from PIL import Image

    _, result = exported
    files = []
    for i, frame in enumerate(video.frames[:4]):
        files.append(str(tmp_path / f"f{i}.png"))
        Image.fromarray(frame).save(files[-1])
    Image.fromarray(video.instances[0]).save(tmp_path / "mask.png")
    out = tmp_path / "track.png"
    code = "import sys; from zoo.cli import main; sys.exit(main(['track', '--onnx', *sys.argv[1:]]))"
    printed = run_without_torch(
        code, str(result.path), *files, "--mask", str(tmp_path / "mask.png"), "--out", str(out)
    )
    assert "4 frames" in printed and out.is_file()
