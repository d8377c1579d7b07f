"""The generic suite: every registered model, parametrised over the registry, gets these for free."""

from __future__ import annotations

import pytest
import torch

import zoo
from tests.helpers import build, flatten_outputs

ALL_MODELS = zoo.list_models()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_on_example_inputs(name):
    model = build(name).eval()
    inputs = model.example_inputs(batch_size=2)
    with torch.no_grad():
        outputs = flatten_outputs(model(*inputs))
    assert outputs, f"{name} returned no tensors"
    for out in outputs:
        assert out.shape[0] == 2, f"{name}: batch dimension lost ({tuple(out.shape)})"
        assert torch.isfinite(out.float()).all(), f"{name}: non-finite output"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_backward_reaches_every_parameter(name):
    model = build(name).train()
    inputs = model.example_inputs(batch_size=2)
    loss = sum(out.float().square().mean() for out in flatten_outputs(model(*inputs)))
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
