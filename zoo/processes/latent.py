"""Latent sampling of GAN generators: checks shared by ``model.sample`` (torch) and the torch-free runtime
(`export.adapters.gan`), so both refuse the same bad input with the same words. Imports no torch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zoo.errors import ConfigError

__all__ = ["check_labels", "check_n"]


def check_labels(labels: Any, n: int, num_classes: int, names: Sequence[str] = ()) -> list[int] | None:
    """Class indices for `n` samples (cycled from the given ones; all classes in turn when None) or None
    for an unconditional model. Raises a clear `ConfigError` for labels on an unconditional model or an
    index outside ``0..num_classes-1``. Imports neither torch nor numpy: `model.sample` and the torch-free
    runtime share it."""
    if not num_classes:
        if labels is not None:
            raise ConfigError("this model is unconditional: it takes no labels (sample without --labels)")
        return None
    if labels is None:
        return [i % num_classes for i in range(n)]
    if isinstance(labels, int):
        given = [labels]
    elif hasattr(labels, "tolist"):
        flat = labels.tolist()
        given = [flat] if isinstance(flat, int) else list(flat)
    else:
        given = list(labels)
    if not given:
        raise ConfigError("labels is empty: give at least one class index")
    # Names only where they say more than the index (MNIST's labels are "0".."9").
    allowed = ", ".join(
        f"{i} ({names[i]})" if i < len(names) and names[i] != str(i) else str(i) for i in range(num_classes)
    )
    for label in given:
        if not float(label).is_integer() or not 0 <= int(label) < num_classes:
            raise ConfigError(f"label {label} is not one of this model's classes: {allowed}")
    return [int(given[i % len(given)]) for i in range(n)]


def check_n(n: Any) -> int:
    """`n` as an int; a clear error unless it is a whole number >= 1."""
    if isinstance(n, bool) or not float(n).is_integer() or int(n) < 1:
        raise ConfigError(f"n={n}: the number of samples must be >= 1")
    return int(n)
