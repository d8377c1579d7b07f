"""Two gloo processes, each updating with its own (unequal) shard, compute what one process computes over
the whole split: sums are all-reduced (Mean, Accuracy, MeanIoU), banks all-gathered (KNNAccuracy), and
torchmetrics' own state synchronised (FID)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from zoo.metrics import FID, Accuracy, KNNAccuracy, Mean, MeanIoU

WORLD = 2


def _data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    seg_target = torch.randint(0, 4, (10, 12, 12), generator=g)
    seg_logits = torch.randn(10, 4, 12, 12, generator=g)
    seg_logits.scatter_add_(1, seg_target[:, None], torch.ones(10, 1, 12, 12))
    return {
        "logits": torch.randn(101, 7, generator=g),
        "labels": torch.randint(0, 7, (101,), generator=g),
        "values": torch.rand(101, generator=g) * 3,
        "seg_logits": seg_logits,
        "seg_target": seg_target,
        "bank": torch.randn(90, 8, generator=g),
        "bank_labels": torch.randint(0, 3, (90,), generator=g),
        "fake": torch.rand(20, 1, 8, 8, generator=g) * 0.7,
        "real": torch.rand(20, 1, 8, 8, generator=g),
    }


def _fid_network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 5))


def _shard(x: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    # Unequal shards (about 60% / 40%), as a split that does not divide by the world size leaves them.
    cut = (len(x) * 3) // 5
    return x if world == 1 else (x[:cut] if rank == 0 else x[cut:])


def _metrics(rank: int, world: int) -> dict[str, float]:
    d = {k: _shard(v, rank, world) for k, v in _data().items()}
    acc, loss, idle, miou = Accuracy(), Mean("loss"), Mean("idle"), MeanIoU(4)
    # Batches of 20 start at the shard boundary (60) too, so both runs sum the same float32 batch sums.
    for lo in range(0, len(d["labels"]), 20):
        acc.update(d["logits"][lo : lo + 20], d["labels"][lo : lo + 20])
        loss.update(d["values"][lo : lo + 20])
    if rank == 0:  # a metric that one rank never updates: the reduction must still line up
        idle.update(torch.tensor(5.0), 2)
    for lo in range(0, len(d["seg_target"]), 3):
        miou.update(d["seg_logits"][lo : lo + 3], d["seg_target"][lo : lo + 3])
    knn = KNNAccuracy(k=5).fit(d["bank"], d["bank_labels"])  # each rank holds part of the bank
    knn.update(d["bank"][:20], d["bank_labels"][:20])
    fid = FID(_fid_network(), 5, (1, 8, 8))
    fid.update(d["fake"], d["real"])
    out: dict[str, float] = {}
    for metric in (acc, loss, idle, miou, knn, fid):  # the same order on every rank: compute is a collective
        out.update(metric.compute())
    return out


def _worker(rank: int, store: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        result = _metrics(rank, WORLD)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        torch.distributed.destroy_process_group()


def test_sharded_compute_equals_one_process(tmp_path, monkeypatch):
    # Loopback only: gloo otherwise resolves the host's interfaces, which a sandbox may not route.
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    ctx = mp.start_processes(
        _worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 240
    while not ctx.join(timeout=1):  # raises if a worker failed
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the DDP workers did not finish (a collective that only one rank entered?)")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert ranks[0] == ranks[1]  # every rank reports the split's values
    one = _metrics(0, 1)
    sharded = ranks[0]
    assert set(sharded) == set(one)
    for key in ("acc", "top5", "idle", "miou", "pixel_acc", "iou_0", "iou_3", "knn_acc"):
        assert sharded[key] == one[key], key  # integer counts: exactly equal
    assert sharded["loss"] == pytest.approx(one["loss"], rel=1e-12)  # float64 sums added in another order
    assert sharded["fid"] == pytest.approx(one["fid"], rel=1e-6)
    # Rank 0's shard alone (no process group here) gives other values: the equalities needed the reduction.
    alone = _metrics(0, WORLD)
    assert all(alone[k] != one[k] for k in ("acc", "loss", "miou", "fid"))
