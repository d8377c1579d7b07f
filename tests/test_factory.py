"""create_model: names, tags, folders, pretrained loading and the two adaptations."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.errors import ConfigError, WeightsError


def test_arch_builds_a_fresh_model_with_kwargs():
    model = zoo.create_model("resnet18", num_classes=7, in_chans=1)
    assert model.fc.out_features == 7 and model.conv1.in_channels == 1
    assert model.zoo_config == {"architecture": "resnet18", "model_args": {"num_classes": 7, "in_chans": 1}}


def test_pretrained_arch_without_weights_is_a_clear_error():
    with pytest.raises(WeightsError, match="'resnet152' has no published weights"):
        zoo.create_model("resnet152", pretrained=True)


def test_pretrained_loads_exactly_the_saved_parameters(demo_weight, hub_dir):
    model = zoo.create_model(demo_weight, pretrained=True)
    saved = zoo.create_model(str(hub_dir / "resnet8_small.demo"))
    for (k, a), (_, b) in zip(model.state_dict().items(), saved.state_dict().items()):
        assert torch.equal(a, b), k
    assert model.pretrained_weights.labels == tuple(str(i) for i in range(10))


def test_arch_pretrained_uses_default_tag_and_weights_kwarg(demo_weight):
    # The default tag is the architecture's first published weight (hub/resnet8_small.mnist).
    a = zoo.create_model("resnet8_small", pretrained=True)
    assert a.pretrained_weights.name == zoo.model_info("resnet8_small")["default_weight"]
    b = zoo.create_model("resnet8_small", weights="demo")
    c = zoo.create_model(demo_weight, pretrained=True)
    assert all(torch.equal(x, y) for x, y in zip(b.state_dict().values(), c.state_dict().values()))
    with pytest.raises(ConfigError, match="give one"):
        zoo.create_model("resnet8_small.demo", weights="other")


def test_tag_without_pretrained_builds_the_weights_architecture_randomly(demo_weight):
    fresh = zoo.create_model(demo_weight)
    loaded = zoo.create_model(demo_weight, pretrained=True)
    assert fresh.conv1.in_channels == 1 and fresh.fc.out_features == 10
    assert not torch.equal(fresh.conv1.weight, loaded.conv1.weight)


def test_num_classes_reinitialises_only_the_head(demo_weight):
    base = zoo.create_model(demo_weight, pretrained=True)
    model = zoo.create_model(demo_weight, pretrained=True, num_classes=3)
    assert model.fc.out_features == 3
    assert torch.equal(model.conv1.weight, base.conv1.weight)
    assert torch.equal(model.layer4[0].conv2.weight, base.layer4[0].conv2.weight)
    assert model.pretrained_weights.labels == ()  # the old labels no longer describe the head


def test_in_chans_adapts_the_first_conv(demo_weight):
    base = zoo.create_model(demo_weight, pretrained=True)
    model = zoo.create_model(demo_weight, pretrained=True, in_chans=3).eval()
    assert model.conv1.weight.shape[1] == 3
    assert torch.allclose(model.conv1.weight.sum(1, keepdim=True), base.conv1.weight, atol=1e-6)
    # A grey image copied to three channels gives the grey model's prediction.
    grey = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(grey.repeat(1, 3, 1, 1)), base.eval()(grey), atol=1e-5)


def test_kwargs_that_contradict_the_weight_are_refused(demo_weight):
    with pytest.raises(
        ConfigError, match=r"img_size=32 contradicts weight 'resnet8_small.demo'.*img_size=28"
    ):
        zoo.create_model(demo_weight, pretrained=True, img_size=32)
    with pytest.raises(ConfigError, match="trained without 'norm'"):
        zoo.create_model(demo_weight, pretrained=True, norm="group")
    # Repeating the weight's own value is not a contradiction.
    zoo.create_model(demo_weight, pretrained=True, img_size=28)


def test_local_folder_and_relative_path(demo_weight, hub_dir, monkeypatch):
    monkeypatch.chdir(hub_dir)
    model = zoo.create_model("./resnet8_small.demo")
    assert model.fc.out_features == 10


def test_bad_hf_hub_name():
    with pytest.raises(ConfigError, match="hf-hub:org/repo"):
        zoo.create_model("hf-hub:no-slash")


def test_folder_without_config_is_a_clear_error(tmp_path):
    (tmp_path / "w").mkdir()
    with pytest.raises(WeightsError, match="config.json does not exist"):
        zoo.create_model(str(tmp_path / "w"))


def test_argument_a_builder_does_not_take_is_a_config_error():
    with pytest.raises(ConfigError, match=r"'autoencoder' got an argument it does not take .*num_classes"):
        zoo.create_model("autoencoder", num_classes=5)
