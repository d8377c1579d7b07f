"""The GAN recipe: a two-step smoke run steps both players, publishes the EMA generator with its sample
quality and card grid, and the weight loads and samples."""

from __future__ import annotations

import json

import pytest
import torch

import zoo
from recipes.engine import resolve_config, train
from zoo.errors import ConfigError

FAST = ["progress=false", "tensorboard=false", "max_steps=2", "eval_limit=16"]


@pytest.mark.parametrize("loss", ["ns", "wgan-gp"])
def test_smoke_run_steps_both_players_and_publishes_the_ema(tmp_path, loss):
    run = tmp_path / "run"
    result = train("dcgan_cond.mnist", [*FAST, f"loss={loss}", "n_critic=1"], out=run)
    assert result.steps == 2
    m = result.metrics
    assert {"fid", "fid_floor", "inception_score", "shares_ok", "label_agreement", "nn_ratio"} <= set(m)

    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    # Both optimizers stepped (Adam keeps a step count per parameter), and the discriminator is checkpointed.
    for name in ("d", "g"):
        steps = {int(s["step"]) for s in state["optimizers"][name]["state"].values()}
        assert steps == {2}, (name, steps)
    assert any(k.startswith("features.") for k in state["models"]["d"])

    # The published weight is the EMA of the generator, not the raw one.
    model = zoo.create_model(str(result.weight_folder)).eval()
    ema = {k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")}
    raw = state["models"]["model"]
    published = model.state_dict()
    assert all(torch.equal(published[k], ema[k].to(published[k].dtype)) for k in published)
    assert any(not torch.equal(published[k], raw[k]) for k in published if published[k].is_floating_point())

    config = json.loads((result.weight_folder / "config.json").read_text())
    assert config["files"]["samples"] == "samples.png"
    assert config["weights"]["latent_dim"] == 64 and config["weights"]["labels"][3] == "3"
    images = model.sample(4, generator=torch.Generator().manual_seed(0), labels=[7])
    assert images.shape == (4, 1, 28, 28)


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="n_critic"):
        resolve_config("dcgan_cond.mnist", ["n_critic=0"])
    with pytest.raises(ConfigError, match="accum_steps"):
        resolve_config("dcgan_cond.mnist", ["accum_steps=2"])
