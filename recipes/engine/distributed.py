"""The few ``torch.distributed`` pieces the trainer needs under ``torchrun`` (rank 0 writes everything)."""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["all_reduce_sum", "broadcast_keys", "dist_env"]


def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) in a plain process."""
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """`values` summed over every rank, in place (unchanged when not distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(values)
    return values


def broadcast_keys(keys: list[str]) -> list[str]:
    """The sorted union of every rank's `keys`: what each rank must reduce, even one that saw no batch."""
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, keys)
    return sorted({k for ks in gathered for k in ks})
