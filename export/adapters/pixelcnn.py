"""PixelCNN (`zoo.models.pixelcnn`): the logits network, with its masks folded into the weights.

One graph, ``model``: ``image`` (B, 1, 28, 28) in [0, 1] [, ``label`` (B,) int64 for the conditional model]
-> ``logits`` (per-pixel Bernoulli logits of the binarized image) and ``nll_bits_per_dim`` (exact). The
graph is traced from a copy whose `MaskedConv2d` weights were multiplied by their masks once (FACTS: the
dynamo exporter would otherwise keep the mask multiply at run time, doubling the file); the function is
unchanged, so parity holds.

`PixelCNNAdapter.sample` draws torch-free: numpy runs the raster-order loop, one onnxruntime call per pixel
on the whole batch (the graph's spatial size is fixed, so the crops the PyTorch sampler uses are not
available here: each call scores the whole image, which costs more per pixel, not different numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from export.adapters import Adapter, GraphSpec, register_adapter

__all__ = ["PixelCNNAdapter", "sample"]


def sample(model: Any, n: int, *, seed: int = 0, labels: Any = None, **options: Any) -> np.ndarray:
    """`n` binary images (n, 1, H, W) float32 in {0, 1} from an exported PixelCNN (`export.runtime.OnnxModel`
    or anything with ``meta`` and ``run(dict) -> dict``), drawn in raster order with numpy's
    ``default_rng(seed)``: one uniform per pixel per sample, a row at a time."""
    from zoo.errors import ConfigError
    from zoo.processes.latent import check_labels, check_n

    if options:
        raise ConfigError(f"PixelCNN samples without {', '.join('--' + k for k in options)}")
    n = check_n(n)
    num_classes = int(model.meta.extra.get("num_classes", 0))
    # the model's rule (`PixelCNN.sample`): labels cycle, all classes in turn when none are given
    given = check_labels(labels, n, num_classes, tuple(getattr(model.meta, "labels", None) or ()))
    classes = None if given is None else np.asarray(given, np.int64)
    _, height, width = tuple(model.meta.input_size)
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, height, width), np.float32)
    feeds: dict[str, np.ndarray] = {} if classes is None else {"label": classes}
    for row in range(height):
        uniform = rng.random((n, width))  # a row of draws at a time, as the PyTorch sampler draws
        for col in range(width):
            logits = model.run({"image": x, **feeds})["logits"][:, 0, row, col]
            p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
            x[:, 0, row, col] = (uniform[:, col] < p).astype(np.float32)
    return x


@register_adapter
class PixelCNNAdapter(Adapter):
    families = ("pixelcnn",)

    def graphs(self, model: Any, *, input_size: Sequence[int], dynamic: bool) -> list[GraphSpec]:
        import copy

        import torch

        from zoo.models.pixelcnn import fold_masks

        folded = fold_masks(copy.deepcopy(model)).eval()
        names = tuple(model.input_names)

        def make_inputs(batch: int, variant: Any) -> tuple[torch.Tensor, ...]:
            return model.example_inputs(
                batch_size=batch, generator=torch.Generator().manual_seed(1000 + batch)
            )

        outputs = tuple(model.output_names)
        axes = {k: {0: "batch"} for k in (*names, *outputs)} if dynamic else {}
        return [
            GraphSpec(
                name="model",
                module=folded,
                input_names=names,
                output_names=outputs,
                make_inputs=make_inputs,
                variants=(tuple(int(v) for v in input_size[1:]),),
                dynamic_axes=axes,
                note="PixelCNN: [0, 1] image (binarized inside)"
                + (" and class" if model.num_classes else "")
                + " -> per-pixel Bernoulli logits and the exact NLL in bits/dim; masks folded into the weights",
                extra={"num_classes": int(model.num_classes)},
            )
        ]

    # ---------------------------------------------------------------- runtime side (numpy only)
    def sample(self, model: Any, n: int, **options: Any) -> np.ndarray:
        """`n` images drawn torch-free (see `sample`)."""
        return sample(model, n, **options)
