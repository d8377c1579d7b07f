"""RNN / LSTM / GRU classifiers: image rows are time steps, and the number of steps is a dynamic axis.

The models read (B, C, H, W) images as H steps of C * W features (`zoo.models.rnn`), so H is the sequence
length T: it may vary at run time while C and W (the features per step) may not. The graph keeps the
image input, with axis 2 named ``time``, and is validated at T and 2T. torch 2.14's dynamo exporter
unrolls the Elman ``nn.RNN`` over a fixed T and refuses the dynamic axis; the TorchScript exporter writes
ONNX ``RNN``/``LSTM``/``GRU`` ops that loop over any T, so ``auto`` falls back to it for that cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from export.adapters import Adapter, GraphSpec, image_graph, register_adapter


@register_adapter
class RecurrentAdapter(Adapter):
    families = ("rnn",)

    def graphs(self, model: Any, *, input_size: Sequence[int], dynamic: bool) -> list[GraphSpec]:
        return [
            image_graph(
                model,
                input_size=input_size,
                dynamic=dynamic,
                output_names=("logits",),
                spatial_axes={2: "time"},
                note="image rows are the time steps: axis 2 (time) may vary, channels and width may not",
            )
        ]
