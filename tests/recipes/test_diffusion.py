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
        "eval_samples=8",
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
    assert {"loss", "fid", "fid_floor", "inception_score", "digit_share_min"} <= set(metrics)
    assert ("cond_acc" in metrics) == cond
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
