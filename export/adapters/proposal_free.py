"""Proposal-free instance segmentation (``zoo/models/proposal_free.py``): the dense network in the graph,
the grouping in numpy.

The model's ``forward`` is a dense network (``model.dense``: class probabilities, centre heatmap, offsets,
boundary map) followed by a torch-free grouping (`zoo.tasks.instance_grouping`: local maxima, offsets,
connected components, watershed) that no exporter can trace. So the file holds only the network, which is
tensor-in, tensor-out: the dynamo exporter takes it with a dynamic batch and any height and width (the
network pads to its size multiple inside), and the runtime groups its maps with the same numpy code the
PyTorch model runs (`export.detection_runtime.decode_dense`), the method and its settings read from the
file (``zoo.grouping``). Validation compares the maps element by element and the grouped instances as
detections (`export.detection_runtime.match_detections`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from export.adapters import Adapter, GraphSpec, image_graph, register_adapter
from export.detection_runtime import decode_dense, detection_agreement, merge_agreements

EXPORT_SPLIT = {
    "name": "dense-network",
    "graph": "normalise, pad to the size multiple, U-Net, class/centre/offset/boundary maps cropped back",
    "runtime": "zoo.tasks.instance_grouping (numpy, scikit-image): instances, boxes, labels, scores",
    "batch": "dynamic batch, any height and width",
}


def _grouping(model: Any) -> dict[str, Any]:
    """What the runtime needs to group as the model does: its method and settings (JSON values)."""
    return {"method": model.grouping, **{k: v for k, v in model.grouping_args.items()}}


@register_adapter
class ProposalFreeAdapter(Adapter):
    families = ("proposal_free",)
    browser_demo = ""  # the instances are grouped in numpy (`decode`), not in the graph: no gallery demo

    def graphs(self, model: Any, *, input_size: Sequence[int], dynamic: bool) -> list[GraphSpec]:
        from torch import nn

        from zoo.models.proposal_free import DENSE_OUTPUTS

        class Dense(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, image: Any) -> tuple[Any, ...]:
                maps = self.model.dense(image)
                return tuple(maps[name] for name in DENSE_OUTPUTS)

        grouping = _grouping(model)

        def agreement(
            expected: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray], meta: Any, **_: Any
        ):
            pairs = zip(decode_dense(expected, grouping), decode_dense(actual, grouping))
            return merge_agreements([detection_agreement(e, a, meta) for e, a in pairs])

        return [
            image_graph(
                model,
                input_size=input_size,
                dynamic=dynamic,
                output_names=DENSE_OUTPUTS,
                module=Dense().eval(),
                spatial_axes={2: "height", 3: "width"},
                note="proposal-free instance segmenter: the dense maps; instances are grouped by the runtime",
                extra={"export_split": EXPORT_SPLIT, "grouping": grouping},
                agreement=agreement,
            )
        ]

    def decode(self, graph: str, outputs: dict[str, np.ndarray], meta: Any) -> dict[str, np.ndarray]:
        """One image's dense maps -> its instances as the task's outputs."""
        (first,) = decode_dense({k: v[:1] for k, v in outputs.items()}, meta.extra.get("grouping") or {})
        return first

    def postprocess(self, graph: str, outputs: dict[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        task = meta.task_object
        grouped = decode_dense(outputs, meta.extra.get("grouping") or {})
        return [task.postprocess(one, meta, **options)[0] for one in grouped]
