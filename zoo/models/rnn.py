"""RNN / LSTM / GRU sequence classifiers: stacked, optionally bidirectional, many-to-one.

- Elman RNN: "Finding Structure in Time", Elman, 1990 (https://doi.org/10.1207/s15516709cog1402_1);
- LSTM: "Long Short-Term Memory", Hochreiter & Schmidhuber, 1997 (https://doi.org/10.1162/neco.1997.9.8.1735);
- GRU: "Learning Phrase Representations using RNN Encoder-Decoder for Statistical Machine Translation",
  Cho et al., 2014 (https://arxiv.org/abs/1406.1078);
- bidirectional: "Bidirectional Recurrent Neural Networks", Schuster & Paliwal, 1997
  (https://doi.org/10.1109/78.650093).

The recurrent layers are torch's own (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``, batch first). Many-to-one: the
classifier reads the final hidden state of the top layer, of both directions when bidirectional (the
forward direction's after the last step, the backward direction's after the first), concatenated.

Inputs are sequences (B, T, F), or images (B, C, H, W) read as H time steps of C * W features, one image
row a step (the "sequential rows" reading of MNIST). A sequence is an image with its channel dimension
dropped, so ``img_size=(T, F)`` with ``in_chans=1`` describes a sequence model. T may vary at run time,
the features per step F = C * W may not: ``dynamic_size`` is False, ``input_size`` is the (C, H, W) the
example inputs use.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.models.base import ZooModel
from zoo.registry import entries, register_model

__all__ = ["CELLS", "RNNClassifier"]

PAPERS = (
    "https://doi.org/10.1207/s15516709cog1402_1",
    "https://doi.org/10.1162/neco.1997.9.8.1735",
    "https://arxiv.org/abs/1406.1078",
    "https://doi.org/10.1109/78.650093",
)

_CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
CELLS = tuple(_CELLS)


def _pair(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    # config.json stores tuples as lists; both spellings mean (H, W).
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


class RNNClassifier(ZooModel):
    """A stacked (bi)directional RNN/LSTM/GRU over image rows or feature sequences, then a linear head."""

    classifier = "head"
    # The first layer's input weights are (gates * hidden, C * W): no conv kernel to adapt to in_chans=.
    first_conv = None
    dynamic_size = False

    def __init__(
        self,
        cell: str = "lstm",
        num_classes: int = 10,
        in_chans: int = 1,
        img_size: int | tuple[int, int] = 28,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if cell not in _CELLS:
            raise ConfigError(f"unknown cell '{cell}'; expected one of {', '.join(CELLS)}")
        if num_layers < 1:
            raise ConfigError(f"num_layers must be at least 1, got {num_layers}")
        height, width = _pair(img_size)
        self.input_size = (in_chans, height, width)
        self.num_classes = num_classes
        self.in_features = in_chans * width
        self.num_directions = 2 if bidirectional else 1
        self.rnn = _CELLS[cell](
            self.in_features,
            hidden_size,
            num_layers,
            batch_first=True,
            # torch applies it between stacked layers only (and warns when there are none).
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        self.num_features = hidden_size * self.num_directions
        self.head_drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.num_features, num_classes)

    @staticmethod
    def to_sequence(x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, H, C * W) sequences: one row (all channels) a time step."""
        return x.permute(0, 2, 1, 3).flatten(2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The top layer's final hidden states, both directions concatenated: (B, num_features)."""
        if x.dim() == 4:
            x = self.to_sequence(x)
        elif x.dim() != 3:
            raise ValueError(
                f"expected (B, T, F) sequences or (B, C, H, W) images, got a {x.dim()}-d tensor "
                f"of shape {tuple(x.shape)}"
            )
        _, hidden = self.rnn(x)
        if isinstance(hidden, tuple):  # LSTM: (h_n, c_n); the output is h_n, c_n is the cell's memory
            hidden = hidden[0]
        # h_n is (num_layers * num_directions, B, hidden), layer-major: the last entries are the top layer.
        return hidden[-self.num_directions :].transpose(0, 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_drop(self.forward_features(x)))


def _create(fixed: dict[str, Any], defaults: dict[str, Any], kwargs: dict[str, Any]) -> RNNClassifier:
    # `fixed` is what the builder's name promises (an `lstm` is an LSTM); the rest are overridable defaults.
    for key, value in fixed.items():
        if key in kwargs and kwargs[key] != value:
            family = [e.arch for e in entries() if e.family == __name__.rsplit(".", 1)[-1]]
            raise ConfigError(
                f"this builder fixes {key}={value!r}; for another, use the builder that names it "
                f"(one of {', '.join(family)})"
            )
    return RNNClassifier(**{**defaults, **kwargs, **fixed})


@register_model
def rnn(**kwargs: Any) -> RNNClassifier:
    """Elman RNN (tanh), one layer of 128 units, over the 28 rows of a 28x28 grey image."""
    return _create({"cell": "rnn"}, {"hidden_size": 128, "num_layers": 1}, kwargs)


@register_model(weights=("mnist",))
def lstm(**kwargs: Any) -> RNNClassifier:
    """Two stacked LSTM layers of 128 units over the 28 rows of a 28x28 grey image."""
    return _create({"cell": "lstm"}, {"hidden_size": 128, "num_layers": 2}, kwargs)


@register_model
def gru(**kwargs: Any) -> RNNClassifier:
    """Two stacked GRU layers of 128 units over the 28 rows of a 28x28 grey image."""
    return _create({"cell": "gru"}, {"hidden_size": 128, "num_layers": 2}, kwargs)


@register_model
def bilstm(**kwargs: Any) -> RNNClassifier:
    """Two stacked bidirectional LSTM layers of 128 units a direction over 28x28 grey image rows."""
    return _create({"cell": "lstm", "bidirectional": True}, {"hidden_size": 128, "num_layers": 2}, kwargs)
