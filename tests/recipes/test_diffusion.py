"""The diffusion recipe: the presets smoke-train, evaluate sample quality, and publish a loadable weight."""

from __future__ import annotations

import pytest
import torch

import zoo
from recipes.diffusion import DiffusionObjective
from recipes.engine import get_preset, resolve_config, train
from zoo.errors import ConfigError


@pytest.mark.parametrize("preset", ["ddpm_unet_mnist_cond.mnist", "ddpm_unet_mnist.mnist"])
def test_preset_smoke_trains_two_steps_and_publishes(preset, tmp_path):
    cond = preset.startswith("ddpm_unet_mnist_cond")
    overrides = [
        "max_steps=2",
        "quality_samples=8",
        "eval_batch=8",
        "sample_steps=2",
        "progress=false",
        "tensorboard=false",
        "precision=fp32",
        f"pictures={str(cond).lower()}",  # the card pictures once: they cost a 100-sample grid
    ]
    result = train(preset, overrides, out=tmp_path / "run")
    assert result.steps == 2
    metrics = result.metrics
    # The sample-quality metrics every digit generator reports (zoo.metrics.sample_quality).
    assert {"loss", "fid", "fid_floor", "fid_ratio", "inception_score", "share_min", "nn_ratio"} <= set(
        metrics
    )
    assert ("label_agreement" in metrics) == cond
    folder = result.weight_folder
    pictures = {"samples.png", "denoising.png"} if cond else set()
    assert {*pictures, "model.safetensors"} <= {p.name for p in folder.iterdir()}
    model = zoo.create_model(str(folder))
    meta = model.pretrained_weights
    assert meta.sampler == {"name": "ddim", "steps": 2, "eta": 0.0, "spacing": "trailing"}
    assert model.process.prediction == "v" and model.process.schedule == "cosine"
    images = model.sample(2, generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 1, 28, 28)


def test_config_is_checked():
    preset = get_preset("ddpm_unet_mnist_cond.mnist")
    assert preset.objective is DiffusionObjective and preset.config.ema_decay > 0
    with pytest.raises(ConfigError, match="label_dropout"):
        resolve_config("ddpm_unet_mnist_cond.mnist", ["label_dropout=1.5"])
    with pytest.raises(ConfigError):
        resolve_config("ddpm_unet_mnist_cond.mnist", ["noise_schedule=quadratic"])


def test_quick_check_samples_are_the_full_evaluations_first():
    # `zoo verify NAME --limit` draws quality_samples=250: they must be the first 250 of the card's 1,000
    # (same noise, same labels), or their FID could not be the card's fid_first250.
    _, config = resolve_config("ddpm_unet_mnist_cond.mnist", ["sample_steps=2", "eval_batch=4"])
    objective = DiffusionObjective(config)
    model = zoo.create_model("ddpm_unet_mnist_cond", widths=(8, 16), process=config.process.to_dict()).eval()
    full = objective.draw(model, 10)
    quick = objective.draw(model, 4)
    assert len(full) == 3 and len(quick) == 1
    assert torch.equal(full[0][0], quick[0][0]) and torch.equal(full[0][1], quick[0][1])
