"""The proposal-free instance recipe: a preset smoke run on a few scenes that trains, evaluates with COCO
mAP (all scenes and the touching subset) and publishes a weight with its instance picture."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

import zoo.data
from recipes.engine import Trainer, resolve_config
from recipes.instance import InstanceConfig, InstanceObjective, InstanceScenes, instance_targets_of
from zoo.errors import ConfigError

PRESET = "instance_unet_resnet8_small.scenes"


def _small_world(*args, **kwargs):
    from zoo.data.scenes import digit_scenes

    # A few scenes of the same world: rendering the full 4000 + 1000 alone would take the test's budget.
    return digit_scenes(size=128, max_digits=5, num_train=32, num_test=12)


def _smoke_run(folder, *overrides: str):
    patch = pytest.MonkeyPatch()
    patch.setattr(zoo.data, "load_dataset", _small_world)
    run = folder / "run"
    _, config = resolve_config(PRESET, ["fresh_scenes=0", "progress=false", "tensorboard=false", *overrides])
    try:
        trainer = Trainer(InstanceObjective(config), run_dir=run, recipe=PRESET)
        result = trainer.fit()
    finally:
        patch.undo()
    return trainer, result, run


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The preset for 2 steps on 32 train / 12 test scenes of the 128 px world (same config otherwise)."""
    return _smoke_run(tmp_path_factory.mktemp("inst"), "max_steps=2", "pictures=2")


def test_preset_smoke_trains_evaluates_and_publishes(smoke):
    _, result, run = smoke
    assert result.steps == 2
    for key in (
        "map",
        "map_50",
        "map_75",
        "map_small",
        "bbox_map",
        "bbox_map_50",
        "overlap_map",
        "overlap_bbox_map",
    ):
        assert key in result.metrics and (math.isnan(result.metrics[key]) or 0 <= result.metrics[key] <= 1)
    folder = run / "hub" / f"{PRESET}"
    config = json.loads((folder / "config.json").read_text())
    weights = config["weights"]
    assert weights["task"] == "instance-segmentation" and weights["labels"][0] == "background"
    assert "touching" in weights["split"]
    # The preset starts the whole U-Net from the 64 px semantic-segmentation weight, and says so.
    assert (
        weights["encoder"]["weights"] == "unet_resnet8_small.scenes" and weights["encoder"]["part"] == "U-Net"
    )
    assert "U-Net initialised from the `unet_resnet8_small.scenes`" in weights["description"]
    assert (folder / "instances.png").is_file()
    model = zoo.create_model(str(folder)).eval()
    (out,) = model([torch.rand(3, 96, 80)])
    assert out["masks"].shape[1:] == (1, 96, 80)


def test_zoo_verify_re_measures_the_recorded_metrics(smoke, monkeypatch):
    """The recipe scores with the code path `zoo verify` uses (COCOeval against the split's COCO
    annotations, mask areas for small/medium/large): every recorded number comes back exactly."""
    from zoo.evaluation import verify

    _, result, run = smoke
    monkeypatch.setattr(zoo.data, "load_dataset", _small_world)
    report = verify(str(run / "hub" / PRESET), limit=12)
    assert report.items == 12
    assert {row[0] for row in report.rows} == set(result.metrics) - {"loss"}
    assert any(key.startswith("ap_") for key in result.metrics)
    for key, card, now, _, _ in report.rows:
        assert now == pytest.approx(card, abs=1e-6, nan_ok=True), key


def test_targets_come_back_from_the_id_maps():
    ids = torch.zeros(1, 16, 16, dtype=torch.uint8)
    ids[0, 2:6, 2:6], ids[0, 8:12, 8:14] = 1, 2
    labels = torch.tensor([[3, 5, 0]])
    (target,) = instance_targets_of(ids, labels)
    assert target["labels"].tolist() == [3, 5]
    assert target["masks"].shape == (2, 16, 16) and target["masks"].sum().item() == 16 + 24
    assert target["boxes"].tolist() == [[2, 2, 6, 6], [8, 8, 14, 12]]
    ids[0][ids[0] == 2] = 0  # pushed off the canvas by the augmentation: dropped
    assert instance_targets_of(ids, labels)[0]["labels"].tolist() == [3]


def test_rendered_scenes_hold_each_visible_digit():
    from zoo.data import DigitScenes
    from zoo.data.scenes import SceneConfig

    source = DigitScenes("test", 6, SceneConfig(size=64, max_digits=4))
    scenes = InstanceScenes.render(source)
    for i in range(6):
        scene = source.scene(i)
        (target,) = instance_targets_of(scenes.ids[i : i + 1], scenes.labels[i : i + 1])
        assert torch.equal(target["masks"], torch.from_numpy(scene.masks))
        assert target["labels"].tolist() == scene.labels.tolist()


def test_class_pixel_counts_give_each_pixel_its_digits_class():
    ids = torch.zeros(2, 8, 8, dtype=torch.uint8)
    ids[0, :2, :3], ids[0, 4:, 4:], ids[1, :1, :] = 1, 2, 1
    labels = torch.tensor([[3, 10], [3, 0]])
    counts = InstanceScenes(torch.zeros(2, 3, 8, 8), ids, labels, None, None, None).class_pixel_counts(11)
    assert counts.tolist() == [128 - 6 - 16 - 8, 0, 0, 6 + 8, 0, 0, 0, 0, 0, 0, 16]


def test_class_weights_weigh_the_semantic_loss_and_are_folded_out_when_published(smoke, tmp_path):
    # The preset fine-tunes a class map whose weights are folded out already: unweighted.
    assert smoke[0].models["model"].semantic_class_weights is None
    trainer, _, run = _smoke_run(tmp_path, "max_steps=1", "pictures=0", "class_weight_power=0.5")
    weights = trainer.models["model"].semantic_class_weights
    assert weights is not None and len(weights) == 11
    assert weights[0] < 1 < 3 < weights[1:].min()  # the background (most pixels) weighs least
    # The published weight has their tilt taken out of the class map's score layer (logit adjustment):
    # its probabilities are the trained network's softmax(logits - log w).
    folder = run / "hub" / PRESET
    published = zoo.create_model(str(folder)).eval()
    trained = copy.deepcopy(trainer.eval_models()["model"]).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        logits = trained.dense(x, logits=True)["semantic"]
        want = (logits - weights.log()[None, :, None, None]).softmax(1)
        torch.testing.assert_close(published.dense(x)["semantic"], want, atol=1e-5, rtol=0)
    assert (
        published.semantic_class_weights is None
        and "logit adjustment" in published.pretrained_weights.description
    )


def test_config_validation_names_the_key():
    with pytest.raises(ConfigError, match="fresh_scenes"):
        InstanceConfig(fresh_scenes=-1).validate()
    with pytest.raises(ConfigError, match="scale"):
        InstanceConfig(scale=(1.2, 1.0)).validate()
