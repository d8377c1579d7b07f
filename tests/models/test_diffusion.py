"""The diffusion denoisers: what the generic suites cannot check (sampling, labels, guidance, errors)."""

from __future__ import annotations

import pytest
import torch

import zoo
from tests.helpers import build
from zoo.errors import ConfigError


@pytest.fixture(scope="module")
def cond():
    return build("ddpm_unet_mnist_cond").eval()


@pytest.fixture(scope="module")
def uncond():
    return build("ddpm_unet_mnist").eval()


def test_forward_shapes_and_inputs(cond, uncond):
    assert cond.input_names == ("noisy_image", "timestep", "label") and uncond.input_names == (
        "noisy_image",
        "timestep",
    )
    x, t, labels = cond.example_inputs(3)
    assert cond(x, t, labels).shape == x.shape
    assert cond(x, t).shape == x.shape  # no labels: the null label
    x, t = uncond.example_inputs(3)
    assert uncond(x, t).shape == x.shape
    with pytest.raises(ConfigError, match="unconditional"):
        uncond(x, t, torch.zeros(3, dtype=torch.long))
    assert 0.5e6 < sum(p.numel() for p in cond.parameters()) < 2e6


def test_sample_contract_and_reproducibility(cond):
    a = cond.sample(3, generator=torch.Generator().manual_seed(0), labels=[1, 2, 3], steps=3)
    b = cond.sample(3, generator=torch.Generator().manual_seed(0), labels=[1, 2, 3], steps=3)
    assert a.shape == (3, 1, 28, 28) and a.min() >= 0 and a.max() <= 1 and torch.equal(a, b)
    c = cond.sample(3, generator=torch.Generator().manual_seed(0), labels=[1, 2, 3], steps=3, guidance=3.0)
    assert not torch.equal(a, c)  # guidance changes the samples
    d = cond.sample(2, generator=torch.Generator().manual_seed(0), sampler="ddpm", steps=4, labels=5)
    assert d.shape == (2, 1, 28, 28)


def test_defaults_come_from_the_weight_metadata(cond):
    from zoo.registry import Weights

    model = build("ddpm_unet_mnist_cond").eval()
    model.pretrained_weights = Weights(
        arch="ddpm_unet_mnist_cond",
        tag="x",
        task="image-generation",
        labels=tuple(str(i) for i in range(10)),
        task_fields={"sampler": {"name": "ddim", "steps": 7, "eta": 0.5}, "guidance_scale": 3.0},
    )
    settings = model.sampling_defaults()
    assert (settings["steps"], settings["eta"], settings["guidance"]) == (7, 0.5, 3.0)
    seen = []
    model.sample(1, steps=None, callback=lambda i, t, x, x0: seen.append(t))
    assert len(seen) == 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "whole number >= 1"),
        ({"n": 2, "steps": -1}, "from 1 to 1000"),
        ({"n": 2, "labels": [3, 10]}, "allowed: 0, 1, 2"),
        ({"n": 2, "labels": [1, 2, 3]}, "one per sample"),
        ({"n": 2, "eta": 2.0}, "eta"),
        ({"n": 2, "sampler": "euler"}, "ddpm, ddim"),
    ],
)
def test_bad_input_names_allowed_values(cond, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        cond.sample(**kwargs)


def test_unconditional_refuses_labels_and_guidance(uncond):
    with pytest.raises(ConfigError, match="guidance needs a class-conditional"):
        uncond.sample(2, guidance=2.0)
    with pytest.raises(ConfigError, match="takes no labels"):
        uncond.sample(2, labels=[1, 2])


def test_process_travels_with_the_weight(tmp_path):
    model = build("ddpm_unet_mnist", process={"schedule": "cosine", "prediction": "v"})
    loaded = zoo.create_model(str(zoo.save_pretrained(model, tmp_path / "w")))
    assert loaded.process == model.process and loaded.process.prediction == "v"


def test_zoo_sample_cli(tmp_path, capsys):
    from zoo.cli import main

    folder = zoo.save_pretrained(build("ddpm_unet_mnist_cond"), tmp_path / "w")
    out = tmp_path / "grid.png"
    args = [
        "sample",
        str(folder),
        "--n",
        "4",
        "--labels",
        "0,1",
        "--steps",
        "2",
        "--guidance",
        "2",
        "--out",
        str(out),
    ]
    assert main(args) == 0 and out.is_file()
    assert main(["sample", str(folder), "--n", "0", "--out", str(out)]) != 0
    assert "at least 1" in capsys.readouterr().err
    assert main(["sample", "resnet8_small", "--n", "2", "--out", str(out)]) != 0
    assert "no sample method" in capsys.readouterr().err
