"""Every recipe preset runs two optimizer steps on CPU and leaves a weight folder zoo.create_model loads."""

from __future__ import annotations

import json
import math

import pytest
import torch

import zoo
from recipes.config import config_from_dict, config_to_dict
from recipes.engine import list_presets, train
from zoo.models.base import named_outputs

PRESETS = [p.name for p in list_presets()]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_trains_two_steps_and_publishes(name, tmp_path):
    run = tmp_path / "run"
    # Two steps, evaluated on the first 64 items of each split: the smoke run checks that everything runs
    # and publishes, not what the metrics are (tests/recipes/test_published.py re-measures the real ones).
    overrides = ["max_steps=2", "eval_limit=64", "progress=false", "tensorboard=false"]
    result = train(name, overrides, out=run)
    assert result.steps == 2
    saved = json.loads((run / "config.json").read_text())
    assert saved["recipe"] == name and saved["config"]["max_steps"] == 2
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "curves.png").is_file()
    folder = result.weight_folder
    assert folder is not None and folder.parent == run / "hub"
    model = zoo.create_model(str(folder)).eval()
    meta = model.pretrained_weights
    assert meta.recipe == name
    # The weight records every finite metric (an undefined one, e.g. COCO AP of an empty size range, is left
    # out), plus any the objective measured itself at publish (a label-efficiency sweep).
    finite = {k: pytest.approx(v, abs=1e-6) for k, v in result.metrics.items() if math.isfinite(v)}
    assert {k: v for k, v in meta.metrics.items() if k in result.metrics} == finite
    assert set(result.metrics) - set(meta.metrics) == {
        k for k, v in result.metrics.items() if not math.isfinite(v)
    }
    assert meta.dataset and meta.split.endswith("first 64 items of each split only (eval_limit)")
    assert meta.training["seed"] == 0 and meta.training["steps"] == 2
    assert meta.training["torch"] == torch.__version__ and "cpu" in meta.training["machine"]
    config = json.loads((folder / "config.json").read_text())
    assert config["files"]["curves"] == "curves.png" and (folder / "curves.png").is_file()
    # The card's other pictures were drawn into the run folder (Objective.picture_path), then copied.
    for role, filename in config["files"].items():
        assert (folder / filename).is_file() and (role == "curves" or (run / "pictures" / filename).is_file())
    # The recorded recipe config rebuilds the preset's config type exactly.
    preset = next(p for p in list_presets() if p.name == name)
    rebuilt = config_from_dict(preset.objective.Config, meta.recipe_config)
    assert config_to_dict(rebuilt) == meta.recipe_config
    # The weight's task reads what the trained model gives (no branch on the task's name here); a task
    # whose models take one image per call (detectors) gets one.
    task = meta.task_object
    batch = 2 if task.batched_images else 1
    with torch.no_grad():
        # A model whose inputs are not one image (ZooModel.input_names: a generator's latent, a denoiser's
        # image and timestep) runs on its own example inputs.
        own = tuple(getattr(model, "input_names", ("image",))) != ("image",)
        out = model(*model.example_inputs(batch)) if own else model(torch.rand(batch, *meta.input_size))
    assert len(task.postprocess(named_outputs(model, out, task), meta)) == batch
    headline = [key for key, _, _ in task.headline_metrics if key in meta.metrics]
    assert headline, f"{name}: the weight records none of its task's headline metrics {task.headline_metrics}"
    assert all(math.isfinite(meta.metrics[key]) for key in headline)


def test_published_module_is_the_measured_one(tmp_path):
    """The logit scale is folded into the published head: its test metrics re-measure identically."""
    from recipes.classification import ClassificationObjective
    from recipes.engine import Trainer, resolve_config

    _, config = resolve_config("cnn_dws.mnist", ["max_steps=3", "progress=false", "tensorboard=false"])
    assert config.logit_scale != 1.0
    trainer = Trainer(ClassificationObjective(config), run_dir=tmp_path / "run", recipe="cnn_dws.mnist")
    result = trainer.fit()
    loaded = zoo.create_model(str(result.weight_folder)).eval()
    assert not loaded.head._forward_hooks
    again = trainer.evaluate("test", models={"model": loaded})
    assert again == pytest.approx(result.metrics, abs=1e-6)
    trained = trainer.eval_models()["model"]
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), trained.eval()(x), rtol=1e-4, atol=1e-4)


def test_image_folder_goes_through_the_dataloader_path(tmp_path):
    """Files on disk: per-sample v2 augmentation in a DataLoader, the same objective and engine."""
    from PIL import Image

    for split in ("train", "test"):
        for k, cls in enumerate(("dark", "light")):
            (tmp_path / "data" / split / cls).mkdir(parents=True)
            for i in range(12):
                shade = 40 * k + 100 * k + i
                Image.new("RGB", (20, 24), (shade, shade, shade)).save(
                    tmp_path / "data" / split / cls / f"{i}.png"
                )
    overrides = [
        "dataset=imagefolder",
        f"data_root={tmp_path / 'data'}",
        "model=cnn",
        "img_size=16",
        "batch_size=8",
        "max_steps=3",
        "crop_scale=0.6,1",
        "hflip=true",
        "color_jitter=0.1",
        "progress=false",
        "tensorboard=false",
        "channels_last=false",
    ]
    result = train("cnn.mnist", overrides, out=tmp_path / "run")
    assert result.steps == 3 and 0.0 <= result.metrics["acc"] <= 1.0
    model = zoo.create_model(str(result.weight_folder))
    assert model.pretrained_weights.labels == ("dark", "light")
    assert model.pretrained_weights.input_size == (3, 16, 16)
    assert result.weight_folder.name == "cnn.local"  # not the preset's mnist weight
