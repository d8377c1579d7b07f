"""The registry: registration rules, listing, name parsing and info."""

from __future__ import annotations

import pytest

import zoo
from zoo import registry
from zoo.errors import UnknownModelError, WeightsError


def test_registering_a_name_twice_raises():
    with pytest.raises(ValueError, match="already registered"):

        @registry.register_model
        def resnet18(**kwargs):  # same name as the real builder
            """A clash."""

    assert registry.get_entry("resnet18").family == "resnet"


def test_list_models_wildcards_and_task():
    names = zoo.list_models()
    assert names == sorted(names) and "resnet18" in names
    assert zoo.list_models("resnet1*") == ["resnet101", "resnet152", "resnet18", "resnet18_small"]
    assert set(zoo.list_models(["resnet18", "resnet34"])) == {"resnet18", "resnet34"}
    assert zoo.list_models("nothing-matches-*") == []
    classifiers = zoo.list_models(task="image-classification")
    assert "resnet50" in classifiers
    assert zoo.list_models(task="autoencoding") == zoo.list_models(task="image-to-image")  # an alias
    with pytest.raises(UnknownModelError, match="unknown task 'no-such-task'; the zoo's tasks are: .*image-"):
        zoo.list_models(task="no-such-task")


def test_list_models_pretrained_lists_arch_dot_tag(demo_weight):
    assert demo_weight in zoo.list_models(pretrained=True)
    assert demo_weight in zoo.list_models("resnet8_small.*", pretrained=True)
    assert "resnet8_small" not in zoo.list_models(pretrained=True)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownModelError, match=r"unknown model 'resnet81'.*Did you mean: .*resnet18"):
        zoo.create_model("resnet81")
    with pytest.raises(UnknownModelError, match="zoo list"):
        zoo.model_info("completely_unrelated_name")


def test_unknown_tag_lists_published_weights(demo_weight):
    with pytest.raises(UnknownModelError, match=r"no published weight 'dmeo'.*Did you mean: demo"):
        zoo.create_model("resnet8_small.dmeo", pretrained=True)


def test_declared_tag_without_metadata_says_how_to_get_it(monkeypatch):
    entry = registry.get_entry("resnet18")
    monkeypatch.setattr(entry, "tags", (*entry.tags, "ghost"))
    with pytest.raises(WeightsError, match="declared but its metadata was not found.*ZOO_HUB_DIR"):
        registry.get_weights("resnet18.ghost")


def test_model_info_for_arch_and_weight(demo_weight):
    info = zoo.model_info("resnet18")
    assert info["family"] == "resnet" and info["task"] == "image-classification"
    assert info["summary"].startswith("ResNet-18")
    weight = zoo.model_info(demo_weight)["weight"]
    assert weight["labels"] == [str(i) for i in range(10)]
    assert weight["metrics"] == {"top1": 0.25}


def test_parse_model_name():
    assert registry.parse_model_name("resnet18") == ("resnet18", None)
    assert registry.parse_model_name("resnet18.mnist") == ("resnet18", "mnist")


def test_weights_metadata_round_trips_through_dict():
    w = registry.Weights(arch="a", tag="t", task="image-classification", labels=("x", "y"), mean=(0.5,))
    assert registry.Weights.from_dict(w.to_dict()) == w
    with pytest.raises(WeightsError, match="unknown fields"):
        registry.Weights.from_dict({**w.to_dict(), "accuracy": 1.0})


def test_weights_take_the_fields_their_task_declares():
    seg = registry.Weights.from_dict(
        {"arch": "a", "tag": "t", "task": "semantic-segmentation", "ignore_index": 0, "labels": ["bg", "fg"]}
    )
    assert seg.ignore_index == 0 and seg.background_index == 0  # given, and the task's default
    assert registry.Weights.from_dict(seg.to_dict()) == seg and seg.to_dict()["ignore_index"] == 0
    # A field of another task is still refused, and the message names what this task declares.
    with pytest.raises(WeightsError, match=r"unknown fields \['score_thresh'\].*'semantic-segmentation'"):
        registry.Weights.from_dict({**seg.to_dict(), "score_thresh": 0.5})
    with pytest.raises(WeightsError, match="field 'ignore_index' must be int"):
        registry.Weights.from_dict({**seg.to_dict(), "ignore_index": "255"})
    with pytest.raises(AttributeError, match="has no field 'score_thresh'"):
        _ = seg.score_thresh
    old = registry.Weights(arch="a", tag="t", task="autoencoding")  # the name files written before tasks use
    assert old.task == "image-to-image" and old.scale == 1
