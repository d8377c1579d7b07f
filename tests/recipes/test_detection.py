"""The detection recipe: each preset smoke-trains a few steps on a handful of scenes, evaluates with COCOeval
and publishes; the evaluation equals pycocotools on the exported COCO set; multi-scale steps."""

from __future__ import annotations

import json

import pytest
import torch

import zoo
from recipes.detection import (
    CocoEvaluation,
    DetectionConfig,
    DetectionObjective,
    SceneDetections,
    coco_ground_truth,
)
from recipes.engine import Trainer, resolve_config
from zoo.errors import ConfigError

PRESETS = [
    "fasterrcnn_resnet8_small.scenes",
    "retinanet_resnet8_small.scenes",
    "maskrcnn_resnet8_small.scenes",
]
TINY = [
    "max_steps=2",
    "batch_size=2",
    "train_limit=8",
    "test_limit=4",
    "pictures=1",
    "progress=false",
    "tensorboard=false",
]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_smoke_trains_evaluates_and_publishes(preset, tmp_path):
    # Per-class AP (ten more COCOeval runs) on one preset is enough to cover it.
    _, config = resolve_config(preset, [*TINY, *([] if "faster" in preset else ["per_class=false"])])
    assert config.epochs >= 1 and config.dataset == "digit_scenes_128"
    run = tmp_path / "run"
    result = Trainer(DetectionObjective(config), run_dir=run, recipe=preset).fit()
    assert result.steps == 2
    test = result.metrics
    for key in ("map", "map_50", "map_75", "mar_100"):
        assert 0.0 <= test[key] <= 1.0
    assert "map_large" not in test  # undefined (every digit is a COCO "small" object): left out
    if "mask" in preset:
        assert "bbox_map" in test  # masks are the headline, boxes reported beside them
    assert ("ap_7" in test) == ("faster" in preset)
    folder = result.weight_folder
    assert folder == run / "hub" / preset
    config_json = json.loads((folder / "config.json").read_text())
    assert config_json["files"]["predictions"] == "predictions.png"
    weights = config_json["weights"]
    assert weights["min_size"] == 128 and weights["max_size"] == 128  # never torchvision's 800
    assert weights["task"] == zoo.model_info(preset.split(".")[0])["task"]
    assert "evaluated on the first 4 test scenes only" in weights["split"]
    loaded = zoo.create_model(str(folder)).eval()
    with torch.no_grad():
        (det,) = loaded([torch.rand(3, 128, 128)])
    assert det["boxes"].shape[1:] == (4,)


@pytest.fixture(scope="module")
def scenes():
    from zoo.data import load_dataset

    return load_dataset("digit_scenes_128").test


def test_perfect_detections_score_one_and_match_the_coco_export(scenes, tmp_path):
    from zoo.data.coco import export_coco
    from zoo.metrics import coco_evaluate

    data = SceneDetections.render(scenes, 6, masks=True)
    gt = coco_ground_truth(scenes, 6)
    exported = json.loads(export_coco(scenes, tmp_path, n=6).read_text())
    assert gt["annotations"] == exported["annotations"] and gt["images"] == exported["images"]
    metric = CocoEvaluation(gt, ("segm", "bbox"), per_class=True)
    for start in (0, 3):  # two batches
        _, targets = data.get_batch(torch.arange(start, start + 3))
        outputs = [
            {**t, "scores": torch.ones(len(t["labels"])), "masks": t["masks"][:, None].float()}
            for t in targets
        ]
        metric.update(outputs, [int(t["image_id"]) for t in targets])
    values = metric.compute()
    assert values["map"] == pytest.approx(1.0) and values["bbox_map"] == pytest.approx(1.0)
    present = {a["category_id"] - 1 for a in gt["annotations"]}
    for digit in range(10):
        ap = values.get(f"ap_{digit}")
        assert ap == pytest.approx(1.0) if digit in present else f"ap_{digit}" not in values
    # Only the images seen are scored: one image with no detection halves nothing else.
    metric.reset()
    _, targets = data.get_batch(torch.arange(1))
    metric.update(
        [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}],
        [1],
    )
    empty = metric.compute()
    assert empty["map"] == 0.0 and empty["bbox_map"] == 0.0
    assert values["map_50"] == pytest.approx(coco_evaluate(gt, [], "bbox")["map_50"] + 1.0)


def test_multi_scale_steps_draw_sizes_and_restore_the_transform():
    _, config = resolve_config("fasterrcnn_resnet8_small.scenes", [*TINY, "scales=[96,160]", "model_args={}"])
    trainer = Trainer(DetectionObjective(config)).setup()
    model = trainer.ctx.unwrap("model")
    seen = []
    original = model.transform.resize

    def spy(image, target=None):
        seen.append(model.transform.min_size)
        return original(image, target)

    model.transform.resize = spy
    for batch in list(trainer.batches(0))[:2]:
        trainer.train_batch(batch)
    assert set(seen) <= {(96,), (160,)} and seen
    assert model.transform.min_size == (128,) and model.transform.max_size == 128


def test_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="scales"):
        DetectionConfig(scales=(8,)).validate()
    with pytest.raises(ConfigError, match="train_limit"):
        DetectionConfig(train_limit=-1).validate()
    with pytest.raises(ConfigError, match="trains detectors"):
        DetectionObjective(DetectionConfig(model="resnet8_small")).data()
