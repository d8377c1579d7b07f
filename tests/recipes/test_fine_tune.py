"""Fine-tuning from a published self-supervised encoder: which keys load where, and the errors."""

from __future__ import annotations

import pytest
import torch

import zoo
from recipes.engine import Trainer, resolve_config
from recipes.fine_tune import FineTuneObjective, encoder_backbone_state, init_from_encoder
from zoo.errors import ConfigError

ENCODER = "simclr_cnn.mnist"


def _classifier(**kwargs) -> torch.nn.Module:
    return zoo.create_model("cnn", num_classes=10, in_chans=1, img_size=28, **kwargs)


def test_encoder_backbone_becomes_the_classifier_but_its_head():
    model = _classifier()
    head = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("head.")}
    loaded = init_from_encoder(model, ENCODER)
    encoder = zoo.create_model(ENCODER, pretrained=True).state_dict()
    state = model.state_dict()
    # Every classifier key but the head's, each equal to the encoder's backbone.<key>; the projector is left.
    assert loaded == sorted(k for k in state if not k.startswith("head."))
    assert all(torch.equal(state[k], encoder[f"backbone.{k}"]) for k in loaded)
    assert all(torch.equal(state[k], v) for k, v in head.items())
    assert not any(k.startswith("projector") for k in encoder_backbone_state(ENCODER))


def test_mismatched_backbone_lists_the_keys():
    with pytest.raises(ConfigError, match=r"(?s)init_from.*shape mismatch \(\d+\): stem\.0\.weight"):
        init_from_encoder(_classifier(widths=(16, 32, 64)), ENCODER)
    # Another architecture (depthwise-separable blocks): missing and unexpected keys.
    with pytest.raises(ConfigError, match=r"(?s)missing \(\d+\).*unexpected \(\d+\)"):
        init_from_encoder(_classifier(), "cnn_dws.mnist")


def test_unknown_encoder_names_the_config_key():
    with pytest.raises(ConfigError, match="config key 'init_from': cannot load 'nonesuch_cnn.mnist'"):
        init_from_encoder(_classifier(), "nonesuch_cnn.mnist")


def test_preset_starts_from_the_encoder():
    _, config = resolve_config("cnn.mnist100_simclr_finetune", ["max_steps=1", "progress=false"])
    assert config.init_from == ENCODER and config.method == "supervised"
    trainer = Trainer(FineTuneObjective(config)).setup()
    stem = trainer.models["model"].state_dict()["stem.0.weight"]
    assert torch.equal(
        stem, zoo.create_model(ENCODER, pretrained=True).state_dict()["backbone.stem.0.weight"]
    )
