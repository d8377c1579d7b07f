"""The PixelCNN recipe: a two-step smoke run (eval_limit) publishes a loadable weight with its exact NLL,
train/test gap, sample quality and a sample grid."""

from __future__ import annotations

import json
import math

import pytest
import torch

import zoo
from recipes.engine import train
from zoo.errors import ConfigError

FAST = [
    "progress=false",
    "tensorboard=false",
    "max_steps=2",
    "batch_size=16",
    "eval_limit=4",
    "pictures=4",
    "model_args.channels=8",
    "model_args.layers=1",
    "model_args.head=8",
]


def test_smoke_run_publishes_a_loadable_scored_generator(tmp_path):
    result = train("pixelcnn.mnist", FAST, out=tmp_path / "run")
    m = result.metrics
    assert m["nll_bpd"] == pytest.approx(m["nll_nats"] / (784 * math.log(2)))
    assert 0 < m["nll_nats"] < 784 * math.log(2) * 2  # near 1 bit/dim after two steps, not more
    assert {"train_nll_nats", "gap_nats", "fid", "fid_floor", "inception_score", "nn_ratio"} <= set(m)
    assert "mixture_nll_nats" not in m  # the baselines' EM fit is left to real runs under eval_limit

    folder = result.weight_folder
    config = json.loads((folder / "config.json").read_text())
    assert config["files"]["samples"] == "samples.png" and (folder / "samples.png").is_file()
    assert config["weights"]["task"] == "image-generation"

    model = zoo.create_model(str(folder)).eval()
    x = (torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0)) > 0.7).float()
    logits, bpd = model(x)
    assert logits.shape == (2, 1, 28, 28) and bpd.shape == (2,)
    sample = model.sample(1, generator=torch.Generator().manual_seed(0))
    assert sample.shape == (1, 1, 28, 28)


def test_bad_config():
    with pytest.raises(ConfigError, match="sample_batch"):
        train("pixelcnn.mnist", ["sample_batch=0", "max_steps=1"])
