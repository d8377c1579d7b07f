"""The generic suite: every registered model, parametrised over the registry, gets these for free."""

from __future__ import annotations

import functools

import pytest
import torch

import zoo
from tests.helpers import build, flatten_outputs, suite_models

ALL_MODELS = suite_models()  # up to tests.helpers.MAX_SUITE_PARAMS
# Heavy models (ResNet-152 at 224 px) run at this side at most, so the suite stays fast; the size only
# matters to models that take any size (`dynamic_size`), and those are the heavy ones.
MAX_SIDE = 64


def build_small(name: str):
    """The model and example inputs at a capped size (gated on the model's `dynamic_size`)."""
    model = build(name)
    if getattr(model, "dynamic_size", False) and len(model.input_size) == 3:
        c, h, w = model.input_size
        model.input_size = (c, min(h, MAX_SIDE), min(w, MAX_SIDE))
    return model


def train_outputs(model, batch_size: int = 2):
    """What a train-mode forward gives: outputs, or the loss dict of a model trained with targets."""
    inputs = model.example_inputs(batch_size=batch_size)
    if getattr(model, "train_needs_targets", False):
        return model(*inputs, model.example_targets(batch_size=batch_size))
    return model(*inputs)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_on_example_inputs(name):
    model = build_small(name).eval()
    inputs = model.example_inputs(batch_size=2)
    with torch.no_grad():
        outputs = flatten_outputs(model(*inputs))
    assert outputs, f"{name} returned no tensors"
    for out in outputs:
        assert out.shape[0] == 2, f"{name}: batch dimension lost ({tuple(out.shape)})"
        assert torch.isfinite(out.float()).all(), f"{name}: non-finite output"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_backward_reaches_every_parameter(name):
    model = build_small(name).train()
    loss = sum(out.float().square().mean() for out in flatten_outputs(train_outputs(model)))
    loss.backward()
    unreached = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unreached, f"{name}: no gradient reaches {unreached[:10]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"{name}: non-finite gradients in {bad[:10]}"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_save_pretrained_round_trip(name, tmp_path):
    model = build(name).eval()
    folder = zoo.save_pretrained(model, tmp_path / name)
    assert {p.name for p in folder.iterdir()} >= {"config.json", "model.safetensors", "README.md"}
    loaded = zoo.create_model(str(folder)).eval()
    inputs = model.example_inputs(batch_size=2)
    with torch.no_grad():
        expected, actual = flatten_outputs(model(*inputs)), flatten_outputs(loaded(*inputs))
    assert len(expected) == len(actual)
    for a, b in zip(expected, actual):
        assert torch.equal(a, b), f"{name}: outputs differ after save_pretrained / create_model"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_registry_entry_is_documented(name):
    info = zoo.model_info(name)
    assert info["summary"], f"{name}: the builder needs a docstring (its first line is the summary)"
    assert info["task"]


@functools.cache
def attributes(name: str) -> dict:
    """What the generic tests gate on, read off the model (never its family or task name)."""
    model = build(name)
    return {"classifier": model.classifier is not None, "dynamic_size": bool(model.dynamic_size)}


@pytest.mark.parametrize("name", [n for n in ALL_MODELS if attributes(n)["classifier"]])
def test_num_classes_reinitialises_the_classifier_head(name):
    model = build_small(name).eval()
    model2 = build(name, num_classes=3).eval()
    model2.input_size = model.input_size
    with torch.no_grad():
        outputs = flatten_outputs(model2(*model.example_inputs(batch_size=2)))
    # Classes are axis 1 for classifiers (N, K) and dense predictors (N, K, H, W) alike, and for every
    # output of a model that gives several per-class outputs (a CAM classifier's logits and maps).
    assert outputs and all(out.shape[:2] == (2, 3) for out in outputs)


@pytest.mark.parametrize("name", [n for n in ALL_MODELS if attributes(n)["dynamic_size"]])
def test_dynamic_size_models_take_another_size(name):
    model = build_small(name).eval()
    c, h, w = model.input_size
    with torch.no_grad():
        outputs = flatten_outputs(model(torch.randn(1, c, 2 * h, h + w)))
    assert outputs and all(torch.isfinite(o.float()).all() for o in outputs)
