"""The README's tables are generated from the published cards (`recipes.report`), never typed."""

from __future__ import annotations

import json
from pathlib import Path

from recipes.report import (
    INSTANCE_COLUMNS,
    instance_comparison_table,
    label_efficiency_figure,
    label_efficiency_table,
    noisy_labels_table,
    propagation_table,
    semi_supervised_table,
    weights_table,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_holds_the_generated_tables():
    readme = README.read_text()
    assert weights_table() in readme, "README's weights table is stale: paste `python -m recipes.report`"
    assert instance_comparison_table() in readme, "README's instance comparison is stale: see recipes.report"
    assert label_efficiency_table() in readme, "README's label-efficiency table is stale: see recipes.report"
    assert propagation_table() in readme, "README's mask-propagation table is stale: see recipes.report"
    assert semi_supervised_table() in readme, "README's semi-supervised table is stale: see recipes.report"
    assert noisy_labels_table() in readme, "README's noisy-label table is stale: see recipes.report"


def _card(folder: Path, arch: str, metrics: dict, baselines: dict | None = None) -> None:
    weights = {
        "arch": arch,
        "tag": "scenes",
        "task": "instance-segmentation",
        "dataset": "digit_scenes_128",
        "metrics": metrics,
        "baselines": baselines or {},
        "num_params": 1000,
        "training": {"train_time_s": 60.0, "machine": {"cores": 2, "threads": 1}},
    }
    (folder / f"{arch}.scenes").mkdir(parents=True)
    (folder / f"{arch}.scenes" / "config.json").write_text(json.dumps({"weights": weights}))


def test_instance_comparison_puts_both_families_and_the_baseline_side_by_side(tmp_path):
    keys = [k for _, k in INSTANCE_COLUMNS]
    otsu = {"map": 0.47, "overlap_map": 0.37}
    _card(tmp_path, "maskrcnn_resnet8_small", dict(zip(keys, (0.6, 0.9, 0.7, 0.5, 0.7, 0.6))), {"otsu": otsu})
    _card(tmp_path, "instance_unet_resnet8_small", {"map": 0.55, "overlap_map": 0.52}, {"otsu": otsu})
    lines = instance_comparison_table(tmp_path).splitlines()
    assert len(lines) == 2 + 3  # header, rule, two weights, one baseline (recorded twice, shown once)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")] for r in lines[2:]}
    unet, mask, base = (
        rows["`instance_unet_resnet8_small.scenes`"],
        rows["`maskrcnn_resnet8_small.scenes`"],
        rows["baseline"],
    )
    at = {title: header.index(title) for title, _ in INSTANCE_COLUMNS}
    assert unet[at["touching: mask AP"]] == "0.520" and unet[at["box AP"]] == "-"
    assert "proposal-free" in unet[1] and "Mask R-CNN" in mask[1] and base[1] == "otsu"
    assert mask[at["mask AP50"]] == "0.900" and base[at["mask AP"]] == "0.470"
    assert "1 thread of 2 CPU cores" in mask[-1]


def test_label_efficiency_table_and_figure_come_from_the_cards(tmp_path):
    raw = {"linear_acc_n100": 0.7, "linear_acc_n100_std": 0.02, "linear_acc": 0.886, "knn_acc": 0.931}
    weights = {
        "arch": "simclr_cnn",
        "tag": "mnist",
        "task": "feature-extraction",
        "metrics": {
            "linear_acc": 0.98,
            "knn_acc": 0.975,
            "linear_acc_n100": 0.95,
            "linear_acc_n100_std": 0.01,
        },
        "baselines": {"raw pixels": raw},
    }
    (tmp_path / "simclr_cnn.mnist").mkdir()
    (tmp_path / "simclr_cnn.mnist" / "config.json").write_text(json.dumps({"weights": weights}))
    lines = label_efficiency_table(tmp_path).splitlines()
    assert len(lines) == 2 + 4  # header, rule, (weight, baseline) x (linear, kNN)
    assert lines[0] == "| encoder | probe | 100 labels | all labels |"
    assert lines[2] == "| `simclr_cnn.mnist` | linear probe | 95.0% ± 1.0% | 98.0% |"
    assert lines[3] == "| `simclr_cnn.mnist` | kNN, k = 20 | - | 97.5% |"
    assert lines[4] == "| baseline: raw pixels | linear probe | 70.0% ± 2.0% | 88.6% |"
    label_efficiency_figure(tmp_path / "fig.png", tmp_path)
    assert (tmp_path / "fig.png").stat().st_size > 10_000
