"""hubconf.py: torch.hub entrypoints derived from the registry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import zoo

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A torch.hub cache holding this checkout as if it were the downloaded GitHub repo 'zoo-org/zoo:main'.

    torch 2.14's `torch.hub.list` only takes GitHub repos; with the repo already in its cache and
    validation skipped, it lists the checkout's hubconf without any network.
    """
    os.symlink(REPO, tmp_path / "zoo-org_zoo_main")
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    yield "zoo-org/zoo:main"
    torch.hub.set_dir(previous)


def test_hub_list_equals_the_registry(hub_cache):
    listed = torch.hub.list(hub_cache, skip_validation=True, trust_repo=True)
    assert sorted(listed) == zoo.list_models()


def test_hub_load_local_builds_the_same_model():
    model = torch.hub.load(str(REPO), "resnet8_small", source="local", num_classes=4)
    assert model.fc.out_features == 4 and model.zoo_config["architecture"] == "resnet8_small"


def test_hub_load_pretrained_equals_create_model(demo_weight):
    x = torch.rand(2, 1, 28, 28)
    # pretrained=True loads the default (first published) weight; weights= names one.
    for kwargs, name in (({"pretrained": True}, "resnet8_small"), ({"weights": "demo"}, demo_weight)):
        expected = zoo.create_model(name, pretrained=True).eval()(x)
        model = torch.hub.load(str(REPO), "resnet8_small", source="local", **kwargs).eval()
        assert torch.equal(model(x), expected)


def test_hub_help_shows_the_builder_docstring(hub_cache):
    text = torch.hub.help(hub_cache, "resnet50", skip_validation=True, trust_repo=True)
    assert "ResNet-50" in text and "weights:" in text
