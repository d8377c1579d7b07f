"""`zoo verify` (zoo.evaluation) for detectors: a smoke-trained Faster R-CNN's recorded COCO metrics are
re-measured exactly through the task's hooks (one image per call), and its export check runs per image."""

from __future__ import annotations

import pytest

from recipes.detection import DetectionObjective
from recipes.engine import Trainer, resolve_config

PRESET = "fasterrcnn_resnet8_small.scenes"
EVAL = 16  # test scenes the smoke run evaluates on (eval_limit), and verify re-measures


@pytest.fixture(scope="module")
def weight(tmp_path_factory):
    overrides = [
        "max_steps=2",
        "batch_size=2",
        "train_limit=8",
        f"eval_limit={EVAL}",
        "pictures=0",
        "progress=false",
        "tensorboard=false",
    ]
    _, config = resolve_config(PRESET, overrides)
    run = tmp_path_factory.mktemp("det") / "run"
    result = Trainer(DetectionObjective(config), run_dir=run, recipe=PRESET).fit()
    return result.weight_folder, result.metrics


def test_verify_re_measures_the_recorded_coco_metrics(weight, capsys):
    from zoo.cli import main
    from zoo.evaluation import verify

    folder, recorded = weight
    report = verify(str(folder), limit=EVAL)
    assert report.items == EVAL
    keys = {row[0] for row in report.rows}
    assert {"map", "map_50", "map_75", "mar_100", "ap_7"} <= keys
    assert keys == set(recorded)  # everything the recipe recorded is re-measured
    for key, card, now, _, _ in report.rows:
        assert now == pytest.approx(card, abs=1e-4), key
    assert report.ok, report.summary()
    assert any("Average Precision" in line for line in report.table)
    # `zoo eval` is `zoo verify`: the report with COCOeval's table
    assert main(["eval", str(folder), "--limit", str(EVAL)]) == 0
    out = capsys.readouterr().out
    assert "verified" in out and "(AP) @[ IoU=0.50      |" in out


def test_the_split_is_read_by_the_task(weight):
    import zoo
    from zoo.evaluation import evaluation_split

    meta = zoo.create_model(str(weight[0])).pretrained_weights
    inputs, targets = evaluation_split(meta, limit=3)
    assert inputs.shape == (3, 3, 128, 128) and inputs.min() >= 0.0 and inputs.max() <= 1.0
    assert [t["image_id"] for t in targets] == [1, 2, 3]
    assert all(t["coco_annotations"] and t["coco_image"]["width"] == 128 for t in targets)


def test_verify_onnx_runs_per_image(weight, tmp_path):
    from export.verify import verify_onnx

    folder, _ = weight
    check = verify_onnx(str(folder), tmp_path / "det.onnx", limit=4)
    assert check.items == 4
    assert "max_metric_gap" in check.agreement.values
    assert check.verify.rows  # the card's COCO metrics, compared with onnxruntime's
    assert check.agreement.values["max_metric_gap"] <= 0.005, check.summary()
