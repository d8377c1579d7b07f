"""`import zoo` stays cheap: no detection, ONNX, plotting or search libraries at import time."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ["torchvision.models.detection", "onnx", "onnxruntime", "matplotlib", "optuna", "huggingface_hub"]


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_import_zoo_and_listing_pull_in_nothing_heavy():
    loaded = _modules_after("import zoo; zoo.list_models(); zoo.create_model('resnet18')")
    assert not [m for m in HEAVY if m in loaded]


def test_import_zoo_alone_does_not_import_torch():
    assert "torch" not in _modules_after("import zoo")
