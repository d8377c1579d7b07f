"""What a run records besides its weights: the metrics log (`RunLogger`: CSV and TensorBoard), the PNG of
the curves (`plot_curves`) and the machine and code it ran on (`machine_info`, `git_commit`)."""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from zoo.weights import atomic_write_bytes

__all__ = ["RunLogger", "cpu_has_bf16", "git_commit", "machine_info", "plot_curves"]


class RunLogger:
    """CSV (long format: one row per value) and TensorBoard on rank 0, plus the history for the curves."""

    FIELDS = ("step", "epoch", "split", "metric", "value")

    def __init__(self, run_dir: Path | None, tensorboard: bool, resume_step: int | None):
        self.history: list[dict[str, Any]] = []
        self.run_dir = run_dir
        self._tb = None
        self._csv = None
        if run_dir is None:
            return
        path = run_dir / "metrics.csv"
        if resume_step is not None and path.is_file():
            # Rows logged after the checkpoint are replayed by the resumed run: keep only the earlier ones.
            with open(path, newline="") as f:
                self.history = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
            for r in self.history:
                r["step"], r["epoch"], r["value"] = int(r["step"]), int(r["epoch"]), float(r["value"])
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, self.FIELDS)
                w.writeheader()
                w.writerows(self.history)
        elif not path.is_file() or resume_step is None:
            with open(path, "w", newline="") as f:
                csv.DictWriter(f, self.FIELDS).writeheader()
        self._csv = open(path, "a", newline="")  # noqa: SIM115 (closed in close())
        self._writer = csv.DictWriter(self._csv, self.FIELDS)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional dependency
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step)

    def log(self, step: int, epoch: int, split: str, values: dict[str, float]) -> None:
        rows = [
            {"step": step, "epoch": epoch, "split": split, "metric": k, "value": float(v)}
            for k, v in values.items()
        ]
        self.history += rows
        if self._csv is not None:
            self._writer.writerows(rows)
            self._csv.flush()
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{split}/{k}", float(v), step)

    def close(self) -> None:
        if self._csv is not None:
            self._csv.close()
        if self._tb is not None:
            self._tb.close()


MAX_CURVES = (
    8  # metric series per panel; more (per-class numbers) crowd the legend: they are in the card's table
)
HEALTH = ("grad_norm",)  # training-health series, on their own axis (their scale would flatten the metrics)


def curve_panels(history: list[dict[str, Any]]) -> list[tuple[str, dict[tuple[str, str], list]]]:
    """The panels `plot_curves` draws, as (title, {(split, metric): [(step, value), ...]}): the losses, the
    gradient norm, and the metrics measured at more than one step (validation curves, at most `MAX_CURVES`, the
    longest first). A metric measured once (the final test numbers) is not a curve: the card's metrics table
    has it. Without gradient norms or curves, the learning rate is the second panel."""
    # One value per step and metric, the last logged: a run resumed after it finished (to publish again)
    # logs its test numbers a second time at the same step, which is no curve.
    by_step: dict[tuple[str, str], dict[int, float]] = {}
    for row in history:
        by_step.setdefault((row["split"], row["metric"]), {})[int(row["step"])] = float(row["value"])
    series = {k: sorted(v.items()) for k, v in by_step.items()}
    losses = {k: v for k, v in series.items() if "loss" in k[1]}
    health = {k: v for k, v in series.items() if k[1] in HEALTH}
    curves = {
        k: v
        for k, v in series.items()
        if len(v) > 1 and "loss" not in k[1] and k[1] not in (*HEALTH, "lr", "samples_per_s")
    }
    curves = dict(sorted(curves.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:MAX_CURVES])
    panels = [("loss", losses), ("gradient norm", health), ("metrics", curves)]
    panels = [(name, group) for name, group in panels if group] or [("loss", losses)]
    if len(panels) == 1:
        panels.append(("learning rate", {k: v for k, v in series.items() if k[1] == "lr"}))
    return panels


def plot_curves(history: list[dict[str, Any]], path: Path, title: str = "") -> Path | None:
    """The `curve_panels` of a run's logged history side by side, as a PNG (matplotlib, Agg)."""
    if not history:
        return None
    # The object API with the Agg canvas: no pyplot, no global figure state, no GUI backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = curve_panels(history)
    fig = Figure(figsize=(5.5 * len(panels), 4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels))
    for ax, (name, group) in zip(axes, panels):
        for (split, metric), points in sorted(group.items()):
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=f"{split}/{metric}")
        ax.set_xlabel("optimizer step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if group:
            ax.legend(fontsize=8)
    values = [v for pts in panels[0][1].values() for _, v in pts]
    if values and min(values) > 0 and max(values) / min(values) > 10:
        axes[0].set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    atomic_write_bytes(path, buf.getvalue())
    return path


def machine_info() -> dict[str, Any]:
    """CPU model, cores, torch threads, GPU and the load at the start: what a training time depends on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    with contextlib.suppress(OSError, AttributeError):
        info["load_avg_1m_at_start"] = round(os.getloadavg()[0], 2)
    return info


@functools.cache
def git_commit() -> str | None:
    """The commit of the code that ran (``+dirty`` with uncommitted changes to tracked files).

    Where the code travels without its git folder (a copy of the working tree on another machine), the
    ``ZOO_GIT_COMMIT`` environment variable names it (and wins over whatever git folder travelled along).
    """
    if os.environ.get("ZOO_GIT_COMMIT"):
        return os.environ["ZOO_GIT_COMMIT"]
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        if dirty:
            commit += "+dirty"
    return commit or None


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX): where ``precision=auto`` picks bf16."""
    with contextlib.suppress(OSError):
        flags = Path("/proc/cpuinfo").read_text()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False
