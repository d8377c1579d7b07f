"""Shared exports for the export suite: every model is exported once per session and reused.

Models are built with a fixed seed and their BatchNorm statistics calibrated on example inputs
(`export.onnx.calibrate_batchnorm`), so random-init activations have a trained network's scale and the
1e-4 parity bound means what it means for real weights. ImageNet-size models are traced at 64x64: the
graphs have dynamic height and width, and the export is as valid as at 224 (validated at 64x64 and
128x192), at a fraction of the time.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import zoo
from export.onnx import ExportResult, calibrate_batchnorm, to_onnx
from tests.helpers import build

# The largest side a dynamic-size model is traced at in the suite.
MAX_SIDE = 64

# A `python -c` prelude that makes `import torch` fail, to prove the runtime never needs it.
NO_TORCH = """
import sys

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this process: the ONNX runtime must not need it")
        return None

sys.meta_path.insert(0, _NoTorch())
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the torch blocker did not work")
"""

REPO = Path(__file__).resolve().parents[2]


def run_without_torch(code: str, *args: str) -> str:
    """Run `code` in a fresh interpreter where importing torch fails; returns stdout, fails on error."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-c", NO_TORCH + code, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, (
        f"torch-free run failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout


def export_size(model: Any) -> tuple[int, ...]:
    channels, height, width = model.input_size
    if getattr(model, "dynamic_size", False):
        return (channels, min(height, MAX_SIDE), min(width, MAX_SIDE))
    return (channels, height, width)


@dataclass
class Exported:
    name: str
    model: Any  # the PyTorch model the files came from (eval mode)
    result: ExportResult
    input_size: tuple[int, ...]


class ExportCache:
    """Exports on first request, into one session folder; later requests get the same files."""

    def __init__(self, root: Path):
        self.root = root
        self._done: dict[str, Exported] = {}

    def get(self, name: str) -> Exported:
        if name not in self._done:
            model = build(name)
            size = export_size(model)
            calibrate_batchnorm(model)
            result = to_onnx(model, self.root / name / f"{name}.onnx", input_size=size)
            self._done[name] = Exported(name, model, result, size)
        return self._done[name]


@pytest.fixture(scope="session")
def exports(tmp_path_factory) -> ExportCache:
    return ExportCache(tmp_path_factory.mktemp("onnx"))


@dataclass
class DemoWeight:
    name: str
    model: Any  # loaded with its weight, eval mode
    result: ExportResult
    meta: zoo.Weights


@pytest.fixture(scope="session")
def demo_export(tmp_path_factory) -> DemoWeight:
    """A published-looking weight (labels, mean/std, sha256), exported once for the session.

    ``resnet8_small.onnxdemo``: one grey channel, 28x28, ten digit labels, normalised inputs, so the
    runtime's preprocessing and labels are exercised as for a real weight.
    """
    from zoo.registry import Weights, register_weights, unregister_weights

    hub = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    model = zoo.create_model("resnet8_small", in_chans=1, num_classes=10, img_size=28)
    calibrate_batchnorm(model)
    meta = Weights(
        arch="resnet8_small",
        tag="onnxdemo",
        task="image-classification",
        labels=tuple(f"digit-{i}" for i in range(10)),
        mean=(0.5,),
        std=(0.25,),
        dataset="synthetic",
        split="none",
        revision="0123456789abcdef0123456789abcdef01234567",
    )
    name = "resnet8_small.onnxdemo"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_HUB_DIR", str(hub))
        zoo.save_pretrained(model, hub / name, meta)
        written = zoo.load_pretrained(hub / name).pretrained_weights
        register_weights(written.replace(tag="onnxdemo", revision=meta.revision))
        try:
            loaded = zoo.create_model(name, pretrained=True).eval()
            result = to_onnx(name, tmp_path_factory.mktemp("demo") / f"{name}.onnx")
        finally:
            unregister_weights(name)
    return DemoWeight(name, loaded, result, loaded.pretrained_weights)


def write_png(path: Path, shape: tuple[int, ...], seed: int = 0) -> Path:
    """A random image file (grey for (H, W), RGB for (H, W, 3))."""
    from PIL import Image

    pixels = (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path
