"""`zoo train --resume` after SIGKILL mid-epoch ends with the same weights as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from zoo.weights import load_state_dict

ROOT = Path(__file__).resolve().parents[2]
# Dropout (global RNG), augmentation (the run's generator), EMA, momentum and bf16 autocast where the CPU
# has it: every piece of state a resume must restore takes part.
SETTINGS = [
    "--set", "epochs=2",
    "--set", "batch_size=64",
    "--set", 'model_args={"width": 64, "dropout": 0.2}',
    "--set", "checkpoint_every=7",
    "--set", "ema_decay=0.9",
    "--set", "tensorboard=false",
    "--set", "progress=false",
    "--set", "log_every=5",
]  # fmt: skip


def _zoo(*args: str) -> list[str]:
    return [sys.executable, "-m", "zoo", "train", "mlp.mnist", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def test_resume_after_sigkill_mid_epoch_is_exact(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    done = subprocess.run(
        _zoo(*SETTINGS, "--out", str(full)), cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]

    proc = subprocess.Popen(
        _zoo(*SETTINGS, "--out", str(killed)), cwd=ROOT, env=_env(), stderr=subprocess.PIPE
    )
    checkpoint = killed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(0.05)  # let it train past the checkpoint: the resumed run must redo those steps
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    state = torch.load(checkpoint, weights_only=True)
    assert state["progress"]["batch_in_epoch"] > 0, "killed at an epoch boundary: not a mid-epoch resume"
    assert not (killed / "result.json").exists()

    resumed = subprocess.run(
        [sys.executable, "-m", "zoo", "train", "--resume", str(killed)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a = load_state_dict(full / "hub" / "mlp.mnist" / "model.safetensors")
    b = load_state_dict(killed / "hub" / "mlp.mnist" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
    # The replayed steps were not logged twice.
    rows = (killed / "metrics.csv").read_text().splitlines()
    train_steps = [int(r.split(",")[0]) for r in rows[1:] if ",train,loss," in r]
    assert train_steps == sorted(set(train_steps))
