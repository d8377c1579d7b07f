"""Weight files: safetensors only, sha256 verification, strict loading with a readable report."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import zoo
from zoo.errors import ConfigError, IncompatibleKeysError, WeightsError
from zoo.weights import (
    adapt_input_conv,
    atomic_write_bytes,
    check_json_serialisable,
    file_sha256,
    load_state_dict,
    load_state_dict_strict,
    save_state_dict,
)


def test_save_and_load_state_dict_round_trip(tmp_path):
    sd = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    digest = save_state_dict(sd, tmp_path / "w.safetensors")
    assert digest == file_sha256(tmp_path / "w.safetensors")
    loaded = load_state_dict(tmp_path / "w.safetensors", expected_sha256=digest)
    assert set(loaded) == {"a", "b"} and torch.equal(loaded["a"], sd["a"])


def test_tied_weights_are_saved(tmp_path):
    shared = torch.randn(4, 4)
    save_state_dict({"x": shared, "y": shared}, tmp_path / "w.safetensors")
    assert torch.equal(load_state_dict(tmp_path / "w.safetensors")["y"], shared)


def test_tampered_weights_are_refused_naming_the_file(demo_weight, hub_dir):
    path = hub_dir / "resnet8_small.demo" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"sha256 mismatch for .*resnet8_small.demo/model.safetensors"):
        zoo.create_model(demo_weight, pretrained=True)


def test_truncated_weights_are_refused(demo_weight, hub_dir):
    path = hub_dir / "resnet8_small.demo" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        zoo.create_model(demo_weight, pretrained=True)


def test_truncated_file_without_pin_is_a_clear_error(tmp_path):
    path = tmp_path / "w.safetensors"
    save_state_dict({"a": torch.randn(100)}, path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_state_dict(path)


def test_pickle_files_are_never_loaded(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"a": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match="safetensors only"):
        load_state_dict(path)


def test_strict_loading_reports_missing_unexpected_and_mismatched():
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    sd = dict(model.state_dict())
    sd.pop("1.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["0.weight"] = torch.zeros(5, 4)
    with pytest.raises(IncompatibleKeysError) as info:
        load_state_dict_strict(model, sd, source="ckpt")
    message = str(info.value)
    assert "missing (1): 1.bias" in message
    assert "unexpected (1): extra.weight" in message
    assert "0.weight: checkpoint (5, 4) vs model (3, 4)" in message
    assert info.value.missing == ["1.bias"] and info.value.unexpected == ["extra.weight"]


def test_key_mismatch_from_a_folder_raises(tmp_path):
    model = zoo.create_model("resnet8_small")
    folder = zoo.save_pretrained(model, tmp_path / "w")
    config = json.loads((folder / "config.json").read_text())
    config["model_args"] = {"widths": [16, 32, 64, 256]}  # the file no longer matches the architecture
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(IncompatibleKeysError, match=r"shape mismatch .*layer4"):
        zoo.create_model(str(folder))


def test_non_serialisable_kwarg_is_an_error_not_dropped(tmp_path):
    model = zoo.create_model("resnet8_small")
    model.zoo_config["model_args"]["norm"] = nn.BatchNorm2d  # what a careless caller might pass
    with pytest.raises(ConfigError, match=r"model_args.norm = .*BatchNorm2d.* is not JSON-serialisable"):
        zoo.save_pretrained(model, tmp_path / "w")
    assert not (tmp_path / "w" / "model.safetensors").exists()


def test_check_json_serialisable_rejects_nan_and_objects():
    check_json_serialisable({"a": [1, 2.5, "x", None, {"b": True}]}, "cfg")
    with pytest.raises(ConfigError, match=r"cfg.a\[1\] = nan"):
        check_json_serialisable({"a": [1, float("nan")]}, "cfg")
    with pytest.raises(ConfigError, match="cfg.f"):
        check_json_serialisable({"f": object()}, "cfg")


def test_model_not_built_by_the_zoo_cannot_be_saved(tmp_path):
    with pytest.raises(ConfigError, match="not built by the zoo"):
        zoo.save_pretrained(nn.Linear(2, 2), tmp_path / "w")


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def boom(*_):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_adapt_input_conv():
    w = torch.randn(8, 3, 3, 3)
    assert torch.allclose(adapt_input_conv(w, 1), w.sum(1, keepdim=True))
    assert adapt_input_conv(w, 4).shape == (8, 4, 3, 3)
    six = adapt_input_conv(w, 6)
    # A constant image gives the same response whatever the channel count (exact for multiples).
    x3, x6 = torch.ones(1, 3, 5, 5), torch.ones(1, 6, 5, 5)
    assert torch.allclose(nn.functional.conv2d(x3, w), nn.functional.conv2d(x6, six), atol=1e-5)
