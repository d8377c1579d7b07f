"""`export.throughput`: a weight's measured images/s are recorded in its card, and only there."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from export.throughput import record_throughput
from zoo.card import render_model_card
from zoo.errors import ConfigError
from zoo.registry import IN_TREE_HUB
from zoo.results import UnknownWeightError, result_row


def test_record_throughput_writes_a_measurement_into_a_copy_of_the_card(tmp_path):
    folder = tmp_path / "mlp.mnist"
    shutil.copytree(IN_TREE_HUB / "mlp.mnist", folder)
    weights = (folder / "model.safetensors").read_bytes()
    (record,) = record_throughput(["mlp.mnist"], tmp_path, runs=2, rounds=1, budget_s=2.0).values()
    assert record["images_per_s_eager"] > 0 and record["images_per_s_onnxruntime"] > 0
    assert (record["graph"], record["batch"], record["threads"]) == ("model", 8, 1)
    assert record["machine"]["cores"] and "load_avg_1m_at_end" in record["machine"] and record["date"]
    config = json.loads((folder / "config.json").read_text())
    assert config["weights"]["throughput"] == record
    assert (folder / "README.md").read_text() == render_model_card(config)
    assert "images/s onnxruntime" in render_model_card(config)
    assert (folder / "model.safetensors").read_bytes() == weights  # the sha256 on the card stands
    assert hashlib.sha256(weights).hexdigest() == config["weights"]["sha256"]
    row = result_row(config)
    assert float(row["images_per_s_eager"]) == record["images_per_s_eager"]


def test_bad_names_and_settings_are_refused_before_timing(tmp_path):
    shutil.copytree(IN_TREE_HUB / "mlp.mnist", tmp_path / "mlp.mnist")
    before = (tmp_path / "mlp.mnist" / "config.json").read_text()
    with pytest.raises(UnknownWeightError, match="mlp.mnist"):
        record_throughput(["mlp.mnist", "mlp.mnistt"], tmp_path)
    assert (tmp_path / "mlp.mnist" / "config.json").read_text() == before  # nothing timed or written
    with pytest.raises(ConfigError, match="batch"):
        record_throughput(["mlp.mnist"], tmp_path, batch=0)
