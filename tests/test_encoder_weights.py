"""``encoder_weights=`` on the encoder-based builders (`zoo.factory.create_encoder`): an imported weight's
folder or name becomes the backbone, tensor for tensor, and the saved model records which one it was."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch

import zoo
from zoo.errors import ConfigError, WeightsError

torchvision = pytest.importorskip("torchvision")


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """A random torchvision resnet18, saved as torchvision's cache names it and imported."""
    folder = tmp_path_factory.mktemp("imported")
    torch.manual_seed(3)
    source = torchvision.models.resnet18().eval()
    tmp = folder / "x.pth"
    torch.save(source.state_dict(), tmp)
    path = folder / f"resnet18-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth"
    tmp.rename(path)
    weight = zoo.import_weights(path, "resnet18", folder / "resnet18.tv")
    return source.state_dict(), weight


def _same_backbone(trunk_state: dict, source: dict) -> None:
    shared = [k for k in trunk_state if k in source]
    assert len(shared) == len(trunk_state) and shared  # every backbone tensor comes from the source
    assert all(torch.equal(trunk_state[k], source[k]) for k in shared)


@pytest.mark.parametrize(
    ("name", "kwargs", "trunk"),
    [
        ("unet_resnet18", {}, "encoder"),
        ("fcn_resnet50", {"backbone": "resnet18", "output_stride": None, "num_classes": 3}, "backbone"),
        ("deeplabv3_resnet50", {"backbone": "resnet18", "num_classes": 3}, "backbone"),
        ("fasterrcnn_resnet18_fpn", {"num_classes": 3}, "backbone.body"),
    ],
)
def test_builders_carry_the_imported_tensors(imported, name, kwargs, trunk):
    source, folder = imported
    model = zoo.create_model(name, encoder_weights=str(folder), **kwargs)
    _same_backbone(model.get_submodule(trunk).state_dict(), source)


def test_in_chans_adapts_the_imported_stem(imported):
    source, folder = imported
    model = zoo.create_model("unet_resnet18", encoder_weights=str(folder), in_chans=1)
    assert torch.equal(model.encoder.conv1.weight, source["conv1.weight"].sum(1, keepdim=True))
    assert torch.equal(model.encoder.layer2[0].conv1.weight, source["layer2.0.conv1.weight"])


def test_the_saved_model_records_its_encoder_and_reloads_without_it(imported, tmp_path):
    _, folder = imported
    copy = tmp_path / "resnet18.tv"
    shutil.copytree(folder, copy)
    torch.manual_seed(0)
    model = zoo.create_model("unet_resnet18", encoder_weights=str(copy), num_classes=4).eval()
    saved = zoo.save_pretrained(model, tmp_path / "unet")
    config = json.loads((saved / "config.json").read_text())
    encoder = config["weights"]["encoder"]
    assert config["model_args"]["encoder_weights"] == str(copy)
    assert encoder["sha256"] == json.loads((copy / "config.json").read_text())["weights"]["sha256"]
    assert encoder["architecture"] == "resnet18" and encoder["source"]["library"] == "torchvision"
    assert "encoder initialised from" in (saved / "README.md").read_text()
    shutil.rmtree(copy)  # as on another machine: the saved state dict holds the encoder already
    reloaded = zoo.create_model(str(saved)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(reloaded(x), model(x))


def test_a_weight_name_in_a_hub_folder(imported, hub_dir):
    source, folder = imported
    shutil.copytree(folder, hub_dir / "resnet18.tv")
    for given in ("tv", "resnet18.tv"):
        model = zoo.create_model("unet_resnet18", encoder_weights=given)
        _same_backbone(model.encoder.state_dict(), source)
    with pytest.raises(WeightsError, match="neither a published weight"):
        zoo.create_model("unet_resnet18", encoder_weights="nowhere")


def test_contradictions_are_refused(imported):
    _, folder = imported
    with pytest.raises(ConfigError, match="the encoder is 'resnet34'"):
        zoo.create_model("unet_resnet34", encoder_weights=str(folder))
    with pytest.raises(ConfigError, match="two weights"):
        zoo.create_model("fcn_resnet8_small", backbone_weights="mnist", encoder_weights=str(folder))
