"""The results tables (`zoo.results`): the committed ``results/`` and README block equal the cards."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from zoo.card import render_model_card
from zoo.cli import main
from zoo.registry import IN_TREE_HUB
from zoo.results import (
    README_BEGIN,
    README_END,
    REPO_ROOT,
    UnknownWeightError,
    columns,
    markdown_summary,
    published,
    readme_block,
    record_flops,
    result_row,
    update_readme,
    weight_folder,
)
from zoo.tasks import get_task

RESULTS = REPO_ROOT / "results"


def _committed_rows() -> dict[str, dict[str, str]]:
    rows = {}
    for path in sorted(RESULTS.glob("*.csv")):
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            assert reader.fieldnames == columns(get_task(path.stem)), f"{path.name}: columns changed"
            for row in reader:
                assert row["task"] == path.stem, f"{row['weight']} is in {path.name}"
                assert row["weight"] not in rows, f"{row['weight']} has two rows"
                rows[row["weight"]] = row
    return rows


def _number(cell: str) -> float | None:
    return float(cell) if cell else None


def test_every_committed_row_equals_its_card():
    rows = _committed_rows()
    configs = published()
    assert sorted(rows) == sorted(configs), "results/ is stale: run `zoo results`"
    for name, row in rows.items():
        w = configs[name]["weights"]
        stale = f"results/{row['task']}.csv row {name} differs from its card: run `zoo results`"
        assert row == result_row(configs[name]), stale
        # And read back by hand, so that a bug in result_row cannot hide a drift from the card.
        metrics, training, t = w["metrics"], w.get("training") or {}, w.get("throughput") or {}
        for key, _, _ in get_task(w["task"]).headline_metrics:
            assert _number(row[key]) == metrics.get(key), stale
        for baseline, values in json.loads(row["baselines"] or "{}").items():
            assert all(w["baselines"][baseline][k] == v for k, v in values.items()), stale
        assert set(json.loads(row["baselines"] or "{}")) == set(w.get("baselines") or {}), stale
        assert _number(row["params"]) == w["num_params"], stale
        assert _number(row["flops"]) == w.get("flops"), stale
        assert _number(row["images_per_s_eager"]) == t.get("images_per_s_eager"), stale
        assert _number(row["images_per_s_onnxruntime"]) == t.get("images_per_s_onnxruntime"), stale
        assert _number(row["train_time_s"]) == training.get("train_time_s"), stale


def test_results_markdown_and_readme_block_are_fresh():
    assert (RESULTS / "README.md").read_text() == "# Results\n\n" + markdown_summary(), "run `zoo results`"
    assert readme_block() in (REPO_ROOT / "README.md").read_text(), "README's results block: `zoo results`"


def test_a_weight_without_measurements_has_empty_cells(tmp_path):
    shutil.copytree(IN_TREE_HUB / "mlp.mnist", tmp_path / "mlp.mnist")
    config = json.loads((tmp_path / "mlp.mnist" / "config.json").read_text())
    for key in ("throughput", "flops"):
        config["weights"].pop(key, None)
    row = result_row(config)
    assert row["images_per_s_eager"] == row["images_per_s_onnxruntime"] == row["flops"] == ""
    assert row["acc"] == repr(config["weights"]["metrics"]["acc"]) and row["baselines"] == ""


def test_cli_writes_the_tables_and_refreshes_only_the_readme_block(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# before\n\n{README_BEGIN}\nstale\n{README_END}\n\nafter\n")
    out = tmp_path / "results"
    (out).mkdir()
    (out / "semantic-segmentation.csv").write_text("stale")  # a task CSV is always rewritten
    assert main(["results", "--out", str(out), "--readme", str(readme)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in RESULTS.iterdir())
    for path in out.iterdir():
        assert path.read_text() == (RESULTS / path.name).read_text(), path.name
    text = readme.read_text()
    assert text == f"# before\n\n{readme_block()}\n\nafter\n"
    assert update_readme(readme) is False  # nothing left to change
    assert "updated" in capsys.readouterr().out


def test_readme_without_the_block_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no block\n")
    with pytest.raises(Exception, match="results:begin"):
        update_readme(readme)


def test_unknown_weight_names_the_close_ones(tmp_path, capsys):
    with pytest.raises(UnknownWeightError, match="did you mean mlp.mnist"):
        weight_folder("mlp.mnsit")
    assert main(["results", "--out", str(tmp_path), "--readme", "", "--count-flops", "nope.x"]) == 2
    assert "no published weight" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_record_flops_writes_the_count_and_the_card(tmp_path):
    shutil.copytree(IN_TREE_HUB / "mlp.mnist", tmp_path / "mlp.mnist")
    expected = published()["mlp.mnist"]["weights"]["flops"]
    assert record_flops(["mlp.mnist"], tmp_path) == {"mlp.mnist": expected}
    config = json.loads((tmp_path / "mlp.mnist" / "config.json").read_text())
    assert config["weights"]["flops"] == expected == 2 * (784 * 512 + 512 * 512 + 512 * 10)
    assert (tmp_path / "mlp.mnist" / "README.md").read_text() == render_model_card(config)
    assert f"{expected:,}" in render_model_card(config)


def test_cli_measures_each_weight_and_reports_the_ones_that_fail(tmp_path, monkeypatch, capsys):
    import export.throughput

    hub = tmp_path / "hub"
    for name in ("mlp.mnist", "cnn_dws.mnist"):
        shutil.copytree(IN_TREE_HUB / name, hub / name)
    record = {"images_per_s_eager": 10.0, "images_per_s_onnxruntime": None, "graph": "model", "batch": 8}

    def fake(folder, **kwargs):  # the timing itself is tests/export/test_throughput.py's
        if folder.name == "cnn_dws.mnist":
            raise RuntimeError("boom")
        return {**record, **kwargs}

    monkeypatch.setattr(export.throughput, "measure_throughput", fake)
    argv = ["results", "--hub", str(hub), "--out", str(tmp_path / "out"), "--readme", ""]
    assert main([*argv, "--measure-throughput", "--batch", "0"]) == 2  # refused before any timing
    assert main([*argv, "--measure-throughput", "--threads", "2"]) == 1
    err = capsys.readouterr().err
    assert "cnn_dws.mnist: not measured: RuntimeError: boom" in err
    assert json.loads((hub / "mlp.mnist" / "config.json").read_text())["weights"]["throughput"] == {
        **record,
        "batch": 8,
        "threads": 2,
    }
    with (tmp_path / "out" / "image-classification.csv").open() as f:
        rows = {row["weight"]: row for row in csv.DictReader(f)}
    assert (
        rows["mlp.mnist"]["images_per_s_eager"] == "10.0"
        and rows["mlp.mnist"]["images_per_s_onnxruntime"] == ""
    )
    assert rows["cnn_dws.mnist"] == result_row(published(hub)["cnn_dws.mnist"])  # kept what it had
