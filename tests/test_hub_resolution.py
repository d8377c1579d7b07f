"""Where a weight's files come from: hub folders first, then the HF cache, then a pinned download."""

from __future__ import annotations

import shutil

import pytest
import torch

import zoo
from zoo import hub
from zoo.errors import HubError
from zoo.registry import Weights, register_weights, unregister_weights

PINNED = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def remote_only_weight():
    """A weight declared in code with a pinned HF repo and no local copy anywhere."""
    meta = Weights(
        arch="resnet8_small",
        tag="remote",
        task="image-classification",
        hf_repo="zoo-test/resnet8_small-remote",
        revision=PINNED,
        sha256="0" * 64,
    )
    register_weights(meta)
    yield meta
    unregister_weights("resnet8_small.remote")


def test_zoo_hub_dir_entries_come_before_the_in_tree_hub(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("ZOO_HUB_DIR", f"{first}:{second}")
    dirs = zoo.registry.hub_dirs()
    assert dirs[:2] == [first, second] and dirs[-1] == zoo.registry.IN_TREE_HUB


def test_first_hub_folder_holding_the_weight_wins(demo_weight, hub_dir, tmp_path, monkeypatch):
    other = tmp_path / "other"
    shutil.copytree(hub_dir / "resnet8_small.demo", other / "resnet8_small.demo")
    monkeypatch.setenv("ZOO_HUB_DIR", f"{other}:{hub_dir}")
    assert hub.local_weight_folder(demo_weight) == other / "resnet8_small.demo"
    # An incomplete folder (no weights file) is skipped, not half-loaded.
    (other / "resnet8_small.demo" / "model.safetensors").unlink()
    assert hub.local_weight_folder(demo_weight) == hub_dir / "resnet8_small.demo"


def test_offline_and_not_cached_is_one_clear_error(remote_only_weight, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError) as info:
        zoo.create_model("resnet8_small.remote", pretrained=True)
    message = str(info.value)
    assert "zoo-test/resnet8_small-remote" in message and PINNED in message
    assert "HF_HUB_OFFLINE is set" in message and "zoo pull" in message and "ZOO_HUB_DIR" in message


def test_weight_without_local_copy_or_repo_says_how_to_get_it(monkeypatch):
    register_weights(Weights(arch="resnet8_small", tag="orphan", task="image-classification"))
    try:
        with pytest.raises(HubError, match=r"no local copy .* and no Hugging Face repo.*zoo train"):
            zoo.create_model("resnet8_small.orphan", pretrained=True)
    finally:
        unregister_weights("resnet8_small.orphan")


def test_local_copy_is_used_without_touching_the_hub(demo_weight, hub_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_download(*args, **kwargs):
        raise AssertionError("the hub must not be asked for a weight that is on disk")

    monkeypatch.setattr(hub, "download_repo", no_download)
    model = zoo.create_model(demo_weight, pretrained=True)
    assert isinstance(model(torch.zeros(1, 1, 28, 28)), torch.Tensor)
