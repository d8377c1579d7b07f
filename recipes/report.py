"""The published-weights table for the README, generated from the hub folders' config.json (never typed).

.venv/bin/python -m recipes.report            # markdown table of every in-tree weight
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zoo.registry import IN_TREE_HUB
from zoo.tasks import get_task


def _row(config: dict[str, Any]) -> dict[str, str]:
    w = config["weights"]
    training = w.get("training") or {}
    metrics = w.get("metrics") or {}
    task = get_task(w["task"])  # the task says which of its metrics head a table
    shown = [
        f"{title} {fmt.format(metrics[key])}" for key, title, fmt in task.headline_metrics if key in metrics
    ]
    machine = training.get("machine") or {}
    load = machine.get("load_avg_1m_at_start")
    # Where it trained: the GPU's name for a CUDA run, else the CPU's core count and load at the start.
    if str(training.get("device", "")).startswith("cuda") and machine.get("gpu"):
        where = f" on {machine['gpu']}"
    else:
        cores, threads = machine.get("cores", "?"), machine.get("threads")
        used = f"{threads} thread of {cores}" if threads == 1 and cores != 1 else f"{cores}"
        where = f" on {used} CPU cores" + (f", load {load}" if load is not None else "")
    return {
        "weight": f"`{w['arch']}.{w['tag']}`",
        "task": task.name,
        "params": f"{w.get('num_params') or 0:,}",
        "test metrics": ", ".join(shown) or "-",
        "train time": f"{training.get('train_time_s', float('nan')):.0f} s, {training.get('epochs', '?')} epochs"
        + where,
        "recipe": f"`zoo train {w['recipe']}`" if w.get("recipe") else "-",
    }


def weights_table(hub: Path = IN_TREE_HUB) -> str:
    rows = []
    for config_path in sorted(hub.glob("*/config.json")):
        config = json.loads(config_path.read_text())
        if config.get("weights"):
            rows.append(_row(config))
    if not rows:
        return "(no published weights)"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(r[k] for k in keys) + " |" for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    print(weights_table())
