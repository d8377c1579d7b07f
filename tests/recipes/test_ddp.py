"""DDP under torchrun on CPU (gloo): 2 processes give the metrics of 1 process within tolerance."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# No augmentation (mlp.mnist's style changes off too), no dropout and no batch norm: each global batch holds
# the same images in both runs and DDP averages the two half-batch gradients into the full-batch one, so only
# float rounding differs.
SETTINGS = [
    "--set", "model=mlp_small",
    "--set", "style_p=0",
    "--set", "epochs=2",
    "--set", "batch_size=128",
    "--set", "degrees=0",
    "--set", "translate=0",
    "--set", "scale=[1,1]",
    "--set", "precision=fp32",
    "--set", "tensorboard=false",
    "--set", "progress=false",
    "--set", "val_per_class=20",
]  # fmt: skip


def _run(command: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # A session of its own, so that a hung worker is killed with its launcher instead of outliving the test.
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
    assert proc.returncode == 0, out[-2000:] + err[-3000:]


@pytest.mark.skipif(
    shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun"
)
def test_two_processes_match_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, "-m", "zoo", "train", "mlp.mnist", *SETTINGS, "--out", str(one)])
    torchrun = str(Path(sys.executable).parent / "torchrun")
    _run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "zoo",
            "train",
            "mlp.mnist",
            *SETTINGS,
            "--out",
            str(two),
        ]
    )
    r1 = json.loads((one / "result.json").read_text())
    r2 = json.loads((two / "result.json").read_text())
    assert r2["training"]["processes"] == 2 and r1["training"]["processes"] == 1
    assert r1["steps"] == r2["steps"]
    assert r2["metrics"]["acc"] > 0.8, "the 2-process run did not learn"
    assert abs(r1["metrics"]["acc"] - r2["metrics"]["acc"]) <= 0.003
    assert abs(r1["metrics"]["loss"] - r2["metrics"]["loss"]) <= 2e-3 * r1["metrics"]["loss"]
    assert abs(r1["val_metrics"]["acc"] - r2["val_metrics"]["acc"]) <= 0.005
    # Rank 0 alone wrote the logs: every (step, split, metric) appears once.
    rows = (two / "metrics.csv").read_text().splitlines()[1:]
    keys = [tuple(r.split(",")[i] for i in (0, 2, 3)) for r in rows]
    assert len(keys) == len(set(keys))
    assert (two / "hub" / "mlp_small.local" / "model.safetensors").is_file()
