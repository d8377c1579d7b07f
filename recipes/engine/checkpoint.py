"""The pieces of a checkpoint that are not a ``state_dict()`` call: every RNG of a process, and writing
and reading the file (atomically, tensors and plain containers only, so ``weights_only`` loading works).

The `Trainer` assembles the state itself (``Trainer.state_dict`` for the file, ``Trainer.snapshot`` in
memory) from these helpers, so a resumed run and a restored snapshot load exactly the same things.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import ConfigError
from zoo.weights import atomic_write_bytes

__all__ = ["CHECKPOINT_VERSION", "read_checkpoint", "rng_state", "set_rng_state", "write_checkpoint"]

CHECKPOINT_VERSION = 1


def rng_state(generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    """Every random stream of this process: torch (CPU, and CUDA on a GPU), the run's `generator`, numpy
    and Python's ``random``, as tensors and plain values."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator, device: torch.device) -> None:
    """Put back what `rng_state` returned."""
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(_tuples(state["python"]))
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _tuples(value: Any) -> Any:
    # A checkpoint stores Python's RNG state with lists where random.setstate wants tuples.
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    return value


def write_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """`state` saved to `path` atomically (temp file, fsync, rename): a kill never leaves half a file."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_checkpoint(path: Path | None, device: torch.device, config: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint at `path`, checked to be of this version and written with this `config`."""
    if path is None or not path.is_file():
        raise ConfigError(f"cannot resume: no checkpoint at {path}")
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"{path} was written by another checkpoint version ({state.get('version')})")
    if state["config"] != config:
        raise ConfigError(f"{path} was written with another config: resume with the run's own config.json")
    return state
