"""The tracking-by-colorization recipe: colour bins, config errors, and a smoke run whose published weight
measures, through the task (what `zoo verify` and the export check run), what the recipe measured."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import zoo
from recipes.engine import Trainer, resolve_config
from recipes.video_colorization import ColourQuantizer, VideoColorizationConfig, VideoColorizationObjective
from zoo.errors import ConfigError
from zoo.evaluation import evaluation_split, measure
from zoo.models.base import named_outputs

PRESET = "colorization_tracker.videos"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The preset for 2 steps on the first 16 train and 4 test videos."""
    run = tmp_path_factory.mktemp("colortrack") / "run"
    overrides = ["max_steps=2", "eval_limit=4", "progress=false", "tensorboard=false"]
    _, config = resolve_config(PRESET, overrides)
    trainer = Trainer(VideoColorizationObjective(config), run_dir=run, recipe=PRESET)
    return trainer, trainer.fit()


def test_colour_bins_are_nearest_lab_centres():
    rng = np.random.default_rng(0)
    red, green, blue = np.eye(3, dtype=np.float32)
    pixels = np.concatenate([np.clip(c + rng.normal(0, 0.02, (200, 3)), 0, 1) for c in (red, green, blue)])
    quantizer = ColourQuantizer.fit(pixels.astype(np.float32), 3)
    bins = quantizer(np.stack([red, green, blue, red * 0.97]))
    assert len(set(bins[:3].tolist())) == 3 and bins[3] == bins[0]
    assert quantizer(np.zeros((2, 5, 3), np.float32)).shape == (2, 5)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("num_colours", 1, "num_colours"),
        ("max_gap", 0, "max_gap"),
        ("temperature", 0.0, "temperature"),
        ("previous", -1, "previous"),
    ],
)
def test_config_errors_name_the_key(key, value, match):
    with pytest.raises(ConfigError, match=match):
        VideoColorizationConfig(**{key: value}).validate()


def test_smoke_run_publishes_a_mask_propagation_weight(smoke):
    _, result = smoke
    assert result.steps == 2
    folder = result.weight_folder
    model = zoo.create_model(str(folder)).eval()
    meta = model.pretrained_weights
    assert meta.task == "mask-propagation" and meta.input_size == (1, 48, 48)
    assert meta.embed_stride == 2 and meta.video_frames == 12 and meta.dataset == "digit_videos"
    assert set(meta.propagation) == {"temperature", "topk", "previous"} and meta.propagation["previous"] == 1
    assert {"propagation_iou", "propagation_iou_last"} <= set(meta.metrics)
    config = json.loads((folder / "config.json").read_text())
    baselines = config["weights"]["baselines"]
    assert len(baselines) == 3 and any(k.startswith("raw pixels") for k in baselines)
    assert all(0 <= b["propagation_iou"] <= 1 for b in baselines.values())
    assert 0 < baselines["copy the first frame"]["propagation_iou"] < 0.5  # thin strokes move off themselves
    for role in ("propagation", "iou_by_frame"):
        assert (folder / config["files"][role]).is_file()
    card = (folder / "README.md").read_text()
    assert "## Mask propagation on the test videos" in card and "| copy the first frame |" in card


def test_task_measures_what_the_recipe_measured(smoke):
    """`zoo verify`'s path (task preprocessing from RGB frames, batches of 250 frames regrouped by video)
    gives the recipe's own evaluation on the same videos."""
    _, result = smoke
    model = zoo.create_model(str(result.weight_folder)).eval()
    meta = model.pretrained_weights
    inputs, targets = evaluation_split(meta, limit=4)
    assert inputs.shape == (48, 1, 48, 48) and targets.shape == (48, 48, 48)

    @torch.no_grad()
    def run(x):
        return named_outputs(model, model(torch.from_numpy(x)), meta.task_object)

    measured, _ = measure(run, meta, inputs, targets)
    for key in ("propagation_iou", "propagation_iou_last"):
        assert measured[key] == pytest.approx(result.metrics[key], abs=1e-4)
