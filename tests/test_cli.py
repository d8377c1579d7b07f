"""The `zoo` command line: each verb through zoo.cli.main, as a user types it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from zoo.cli import main


def test_list_and_filters(capsys):
    assert main(["list", "resnet1*"]) == 0
    assert capsys.readouterr().out.split() == ["resnet101", "resnet152", "resnet18", "resnet18_small"]
    assert main(["list", "--task", "no-such-task"]) == 2
    assert "the zoo's tasks are: " in capsys.readouterr().err
    assert main(["list", "--task", "image-to-image"]) == 0
    listed = capsys.readouterr().out.split()
    assert {"autoencoder", "dncnn", "edsr_x4"} <= set(listed) and "resnet18" not in listed


def test_tasks_lists_names_pipeline_tags_and_fields(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    assert "semantic-segmentation  [pipeline_tag: image-segmentation]" in out
    assert "object-detection  [pipeline_tag: object-detection]" in out
    assert "score_thresh = 0.05" in out


def test_list_pretrained(capsys, demo_weight):
    assert main(["list", "--pretrained", "resnet8*"]) == 0
    assert demo_weight in capsys.readouterr().out.split()


def test_info_is_json(capsys, demo_weight):
    assert main(["info", demo_weight]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "resnet8_small" and info["weight"]["metrics"] == {"top1": 0.25}


def test_unknown_model_exits_2_with_suggestion(capsys):
    assert main(["info", "resnet81"]) == 2
    err = capsys.readouterr().err
    assert "zoo info: error: unknown model 'resnet81'" in err and "resnet18" in err


def test_predict_prints_topk_from_weight_metadata(capsys, demo_weight, tmp_path):
    path = tmp_path / "digit.png"
    Image.fromarray((np.random.default_rng(0).random((40, 30)) * 255).astype(np.uint8)).save(path)
    assert main(["predict", demo_weight, str(path), "--topk", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{path}: ")
    ranked = line.split(": ", 1)[1].split(", ")
    assert len(ranked) == 2
    probs = [float(item.split()[1]) for item in ranked]
    assert probs[0] >= probs[1] and all(item.split()[0] in [str(i) for i in range(10)] for item in ranked)


def test_predict_rejects_a_file_that_is_not_an_image(capsys, demo_weight, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    assert main(["predict", demo_weight, str(path)]) == 2
    assert "notes.txt is not an image file" in capsys.readouterr().err


def test_bad_input_size_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["summary", "resnet8_small", "--input", "1xAx28"])
    assert info.value.code == 2
    assert "is not CxHxW" in capsys.readouterr().err


def test_console_script_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "zoo", "list", "resnet50"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "resnet50"
