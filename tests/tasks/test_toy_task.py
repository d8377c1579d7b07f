"""A new task is one module plus a model file: registry, weights, card, both predict paths and the ONNX
export work with `tests.tasks.toy_task`, which nothing in the package knows about."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from PIL import Image

import zoo
from tests.export.conftest import write_png
from tests.tasks import toy_model, toy_task
from zoo import registry
from zoo.tasks import get_task, unregister_task


@pytest.fixture(scope="module")
def toy():
    toy_model.register()
    yield
    registry.unregister_model("brightnessnet")
    unregister_task(toy_task.Brightness)


def test_the_registry_and_cli_know_the_new_task(toy, capsys):
    from zoo.cli import main

    assert zoo.list_models(task="brightness-estimation") == ["brightnessnet"]
    assert zoo.model_info("brightnessnet")["pipeline_tag"] == "image-brightness"
    assert (
        main(["tasks"]) == 0
        and "brightness-estimation  [pipeline_tag: image-brightness]" in capsys.readouterr().out
    )


def test_weights_card_and_both_predict_paths(toy, tmp_path, capsys):
    from export.onnx import to_onnx
    from export.runtime import predict_files as predict_onnx
    from zoo.predict import predict_files

    model = zoo.create_model("brightnessnet")
    folder = zoo.save_pretrained(
        model, tmp_path / "w", {"unit": "percent", "dataset": "none", "input_size": [1, 16, 16]}
    )
    config = json.loads((folder / "config.json").read_text())
    assert config["weights"]["unit"] == "percent"  # a field the new task declared, flat beside the rest
    card = (folder / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["pipeline_tag"] == "image-brightness" and "## Reading it" in card
    assert "| `brightness` | (N, 1) mean intensity |" in card

    png = write_png(tmp_path / "grey.png", (16, 16))
    expected = 100 * np.asarray(Image.open(png)).mean() / 255
    (line,) = predict_files(str(folder), [png])
    assert line == f"{png}: brightness {expected:.3f}"

    exported = to_onnx(str(folder), tmp_path / "b.onnx")  # validated by the task's own agreement check
    assert exported.report.ok and exported.report.graphs[0].agreements[0].values["max_brightness_diff"] < 1e-3
    assert list(predict_onnx(exported.path, [png])) == [line]


def test_an_unknown_field_of_the_new_task_is_refused(toy):
    with pytest.raises(
        zoo.WeightsError, match=r"unknown fields \['units'\].*declares|unknown fields \['units'\]"
    ):
        zoo.Weights.from_dict(
            {"arch": "brightnessnet", "tag": "t", "task": "brightness-estimation", "units": "x"}
        )
    assert get_task("brightness-estimation").field_defaults() == {"unit": "fraction"}
