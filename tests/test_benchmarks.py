"""The benchmark scripts run end to end on tiny settings, so they cannot rot (their numbers are not checked)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_onnx_latency_prints_a_row_per_batch_and_the_goal_line():
    out = _run("onnx_latency.py", "cnn_strided", "--budget", "0.05", "--rounds", "1", "--batches", "1", "2")
    rows = [line for line in out.splitlines() if line.startswith("cnn_strided ")]
    assert len(rows) == 2, out
    for row in rows:  # ratio, goal verdict, both throughputs, parity verdict
        assert re.search(r" \d+\.\d\d  (ok|MISS) +\d+ +\d+ +\S+ ok +dynamo$", row), row
    assert "rows missing it:" in out


@pytest.mark.slow
def test_time_to_accuracy_reports_each_seed_and_the_pass_count():
    out = _run(
        "time_to_accuracy.py", "--recipe", "mlp.mnist", "--seeds", "0", "1", "--set", "max_steps=2",
        "--baseline-epochs", "1",
    )  # fmt: skip
    assert re.search(r"mlp\.mnist seed 0: test top-1 0\.\d{4} after", out), out
    assert re.search(r"/2 seeds pass; top-1 min 0\.\d{4}, mean 0\.\d{4}; time max", out), out
    # The classic PyTorch example, in the same run, as the ratio's anchor.
    assert re.search(r"classic PyTorch MNIST example \(1 epochs\): test top-1 0\.\d{4} after", out), out
    assert re.search(r"classic example 0\.\d{4} in [\d.]+ s \(time ratio [\d.]+\)", out), out


@pytest.mark.slow
def test_engine_overhead_prints_the_ratio():
    out = _run("engine_overhead.py", "--recipe", "mlp.mnist", "--epochs", "1", "--repeats", "1")
    assert re.search(r"ratio engine / hand-written: \d+\.\d{3} \(goal >= 0\.97\)", out), out


def test_scene_generation_prints_scenes_per_second():
    out = _run("scene_generation.py", "--n", "20", "--repeats", "1")
    for preset in ("digit_scenes_64", "digit_scenes_128"):
        assert re.search(rf"{preset}: 20 scenes in \d+\.\d\d s \(\d+ scenes/s", out), out


def test_segmentation_identity_splits_touching_digits_from_lone_ones():
    from benchmarks.segmentation_identity import instance_rows

    masks = np.zeros((3, 8, 8), bool)
    masks[0, 1:3, 1:3] = True  # touches digit 1 diagonally
    masks[1, 3:5, 3:5] = True
    masks[2, 6:8, 0:2] = True  # alone
    prediction = np.zeros((8, 8), np.int64)
    prediction[masks[0]] = 4  # right
    prediction[masks[1]] = 4  # wrong: digit 1 is class 5
    prediction[3, 3] = 5
    prediction[masks[2]] = 9
    prediction[7, 0] = 0  # missed: not a predicted-digit pixel
    rows = instance_rows(prediction, masks, np.array([4, 5, 9]))
    assert rows == [(3, True, 4, 4), (3, True, 4, 1), (3, False, 3, 3)]


def test_segmentation_identity_prints_the_split():
    out = _run("segmentation_identity.py", "unet_resnet8_small.scenes", "--limit", "20")
    assert re.search(r"mIoU \d\.\d{4}, foreground IoU \d\.\d{4}, identity \d\.\d{4}", out)
    assert "identity, touching:" in out and "identity, alone:" in out
