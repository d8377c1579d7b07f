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


def _labels(labels: Any, n: int, num_classes: int) -> np.ndarray | None:
    """Labels for `n` samples as int64, with the model's errors (mirrors `PixelCNN.check_labels`)."""
    from zoo.errors import ConfigError

    if not num_classes:
        if labels is not None:
            raise ConfigError("this PixelCNN is unconditional: it takes no labels (drop --labels)")
        return None
    allowed = f"0..{num_classes - 1}"
    if labels is None:  # a balanced grid, as the recipe draws
        return (np.arange(n) % num_classes).astype(np.int64)
    values = np.asarray(labels).reshape(-1)
    if values.size == 1:
        values = np.repeat(values, n)
    if values.size != n:
        raise ConfigError(f"got {values.size} labels for {n} images: give one label, or one per image")
    bad = sorted({int(v) for v in values if not 0 <= int(v) < num_classes})
    if bad:
        raise ConfigError(f"label(s) {bad} outside this model's labels; allowed: {allowed}")
    return values.astype(np.int64)


def sample(model: Any, n: int, *, seed: int = 0, labels: Any = None, **options: Any) -> np.ndarray:
    """`n` binary images (n, 1, H, W) float32 in {0, 1} from an exported PixelCNN (`export.runtime.OnnxModel`
    or anything with ``meta`` and ``run(dict) -> dict``), drawn in raster order with numpy's
    ``default_rng(seed)``: one uniform per pixel per sample, a row at a time."""
    from zoo.errors import ConfigError

    if options:
        raise ConfigError(f"PixelCNN samples without {', '.join('--' + k for k in options)}")
    if int(n) < 1:
        raise ConfigError(f"n={n}: the number of samples must be >= 1")
    n = int(n)
    num_classes = int(model.meta.extra.get("num_classes", 0))
    classes = _labels(labels, n, num_classes)
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
