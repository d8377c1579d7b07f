"""Configs: typed, serialisable, and a bad key or value names the key and what it accepts."""

from __future__ import annotations

import json

import pytest

from recipes.classification import ClassificationConfig
from recipes.config import apply_overrides, config_from_dict, config_to_dict, parse_override
from recipes.engine import get_preset, resolve_config
from zoo.cli import main
from zoo.errors import ConfigError, UnknownModelError


def test_round_trip_through_json():
    config = get_preset("resnet8_small.mnist").config
    data = json.loads(json.dumps(config_to_dict(config)))
    assert config_from_dict(ClassificationConfig, data) == config


def test_overrides_reach_nested_keys_and_dicts():
    _, config = resolve_config(
        "cnn.mnist",
        [
            "optim.lr=0.05",
            "optim.name=adamw",
            "scale=0.8,1.2",
            "model_args.widths=[8,16,32]",
            "ema_decay=0.99",
        ],
    )
    assert config.optim.lr == 0.05 and config.optim.name == "adamw"
    assert (
        config.scale == (0.8, 1.2)
        and config.model_args == {"widths": [8, 16, 32]}
        and config.ema_decay == 0.99
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=0.1", "unknown config key 'optim.lrr'.*Did you mean lr"),
        ("epoch=3", "unknown config key 'epoch'.*Did you mean epochs"),
        ("optim.name=adm", "'optim.name'.*one of 'sgd', 'adagrad', 'rmsprop', 'adam', 'adamw'"),
        ("precision=fp8", "'precision'.*one of 'auto', 'fp32', 'bf16', 'fp16'"),
        ("schedule.name=linear", "'schedule.name'.*'cosine'.*'onecycle'"),
        ("epochs=many", "'epochs'.*expected int"),
        ("epochs=0", "'epochs'.*>= 1"),
        ("optim.lr=-1", "'optim.lr'.*> 0"),
        ("scale=1.2,0.8", "'scale'"),
        ("optim=3", "'optim' is a group.*lr"),
        ("dataset=imagenet", "'dataset'.*'mnist_5k'"),
        ("novalue", "not key=value"),
    ],
)
def test_bad_key_or_value_names_the_key_and_allowed_values(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("resnet8_small.mnist", [override])


def test_unknown_keys_in_a_saved_config_are_refused():
    data = config_to_dict(ClassificationConfig())
    data["optim"]["momentun"] = 0.9
    with pytest.raises(ConfigError, match="optim.momentun"):
        config_from_dict(ClassificationConfig, data)


def test_parse_override_values():
    assert parse_override("a=1") == ("a", 1)
    assert parse_override("a=0.5") == ("a", 0.5)
    assert parse_override("a=true") == ("a", True)
    assert parse_override("a=none") == ("a", None)
    assert parse_override("a=sgd") == ("a", "sgd")
    assert parse_override("a=[1, 2]") == ("a", [1, 2])


def test_int_field_refuses_bool_and_fraction():
    with pytest.raises(ConfigError, match="'epochs'"):
        apply_overrides(ClassificationConfig(), ["epochs=true"])
    with pytest.raises(ConfigError, match="'epochs'"):
        apply_overrides(ClassificationConfig(), ["epochs=1.5"])


def test_unknown_recipe_suggests_names():
    with pytest.raises(UnknownModelError, match="Did you mean resnet8_small.mnist"):
        resolve_config("resnet8_smal.mnist")


def test_cli_reports_a_bad_value_and_exits_2(capsys):
    assert main(["train", "mlp.mnist", "--set", "optim.name=adm"]) == 2
    err = capsys.readouterr().err
    assert "optim.name" in err and "'adamw'" in err


def test_cli_lists_and_shows_presets(capsys):
    assert main(["train", "--list"]) == 0
    out = capsys.readouterr().out
    assert "resnet8_small.mnist" in out and "autoencoder.mnist" in out
    assert main(["train", "mlp.mnist", "--show", "--set", "optim.lr=0.01"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["config"]["optim"]["lr"] == 0.01 and shown["objective"] == "robust_classification"


def test_resume_refuses_overrides(tmp_path):
    from recipes.engine import train

    (tmp_path / "config.json").write_text(json.dumps({"recipe": "mlp.mnist", "config": {}}))
    with pytest.raises(ConfigError, match="--set cannot change a resumed run"):
        train("", ["epochs=1"], resume=tmp_path)


def test_objective_configs_share_the_base_fields_in_their_old_places():
    import dataclasses
    from pathlib import Path

    from recipes.autoencoding import AutoencodingConfig
    from recipes.engine import ObjectiveConfig, TrainConfig, get_preset

    shared = ["model", "model_args", "dataset", "data_root", "download", "val_per_class"]
    n = len(dataclasses.fields(TrainConfig))
    for cls in (ClassificationConfig, AutoencodingConfig):
        assert issubclass(cls, ObjectiveConfig)
        assert [f.name for f in dataclasses.fields(cls)][n : n + len(shared)] == shared
        with pytest.raises(ConfigError, match="'val_per_class'.*>= 0"):
            apply_overrides(cls(), ["val_per_class=-1"])
    with pytest.raises(ConfigError, match="'dataset'.*'cifar10'"):  # a subclass narrows the base's str
        apply_overrides(AutoencodingConfig(), ["dataset=imagefolder"])
    # Every published weight's recipe_config (JSON) still loads into its preset's config, field for field.
    hub = Path(__file__).resolve().parents[2] / "hub"
    for path in sorted(hub.glob("*/config.json")):
        weights = json.loads(path.read_text())["weights"]
        config = config_from_dict(get_preset(weights["recipe"]).objective.Config, weights["recipe_config"])
        assert json.dumps(config_to_dict(config)) == json.dumps(weights["recipe_config"]), path.parent.name


def test_extend_config_carries_the_base_values_into_the_subclass():
    from recipes.config import extend_config
    from recipes.semi_supervised import SEMI_MNIST, FixMatchConfig

    config = extend_config(FixMatchConfig, SEMI_MNIST, threshold=0.9)
    assert type(config) is FixMatchConfig and config.threshold == 0.9 and config.strong_noise == 0.4
    assert config.optim == SEMI_MNIST.optim and config.epochs == SEMI_MNIST.epochs
