"""Fine-tuning a self-supervised encoder on 10 labels per digit: the supervised-only semi-supervised recipe
(`recipes.semi_supervised`, method ``supervised``: same labels, weak views, steps and optimiser as the
baseline) with the classifier's backbone initialised from a published encoder (`init_from`), so the
label-efficiency figure can set "fine-tuned from SimCLR/MoCo/BYOL" beside the frozen-feature probes and the
semi-supervised methods.

`init_from` names a published weight (``simclr_cnn.mnist``); its backbone (a `SelfSupervisedEncoder`'s
``backbone``, or the whole network of a plain classifier) must have exactly the keys and shapes of the
classifier's minus its classifier layer, which stays freshly initialised; anything else is an error that
lists the missing, unexpected and mismatched keys (`zoo.weights.load_state_dict_strict`). The whole network
is then trained, at the baseline's learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from recipes.engine import Data, register_preset
from recipes.semi_supervised import SEMI_MNIST, SemiSupervisedConfig, SemiSupervisedObjective
from zoo.errors import ConfigError, IncompatibleKeysError

__all__ = ["FineTuneConfig", "FineTuneObjective", "encoder_backbone_state", "init_from_encoder"]


@dataclass
class FineTuneConfig(SemiSupervisedConfig):
    method: Literal["supervised"] = "supervised"  # the labels only: the encoder brings the unlabelled data
    init_from: str = ""  # a published weight whose backbone initialises the classifier ("": from scratch)


def encoder_backbone_state(name: str) -> dict[str, torch.Tensor]:
    """The state dict of published weight `name`'s backbone: a self-supervised encoder's ``backbone``
    module (its classifier layer already the identity), else the whole model."""
    from zoo.factory import create_model

    try:
        encoder = create_model(name, pretrained=True)
    except Exception as err:  # an unknown name or a weight not published: say which config key
        raise ConfigError(f"config key 'init_from': cannot load {name!r}: {err}") from err
    backbone = getattr(encoder, "backbone", encoder)
    return {k: v.detach().clone() for k, v in backbone.state_dict().items()}


def init_from_encoder(model: nn.Module, name: str) -> list[str]:
    """Load published weight `name`'s backbone into classifier `model` (every key but the classifier
    layer's, which keeps its fresh initialisation); return the keys loaded. A mismatch raises a
    `ConfigError` listing the missing, unexpected and shape-mismatched keys."""
    from zoo.weights import load_state_dict_strict

    head = getattr(model, "classifier", None)
    if not head:
        raise ConfigError(f"config key 'init_from': {type(model).__name__} names no classifier layer to keep")
    state = encoder_backbone_state(name)
    try:
        load_state_dict_strict(model, state, source=f"{name}'s backbone", allow_missing=(f"{head}.",))
    except IncompatibleKeysError as err:
        raise ConfigError(f"config key 'init_from': {err}") from err
    return sorted(state)


class FineTuneObjective(SemiSupervisedObjective):
    name = "fine_tune"
    Config = FineTuneConfig
    config: FineTuneConfig

    def build(self, data: Data) -> dict[str, nn.Module]:
        models = super().build(data)
        if self.config.init_from:
            init_from_encoder(models["model"], self.config.init_from)
        return models

    def method_papers(self) -> list[str]:
        if not self.config.init_from:
            return []
        from zoo.registry import get_weights

        return list(get_weights(self.config.init_from).papers or [])

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        c = self.config
        model, meta = super().publish(model, data)
        if c.init_from:
            meta["description"] = (
                f"{c.model} initialised from `{c.init_from}`'s backbone (self-supervised on the MNIST 5k train "
                f"images), then fine-tuned on {len(self.labelled)} labelled train images ({c.labels_per_class} "
                f"per class, draw {c.label_draw}); evaluated on the 1,000 test images."
            )
        return model, meta


# ------------------------------------------------------------------------------------------------ presets
# The baseline's recipe (cnn.mnist100_supervised) from each encoder instead of from scratch.
for _encoder in ("simclr", "moco", "byol"):
    register_preset(
        f"cnn.mnist100_{_encoder}_finetune",
        FineTuneObjective,
        FineTuneConfig(
            **{k: v for k, v in vars(SEMI_MNIST).items() if k != "method"},
            init_from=f"{_encoder}_cnn.mnist",
        ),
        f"{_encoder}_cnn.mnist's backbone fine-tuned on 10 labels per digit (cnn.mnist100_supervised's recipe)",
    )
