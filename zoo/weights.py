"""Weight folders: safetensors + config.json I/O, sha256 verification, strict loading with a key report.

Safetensors only: nothing here unpickles a file, so a weight from anywhere can be loaded safely.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError, IncompatibleKeysError, WeightsError
from zoo.fileio import atomic_write_bytes

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"

__all__ = [
    "CARD_NAME",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "adapt_input_conv",
    "atomic_write_bytes",
    "check_json_serialisable",
    "file_sha256",
    "load_state_dict",
    "load_state_dict_strict",
    "read_config",
    "save_state_dict",
    "verify_sha256",
    "write_json",
]


def check_json_serialisable(value: Any, where: str) -> None:
    """Refuse values that JSON cannot round-trip, naming the offending key (never drop them silently)."""

    def walk(v: Any, path: str) -> None:
        if v is None or isinstance(v, (bool, int, str)):
            return
        if isinstance(v, float):
            if not math.isfinite(v):
                raise ConfigError(f"{path} = {v!r} is not a finite number and cannot be stored in JSON")
            return
        if isinstance(v, (list, tuple)):
            for i, item in enumerate(v):
                walk(item, f"{path}[{i}]")
            return
        if isinstance(v, Mapping):
            for k, item in v.items():
                if not isinstance(k, str):
                    raise ConfigError(f"{path} has a non-string key {k!r}; JSON keys must be strings")
                walk(item, f"{path}.{k}" if path else k)
            return
        raise ConfigError(
            f"{path} = {v!r} ({type(v).__name__}) is not JSON-serialisable, so it cannot be stored in "
            "config.json and the model could not be rebuilt. Pass it by name instead "
            "(a string such as act='relu', or numbers and lists)."
        )

    walk(value, where)


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> None:
    check_json_serialisable(data, "")
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise WeightsError(
            f"{path} does not exist: a zoo weight folder holds {CONFIG_NAME}, {WEIGHTS_NAME} and {CARD_NAME} "
            "(write one with zoo.save_pretrained)"
        )
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise WeightsError(f"{path} is not valid JSON ({err}); re-download or re-save the weight") from None
    if not isinstance(config, dict) or "architecture" not in config:
        raise WeightsError(f"{path} has no 'architecture' key: it was not written by zoo.save_pretrained")
    return config


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str | None, data: bytes | None = None) -> None:
    """Refuse a weight file whose sha256 differs from the pinned one (tampered, truncated, corrupted).

    ``data``: the file's bytes already read, hashed instead of reading the file again.
    """
    if not expected:
        return
    actual = hashlib.sha256(data).hexdigest() if data is not None else file_sha256(path)
    if actual != expected:
        raise WeightsError(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}. The file is corrupted, truncated "
            "or was modified; delete it and download or restore it again (`zoo pull NAME`)."
        )


def save_state_dict(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> str:
    """Write a state dict as safetensors atomically; returns the file's sha256."""
    from safetensors.torch import save

    # Clone so tensors that share storage (tied weights, views) serialise independently.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    data = save(tensors, metadata={"format": "pt"})
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load_state_dict(path: str | os.PathLike, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Read a safetensors file after verifying its sha256. Other formats are refused, never unpickled."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file {path} does not exist")
    if path.suffix != ".safetensors":
        raise WeightsError(f"{path} is not a .safetensors file; the zoo loads safetensors only (no pickle)")
    # One read: the bytes that are hashed are the bytes that are loaded (no window to swap the file between).
    data = path.read_bytes()
    verify_sha256(path, expected_sha256, data)
    try:
        return load(data)
    except SafetensorError as err:
        raise WeightsError(
            f"{path} is not a readable safetensors file ({err}); it may be truncated"
        ) from None


def load_state_dict_strict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "state dict", allow_missing=()
) -> None:
    """`load_state_dict(strict=True)` with a readable report of missing, unexpected and mismatched keys.

    ``allow_missing`` lists key prefixes that may stay at their fresh initialisation (a re-made head).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict and not k.startswith(tuple(allow_missing or ("\0",)))]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state_dict.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        lines = [f"{source} does not match {type(model).__name__}:"]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                shown = keys[:20] + ([f"... and {len(keys) - 20} more"] if len(keys) > 20 else [])
                lines.append(f"  {title} ({len(keys)}): " + ", ".join(shown))
        lines.append("Check that the weight was trained for this architecture and these builder arguments.")
        raise IncompatibleKeysError("\n".join(lines), missing, unexpected, mismatched)
    model.load_state_dict(state_dict, strict=not allow_missing)


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt a first-layer kernel (O, I, kH, kW) trained on I channels to `in_chans` channels.

    Like timm: to one channel, sum over the input channels (a grey image is the mean of equal RGB planes);
    otherwise repeat the kernel across channels and rescale so the activation magnitude is preserved.
    """
    trained = weight.shape[1]
    if in_chans == trained:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = math.ceil(in_chans / trained)
    return weight.repeat(1, repeats, *([1] * (weight.dim() - 2)))[:, :in_chans] * (trained / in_chans)
