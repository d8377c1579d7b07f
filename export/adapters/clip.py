"""CLIP (`zoo.models.clip`): two graphs, the image tower and the text tower.

Files (for ``to_onnx(..., "clip.onnx")``):

- ``clip.onnx``: ``image`` (B, 3, H, W), normalised as the weight says -> ``image_embeds`` (B, D);
- ``clip.text.onnx``: ``tokens`` (B, context_length) int64 ids from the weight's ``tokenizer.json`` ->
  ``text_embeds`` (B, D), read at each row's end-of-text token.

Both are validated element-wise against PyTorch and, at the level of the task, by the cosine of each
embedding to PyTorch's (>= 0.9999, `MIN_COSINE`). `export.clip_runtime` tokenizes, embeds, classifies
zero-shot and searches images by text with onnxruntime and numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from export.adapters import Adapter, GraphSpec, register_adapter
from zoo.tasks import Agreement

__all__ = ["MIN_COSINE", "ClipAdapter", "cosine_agreement"]

MIN_COSINE = 0.9999  # every exported embedding's cosine to PyTorch's


def cosine_agreement(
    expected: dict[str, np.ndarray], actual: dict[str, np.ndarray], meta: Any, **tolerance: float
) -> Agreement:
    """Every embedding of every output points where PyTorch's does (cosine >= `MIN_COSINE`); the
    element-wise parity (`tolerance`: atol, rtol) is checked beside it by the exporter."""
    worst = 1.0
    for key, want in expected.items():
        a, b = np.asarray(want, np.float64), np.asarray(actual[key], np.float64)
        cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
        worst = min(worst, float(cos.min()))
    return Agreement(worst >= MIN_COSINE, {"min_cosine": worst})


@register_adapter
class ClipAdapter(Adapter):
    families = ("clip",)

    def graphs(self, model: Any, *, input_size: Sequence[int], dynamic: bool) -> list[GraphSpec]:
        import torch

        _, height, width = input_size

        def images(batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
            generator = torch.Generator().manual_seed(1000 * batch + size[0] + size[1])
            return (model.example_inputs(batch, generator)[0],)

        def tokens(batch: int, variant: int) -> tuple[torch.Tensor, ...]:
            # Rows as the tokenizer writes them (`CLIP.example_inputs`), drawn anew for each variant.
            return (model.example_inputs(batch, torch.Generator().manual_seed(batch + variant))[1],)

        image = GraphSpec(
            name="model",
            module=model.image_tower().eval(),
            input_names=("image",),
            output_names=("image_embeds",),
            make_inputs=images,
            variants=((height, width),),  # position embeddings fix the size
            dynamic_axes={"image": {0: "batch"}, "image_embeds": {0: "batch"}} if dynamic else {},
            note="image -> CLIP image embedding (not normalised)",
            agreement=cosine_agreement,
        )

        axes = {"tokens": {0: "batch"}, "text_embeds": {0: "batch"}} if dynamic else {}
        text = GraphSpec(
            name="text",
            module=model.text_tower().eval(),
            input_names=("tokens",),
            output_names=("text_embeds",),
            make_inputs=tokens,
            variants=(0,),  # one length (the context): the end-of-text token moves row by row instead
            dynamic_axes=axes,
            note="token ids (tokenizer.json) -> CLIP text embedding at the end-of-text token (not normalised)",
            agreement=cosine_agreement,
        )
        return [image, text]

    def postprocess(self, graph: str, outputs: dict[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        if graph == "text":  # text embeddings, unit length (no classification without images)
            embeds = np.asarray(outputs["text_embeds"], np.float32)
            return list(embeds / np.maximum(np.linalg.norm(embeds, axis=-1, keepdims=True), 1e-12))
        return super().postprocess(graph, outputs, meta, **options)
