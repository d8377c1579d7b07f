"""The VAE recipe: a two-step smoke run publishes a weight whose metrics (bounds, gap, baselines, sample
quality) are recorded and re-measured exactly, whose card has its pictures, and that `zoo predict` scores."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

import zoo
from recipes.engine import Trainer, resolve_config, train
from recipes.vae import VAEObjective
from zoo.errors import ConfigError

FAST = [
    "progress=false",
    "tensorboard=false",
    "max_steps=2",
    "iwae_k=3",
    "gap_images=50",
    "quality_samples=100",
    "mixture_k=2",
    "pictures=16",
]


def test_smoke_run_publishes_a_scored_generator(tmp_path):
    result = train("vae.mnist", FAST, out=tmp_path / "run")
    m = result.metrics
    assert m["nll_nats"] <= m["nelbo_nats"] and m["iwae_k"] == 3
    assert m["nll_bpd"] == pytest.approx(m["nll_nats"] / (784 * np.log(2)))
    assert {"train_nll_nats", "gap_nats", "bernoulli_nll_nats", "mixture_nll_nats", "mixture_k"} <= set(m)
    assert {
        "fid",
        "fid_floor",
        "inception_score",
        "share_0",
        "shares_ok",
        "nn_ratio",
        "near_copy_share",
    } <= set(m)
    folder = result.weight_folder
    config = json.loads((folder / "config.json").read_text())
    assert config["files"]["samples"] == "samples.png" and (folder / "reconstructions.png").is_file()
    weights = config["weights"]
    assert weights["task"] == "image-generation" and weights["takes_images"] is True

    # The recorded metrics are re-measured exactly (seeded evaluation).
    model = zoo.create_model(str(folder)).eval()
    _, cfg = resolve_config("vae.mnist", FAST)
    trainer = Trainer(VAEObjective(cfg)).setup()
    again = trainer.evaluate("test", models={"model": model})
    assert again == pytest.approx(weights["metrics"], rel=1e-4, abs=1e-4)

    # The quick check (zoo verify --limit) scores the fixed test subset alone: the same numbers as inside the
    # full split (each image draws from its own seed), and no full-split likelihood.
    quick = Trainer(VAEObjective(replace(cfg, quick_likelihood=True))).setup()
    measured = quick.evaluate("test", models={"model": model})
    for key in ("nll_nats_sub100", "nelbo_nats_sub100"):
        assert measured[key] == pytest.approx(weights["metrics"][key], rel=1e-6)
    assert not {"nll_nats", "nelbo_nats", "gap_nats"} & set(measured)

    # zoo predict: reconstruction picture and the NLL in bits/dim.
    from zoo.data.images import write_sample_digits
    from zoo.predict import predict_files

    (png,) = write_sample_digits(tmp_path / "digits")[:1]
    (line,) = predict_files(str(folder), [png], out_dir=tmp_path / "out")
    assert (
        "bits/dim" in line
        and "nats" in line
        and (tmp_path / "out" / f"{png.stem}_reconstruction.png").is_file()
    )


def test_bad_config_is_refused():
    with pytest.raises(ConfigError, match="iwae_k"):
        resolve_config("vae.mnist", ["iwae_k=0"])
    with pytest.raises(ConfigError, match="kl_warmup"):
        resolve_config("vae.mnist", ["kl_warmup=1.5"])
