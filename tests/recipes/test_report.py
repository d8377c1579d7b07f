"""The README's tables are generated from the published cards (`recipes.report`), never typed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recipes.report import (
    INSTANCE_COLUMNS,
    instance_comparison_table,
    label_efficiency_figure,
    label_efficiency_methods_figure,
    label_efficiency_points,
    label_efficiency_table,
    noisy_labels_table,
    propagation_table,
    robustness_table,
    semi_supervised_table,
    update_readme,
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
    assert robustness_table() in readme, "README's robustness table is stale: see recipes.report"


def test_update_readme_rewrites_a_stale_table_in_place(tmp_path):
    table = weights_table().splitlines()
    stale = [*table[:2], "| `gone.mnist` | image-classification | 1 | top-1 1.00% | 1 s | x |", *table[3:]]
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\n" + "\n".join(stale) + "\n\nafter\n")
    assert update_readme(readme) == ["weights_table"]
    text = readme.read_text()
    assert weights_table() in text and "gone.mnist" not in text and text.endswith("\n\nafter\n")
    assert update_readme(readme) == []  # nothing left to change


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


def test_a_ddp_run_is_said_to_use_every_core_with_its_process_count():
    from recipes.report import where_trained

    ddp = {"processes": 2, "machine": {"cores": 2, "threads": 1, "load_avg_1m_at_start": 0.1}}
    assert where_trained(ddp) == " on 2 CPU cores (2 DDP processes), load 0.1"
    assert where_trained({"machine": {"cores": 2, "threads": 1}}) == " on 1 thread of 2 CPU cores"


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


def _semi_card(folder: Path, tag: str, acc: float, method: str, draw: int, init_from: str = "") -> None:
    rc = {"method": method, "labels_per_class": 10, "label_draw": draw}
    if init_from:
        rc["init_from"] = init_from
    weights = {"arch": "cnn", "tag": tag, "task": "image-classification", "dataset": "mnist_5k"}
    weights |= {"metrics": {"acc": acc}, "recipe_config": rc, "labels": [str(i) for i in range(10)]}
    (folder / f"cnn.{tag}").mkdir(parents=True)
    (folder / f"cnn.{tag}" / "config.json").write_text(json.dumps({"weights": weights}))


def _plotted(fig) -> dict[str, list[tuple[float, float]]]:
    """The (x, y) of each error-bar series drawn, by its legend label."""
    from matplotlib.container import ErrorbarContainer

    (ax,) = fig.axes
    return {
        c.get_label(): list(zip(*(c.lines[0].get_data())))
        for c in ax.containers
        if isinstance(c, ErrorbarContainer)
    }


def test_label_efficiency_points_and_figure_come_from_the_cards(tmp_path):
    for draw, acc in enumerate((0.9, 0.92, 0.91)):
        _semi_card(tmp_path, f"sup{draw}", acc, "supervised", draw)
    _semi_card(tmp_path, "fix0", 0.96, "fixmatch", 0)
    _semi_card(tmp_path, "fix1", 0.94, "fixmatch", 1)
    _semi_card(tmp_path, "ft0", 0.95, "supervised", 0, init_from="simclr_cnn.mnist")
    probe = {"linear_acc": 0.98, "linear_acc_n10": 0.6, "linear_acc_n10_std": 0.05, "linear_acc_n100": 0.93}
    (tmp_path / "simclr_cnn.mnist").mkdir()
    (tmp_path / "simclr_cnn.mnist" / "config.json").write_text(
        json.dumps(
            {
                "weights": {
                    "arch": "simclr_cnn",
                    "tag": "mnist",
                    "task": "feature-extraction",
                    "metrics": probe,
                }
            }
        )
    )
    points = label_efficiency_points(tmp_path)
    assert points["supervised only"] == [(10, pytest.approx(0.09), pytest.approx(0.01))]
    assert points["fixmatch"] == [(10, pytest.approx(0.05), pytest.approx(0.0141421, rel=1e-4))]
    assert points["supervised from simclr_cnn.mnist"] == [(10, pytest.approx(0.05), 0.0)]
    assert points["simclr_cnn.mnist linear probe"] == [
        (1, pytest.approx(0.4), 0.05),
        (10, pytest.approx(0.07), 0.0),
        (400, pytest.approx(0.02), 0.0),
    ]
    fig = label_efficiency_methods_figure(tmp_path / "fig.png", tmp_path)
    drawn = _plotted(fig)
    assert set(drawn) == set(points)
    for name, rows in points.items():  # the figure's numbers are the cards' (markers nudged right in x)
        assert [y for _, y in drawn[name]] == pytest.approx([100 * e for _, e, _ in rows])
        assert all(n <= x < 2 * n for (x, _), (n, _, _) in zip(drawn[name], rows))
    assert (tmp_path / "fig.png").stat().st_size > 10_000


def test_in_tree_label_efficiency_figure_matches_the_cards(tmp_path):
    import statistics

    from zoo.registry import IN_TREE_HUB

    points = label_efficiency_points()
    cards = {p.parent.name: json.loads(p.read_text())["weights"] for p in IN_TREE_HUB.glob("*/config.json")}
    fixmatch = [1 - w["metrics"]["acc"] for n, w in cards.items() if n.startswith("cnn.mnist100_fixmatch")]
    assert points["fixmatch"] == [
        (10, pytest.approx(statistics.mean(fixmatch)), pytest.approx(statistics.stdev(fixmatch)))
    ]
    assert points["supervised only"][-1] == (
        400,
        pytest.approx(1 - cards["cnn.mnist"]["metrics"]["acc"]),
        0.0,
    )
    simclr = cards["simclr_cnn.mnist"]["metrics"]
    assert (10, pytest.approx(1 - simclr["linear_acc_n100"]), simclr["linear_acc_n100_std"]) in points[
        "simclr_cnn.mnist linear probe"
    ]
    drawn = _plotted(label_efficiency_methods_figure(tmp_path / "fig.png"))
    assert {n: [y for _, y in xy] for n, xy in drawn.items()} == {
        n: pytest.approx([100 * e for _, e, _ in rows]) for n, rows in points.items()
    }
