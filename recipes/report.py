"""The README's tables, generated from the hub folders' config.json (never typed).

.venv/bin/python -m recipes.report            # every in-tree weight, the instance-segmentation comparison and
                                              # the self-supervised label-efficiency table (and its figure,
                                              # docs/label_efficiency.png) and every method's test error
                                              # by labels per class (docs/label_efficiency_methods.png)

`weights_table`: one row per published weight. `semi_supervised_table`: test error of each semi-supervised method by label draw
(`label_efficiency_points` / `label_efficiency_methods_figure`: those, the fine-tuned encoders and the probes by labels per class). `noisy_labels_table`:
accuracy from noisy train labels against the clean-label recipe. `propagation_table`: the
tracking-by-colorization weights and
their baselines (propagated mask IoU on the same test videos). `instance_comparison_table`: the proposal-based (Mask R-CNN) and
proposal-free instance models side by side on the same test scenes, on all of them and on those whose digits
touch, with the Otsu + components + classifier baseline their cards record. `robustness_table`: the
classifiers' corruption robustness and calibration (`zoo.reliability`). ``tests/recipes/test_report.py``
checks that the README holds exactly these tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.card import reproduce_command
from zoo.fileio import atomic_write_bytes
from zoo.registry import IN_TREE_HUB
from zoo.results import published
from zoo.tasks import get_task


def _published(hub: Path) -> list[dict[str, Any]]:
    return list(published(hub).values())


def _markdown(rows: list[dict[str, str]]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(r[k] for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def where_trained(training: dict[str, Any]) -> str:
    """Where a weight trained, from its training record, as " on ...": the GPU, or the CPU cores (one thread
    of them, or DDP processes over them) and the load average at the start."""
    machine = training.get("machine") or {}
    load = machine.get("load_avg_1m_at_start")
    # Where it trained: the GPU's name for a CUDA run, else the CPU's core count and load at the start.
    if str(training.get("device", "")).startswith("cuda") and machine.get("gpu"):
        where = f" on {machine['gpu']}"
    else:
        cores, threads = machine.get("cores", "?"), machine.get("threads")
        processes = int(training.get("processes") or 1)
        alone = threads == 1 and cores != 1 and processes == 1
        used = f"{threads} thread of {cores}" if alone else f"{cores}"
        ddp = f" ({processes} DDP processes)" if processes > 1 else ""
        where = f" on {used} CPU cores{ddp}" + (f", load {load}" if load is not None else "")
    return where


def _row(config: dict[str, Any]) -> dict[str, str]:
    w = config["weights"]
    training = w.get("training") or {}
    metrics = w.get("metrics") or {}
    task = get_task(w["task"])  # the task says which of its metrics head a table
    shown = [
        f"{title} {fmt.format(metrics[key])}" for key, title, fmt in task.headline_metrics if key in metrics
    ]
    return {
        "weight": f"`{w['arch']}.{w['tag']}`",
        "task": task.name,
        "params": f"{w.get('num_params') or 0:,}",
        "test metrics": ", ".join(shown) or "-",
        "train time": f"{training.get('train_time_s', float('nan')):.0f} s, {training.get('epochs', '?')} epochs"
        + where_trained(training),
        "recipe": f"`{reproduce_command(w)}`" if w.get("recipe") else "-",
    }


def weights_table(hub: Path = IN_TREE_HUB) -> str:
    """One row per published weight: task, parameters, headline test metrics, training time and place."""
    rows = [_row(config) for config in _published(hub)]
    return _markdown(rows) if rows else "(no published weights)"


# Columns of the instance comparison: (title, metric key). Masks are the unprefixed COCOeval numbers of an
# instance weight, boxes the bbox_* ones; overlap_* is the subset of test scenes whose digits touch.
INSTANCE_COLUMNS = (
    ("mask AP", "map"),
    ("mask AP50", "map_50"),
    ("mask AP75", "map_75"),
    ("touching: mask AP", "overlap_map"),
    ("box AP", "bbox_map"),
    ("touching: box AP", "overlap_bbox_map"),
)
# How each family finds its instances, for the table's method column.
INSTANCE_METHODS = {
    "detection": "proposal-based: Mask R-CNN (RPN proposals, RoIAlign mask head)",
    "proposal_free": "proposal-free: dense classes + centres + offsets, grouped per pixel",
}


def instance_comparison_table(hub: Path = IN_TREE_HUB) -> str:
    """Every published instance-segmentation weight on its test scenes (COCOeval, all scenes and the
    touching subset), then each distinct baseline its cards record on the same scenes."""
    from zoo.registry import get_entry

    fmt = "{:.3f}".format
    rows, baselines = [], {}
    for config in _published(hub):
        w = config["weights"]
        if get_task(w["task"]).name != "instance-segmentation":
            continue
        metrics, training = w.get("metrics") or {}, w.get("training") or {}
        family = get_entry(w["arch"]).family
        row = {"model": f"`{w['arch']}.{w['tag']}`", "method": INSTANCE_METHODS.get(family, family)}
        row.update({title: fmt(metrics[k]) if k in metrics else "-" for title, k in INSTANCE_COLUMNS})
        row["params"] = f"{w.get('num_params') or 0:,}"
        row["train time"] = f"{training.get('train_time_s', float('nan')):.0f} s" + where_trained(training)
        rows.append(row)
        for method, values in (w.get("baselines") or {}).items():
            baselines.setdefault((w["dataset"], method), values)
    if not rows:
        return "(no published instance-segmentation weights)"
    for (_, method), values in baselines.items():
        row = {"model": "baseline", "method": method}
        row.update({title: fmt(values[k]) if k in values else "-" for title, k in INSTANCE_COLUMNS})
        rows.append({**row, "params": "-", "train time": "-"})
    return _markdown(rows)


def _feature_weights(hub: Path) -> list[dict[str, Any]]:
    return [
        c["weights"] for c in _published(hub) if get_task(c["weights"]["task"]).name == "feature-extraction"
    ]


def label_efficiency_table(hub: Path = IN_TREE_HUB) -> str:
    """Linear-probe and kNN test accuracy by number of train labels for every published self-supervised
    encoder, then each baseline their cards record on the same draws (mean ± spread over 3 draws)."""
    from zoo.tasks.features import label_efficiency_markdown

    encoders: dict[str, dict[str, float]] = {}
    for w in _feature_weights(hub):
        encoders[f"`{w['arch']}.{w['tag']}`"] = w.get("metrics") or {}
    for w in _feature_weights(hub):
        for name, values in (w.get("baselines") or {}).items():
            key = f"baseline: {name}"
            if key in encoders and encoders[key] != values:  # e.g. another architecture's random init
                key = f"baseline: {name} ({w['arch']})"
            encoders.setdefault(key, values)
    return "\n".join(label_efficiency_markdown(encoders)) or "(no published self-supervised weights)"


def label_efficiency_figure(path: Path, hub: Path = IN_TREE_HUB) -> None:
    """`label_efficiency_table` as one figure: accuracy against labels (log axis), a line per encoder."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = {"_n10": 10, "_n100": 100, "_n1000": 1000, "": 4000}
    encoders: dict[str, dict[str, float]] = {}
    for w in _feature_weights(hub):
        encoders[f"{w['arch']}.{w['tag']}"] = w.get("metrics") or {}
        for name, values in (w.get("baselines") or {}).items():
            encoders.setdefault(
                name if encoders.get(name, values) == values else f"{name} ({w['arch']})", values
            )
    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    for i, (key, title) in enumerate((("linear_acc", "linear probe"), ("knn_acc", "kNN (k = 20)"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for name, m in encoders.items():
            points = [
                (n, m[key + s], m.get(key + s + "_std", 0.0)) for s, n in labels.items() if key + s in m
            ]
            if points:
                xs, ys, es = zip(*points)
                style = "-" if "." in name else "--"  # published weights solid, baselines dashed
                ax.errorbar(xs, ys, yerr=es, fmt="o" + style, capsize=3, label=name)
        ax.set_xscale("log")
        ax.set(xlabel="train labels (MNIST 5k)", ylabel="test accuracy (1,000 images)", title=title)
        ax.grid(alpha=0.3)
        if i == 1:
            ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


# A feature-extraction card's probe metric suffix -> train labels per class (MNIST 5k: 400 per digit).
PROBE_LABELS_PER_CLASS = {"_n10": 1, "_n100": 10, "_n1000": 100, "": 400}


def _mean_spread(errors: list[float]) -> tuple[float, float]:
    import statistics

    return statistics.mean(errors), statistics.stdev(errors) if len(errors) > 1 else 0.0


def label_efficiency_points(hub: Path = IN_TREE_HUB) -> dict[str, list[tuple[int, float, float]]]:
    """Test error (mean, spread over label draws) by train labels per class, one series per method, from the
    cards: the plain ``cnn`` trained on the labels only (the semi-supervised baseline's draws, and
    ``cnn.mnist`` on every label), each semi-supervised method and each fine-tuned encoder on its draws
    (`recipes.semi_supervised.method_label`), and each self-supervised encoder's linear probe
    (``linear_acc_n*``: its own label draws on the frozen features)."""
    from recipes.semi_supervised import method_label

    draws: dict[str, dict[int, list[float]]] = {}
    series: dict[str, list[tuple[int, float, float]]] = {}
    for config in _published(hub):
        w = config["weights"]
        rc, metrics = w.get("recipe_config") or {}, w.get("metrics") or {}
        if w["task"] == "image-classification" and w["arch"] == "cnn" and "acc" in metrics:
            if "labels_per_class" in rc:
                method = method_label(rc)
                name = "supervised only" if method == "supervised" else method
                draws.setdefault(name, {}).setdefault(rc["labels_per_class"], []).append(1 - metrics["acc"])
            elif "noise_rate" not in rc and w.get("dataset") == "mnist_5k":  # cnn.mnist: every clean label
                draws.setdefault("supervised only", {}).setdefault(PROBE_LABELS_PER_CLASS[""], []).append(
                    1 - metrics["acc"]
                )
        elif get_task(w["task"]).name == "feature-extraction" and "linear_acc" in metrics:
            series[f"{w['arch']}.{w['tag']} linear probe"] = [
                (n, 1 - metrics["linear_acc" + s], metrics.get("linear_acc" + s + "_std", 0.0))
                for s, n in PROBE_LABELS_PER_CLASS.items()
                if "linear_acc" + s in metrics
            ]
    for name, by_labels in draws.items():
        series[name] = [(n, *_mean_spread(errors)) for n, errors in sorted(by_labels.items())]
    return dict(sorted(series.items()))


# One colour per encoder (its probe line and its fine-tuned star), others for the semi-supervised methods.
PROBE_COLOURS = ["tab:blue", "tab:green", "tab:cyan", "tab:olive", "tab:gray", "tab:pink", "tab:brown"]
METHOD_COLOURS = {"fixmatch": "crimson", "mean_teacher": "darkorange", "pseudo_label": "darkviolet"}


def label_efficiency_methods_figure(path: Path, hub: Path = IN_TREE_HUB) -> Any:
    """`label_efficiency_points` as one figure (test error against labels per class, both axes log): the
    probes as lines, the supervised-only cnn as a dashed line, the semi-supervised and fine-tuned runs as
    markers with their draws' spread (nudged right of the baseline's marker so that none hides another). Returns the matplotlib Figure (its error bars carry the numbers)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = label_efficiency_points(hub)
    fig = Figure(figsize=(12, 5.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    encoders = [n.split(" ")[0].split(".")[0] for n in points if n.endswith("probe")]
    colours = {**dict(zip(encoders, PROBE_COLOURS * 2)), **METHOD_COLOURS}

    # Legend order: the baseline, the semi-supervised methods, the fine-tuned encoders, the probes.
    def group(name: str) -> int:
        return (
            0 if name == "supervised only" else 3 if name.endswith("probe") else 2 if " from " in name else 1
        )

    points = dict(sorted(points.items(), key=lambda item: (group(item[0]), item[0])))
    # The runs at one label budget side by side, right of the baseline's marker: x times 1.12, 1.25, ...
    markers = [n for n in points if group(n) in (1, 2)]
    nudge = {n: 1.12 ** (i + 1) for i, n in enumerate(markers)}
    for name, rows in points.items():
        xs, ys, es = zip(*rows)
        xs = [x * nudge.get(name, 1.0) for x in xs]
        ys, es = [100 * y for y in ys], [100 * e for e in es]
        # A fine-tuned run takes its encoder's colour ("supervised from simclr_cnn.mnist" -> simclr_cnn).
        colour = colours.get(name.split(" ")[-1 if " from " in name else 0].split(".")[0])
        if name.endswith("probe"):
            style = {"fmt": "o-", "lw": 1, "ms": 4, "alpha": 0.6, "color": colour}
        elif name == "supervised only":
            style = {"fmt": "s--", "lw": 2, "ms": 7, "color": "black"}
        elif " from " in name:  # fine-tuned: the encoder's colour, a star
            style = {"fmt": "*", "ms": 14, "color": colour, "mec": "black"}
        else:
            style = {"fmt": "D", "ms": 9, "mec": "black", "color": colour}
        ax.errorbar(xs, ys, yerr=es, capsize=3, label=name, **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([1, 10, 100, 400], ["1", "10", "100", "400 (all)"])
    ax.set_yticks([1, 2, 5, 10, 20, 50], ["1%", "2%", "5%", "10%", "20%", "50%"])
    ax.set(
        xlabel="train labels per class (MNIST 5k)",
        ylabel="test error (1,000 images)",
        title="Semi-supervised, fine-tuned and frozen-feature probes, all on the plain cnn",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    return fig


def semi_supervised_table(hub: Path = IN_TREE_HUB) -> str:
    """The semi-supervised weights (`recipes.semi_supervised`), one row per method: test error on each label
    draw of 10 labels per digit that is published, and their mean and spread."""
    import statistics

    from recipes.semi_supervised import method_label

    by_method: dict[str, dict[int, tuple[str, float]]] = {}
    for config in _published(hub):
        w = config["weights"]
        rc = w.get("recipe_config") or {}
        if "labels_per_class" not in rc or "acc" not in (w.get("metrics") or {}):
            continue
        key = f"{method_label(rc)} ({rc['labels_per_class'] * len(w.get('labels') or ())} labels)"
        by_method.setdefault(key, {})[rc["label_draw"]] = (
            f"`{w['arch']}.{w['tag']}`",
            1 - w["metrics"]["acc"],
        )
    rows = []
    for method, draws in sorted(by_method.items()):
        errors = [draws[d][1] for d in sorted(draws)]
        spread = f" ± {statistics.stdev(errors):.1%}" if len(errors) > 1 else ""
        rows.append(
            {
                "method": method,
                **{f"draw {d}": f"{draws[d][1]:.1%}" if d in draws else "-" for d in (0, 1, 2)},
                "mean test error": f"{statistics.mean(errors):.1%}{spread}",
                "weights": ", ".join(draws[d][0] for d in sorted(draws)),
            }
        )
    return _markdown(rows) if rows else "(no published semi-supervised weights)"


def noisy_labels_table(hub: Path = IN_TREE_HUB) -> str:
    """The noisy-tag weights (`recipes.noisy_labels`): clean test accuracy by noise and loss, and the drop from
    the same recipe on clean labels (``cnn.mnist``'s card)."""
    configs = {c["weights"]["arch"] + "." + c["weights"]["tag"]: c["weights"] for c in _published(hub)}
    clean = (configs.get("cnn.mnist") or {}).get("metrics", {}).get("acc")
    rows = []
    if clean is not None:
        rows.append(
            {
                "train labels": "clean (`cnn.mnist`)",
                "loss": "cross-entropy",
                "test accuracy": f"{clean:.1%}",
                "drop": "-",
            }
        )
    for name, w in sorted(configs.items()):
        rc = w.get("recipe_config") or {}
        if "noise_rate" not in rc or "acc" not in (w.get("metrics") or {}):
            continue
        acc = w["metrics"]["acc"]
        rows.append(
            {
                "train labels": f"{rc['noise_rate']:.0%} {rc['noise']} noise (`{name}`)",
                "loss": "generalized cross-entropy" if rc["loss"] == "gce" else "cross-entropy",
                "test accuracy": f"{acc:.1%}",
                "drop": "-" if clean is None else f"{100 * (clean - acc):.1f} points",
            }
        )
    return _markdown(rows) if len(rows) > 1 else "(no published noisy-label weights)"


def propagation_table(hub: Path = IN_TREE_HUB) -> str:
    """Every published mask-propagation weight and the baselines its card records, on the same test videos:
    mean IoU of the propagated masks over the frames after the first, and on the last frame."""
    rows = []
    for config in _published(hub):
        w = config["weights"]
        if get_task(w["task"]).name != "mask-propagation":
            continue
        for name, m in {
            f"`{w['arch']}.{w['tag']}`": w.get("metrics") or {},
            **(w.get("baselines") or {}),
        }.items():
            rows.append(
                {
                    "method": name if name.startswith("`") else f"baseline: {name}",
                    "mean IoU": f"{m['propagation_iou']:.1%}",
                    "last frame IoU": f"{m['propagation_iou_last']:.1%}",
                }
            )
    return _markdown(rows) if rows else "(no published mask-propagation weights)"


def robustness_table(hub: Path = IN_TREE_HUB) -> str:
    """The classifiers whose cards record corruption robustness and calibration (`zoo.reliability`): clean
    and mean corruption accuracy, the worst corruption at severity 2, and test ECE before and after the
    temperature (applied only where it was fitted on held-out images)."""
    rows = []
    for config in _published(hub):
        w = config["weights"]
        r, c = w.get("robustness"), w.get("calibration")
        if not r or not c:
            continue
        applied = w.get("temperature", 1.0) != 1.0
        rows.append(
            {
                "weight": f"`{w['arch']}.{w['tag']}`",
                "clean": f"{r['clean']:.1%}",
                "mean corruption": f"{r['mean']:.1%}",
                "worst at severity 2": f"{r['worst']} {r['worst_acc']:.1%}",
                "ECE": f"{c['ece']:.3f}",
                "ECE, temperature-scaled": f"{c['ece_calibrated']:.3f} (T = {c['temperature']:.3g}, "
                + ("applied)" if applied else "not applied: fitted on seen images)"),
            }
        )
    rows.sort(key=lambda row: row["weight"])
    return _markdown(rows) if rows else "(no weight records robustness)"


def corruptions_figure(path: Path, per_digit: int = 1) -> None:
    """The robustness suite as a picture: a row per corruption, the clean digits then severities 1-3."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from zoo.data import load_dataset
    from zoo.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt

    test = load_dataset("mnist_5k").test
    images = test.images.numpy()[:: 100 // per_digit][:, 0]  # the label-sorted split: digits 0-9
    fig = Figure(figsize=(12, 0.75 * len(CORRUPTIONS) + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    for row, name in enumerate(CORRUPTIONS):
        strips = [images] + [corrupt(images, name, s) for s in SEVERITIES]
        for col, strip in enumerate(strips):
            ax = fig.add_subplot(len(CORRUPTIONS), len(strips), row * len(strips) + col + 1)
            ax.imshow(np.concatenate(list(strip), axis=1), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, rotation=0, ha="right", va="center")
            if row == 0:
                ax.set_title("clean" if col == 0 else f"severity {SEVERITIES[col - 1]}")
    fig.tight_layout(h_pad=0.2, w_pad=0.2)
    fig.savefig(path)


README_TABLES = (
    weights_table,
    instance_comparison_table,
    label_efficiency_table,
    propagation_table,
    semi_supervised_table,
    noisy_labels_table,
    robustness_table,
)


def update_readme(readme: Path, hub: Path = IN_TREE_HUB) -> list[str]:
    """Replace each generated table in `readme` (found by its header line) with the cards' current one;
    returns the names of the tables that changed. A table whose header is not in the README is skipped."""
    lines = readme.read_text().splitlines()
    changed = []
    for make in README_TABLES:
        table = make(hub).splitlines()
        if not table:
            continue
        starts = [i for i, line in enumerate(lines) if line == table[0]]
        if not starts:
            continue
        start = starts[0]
        end = start
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        if lines[start:end] != table:
            lines[start:end] = table
            changed.append(make.__name__)
    if changed:
        atomic_write_bytes(readme, ("\n".join(lines) + "\n").encode())
    return changed


if __name__ == "__main__":
    # `python -m recipes.report` prints the tables; `--readme` rewrites them in place in README.md.
    import sys

    root = Path(__file__).resolve().parents[1]
    if "--readme" in sys.argv[1:]:
        print("updated:", ", ".join(update_readme(root / "README.md")) or "nothing")
    for make in README_TABLES:
        print(make())
        print()
    docs = Path(__file__).resolve().parents[1] / "docs"
    if _feature_weights(IN_TREE_HUB):
        docs.mkdir(exist_ok=True)
        label_efficiency_figure(docs / "label_efficiency.png")
        label_efficiency_methods_figure(docs / "label_efficiency_methods.png")
    docs.mkdir(exist_ok=True)
    corruptions_figure(docs / "corruptions.png")
