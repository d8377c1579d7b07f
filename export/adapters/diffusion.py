"""Diffusion denoisers: one graph, ``(noisy_image, timestep[, label]) -> prediction``; sampling in numpy.

The graph is the network only (`zoo.models.diffusion`), traced with the dynamo exporter with a dynamic
batch on every input; the process it was trained with (schedule, prediction type) travels in the file's
metadata (``zoo.process``, and ``zoo.num_classes``), and the samplers run in numpy in
`export.diffusion_runtime`, the same `zoo.processes.diffusion` code ``model.sample`` runs. So ``zoo sample
--onnx FILE`` draws with onnxruntime alone, and with the same noise gives PyTorch's trajectory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from export.adapters import Adapter, GraphSpec, register_adapter


@register_adapter
class DiffusionAdapter(Adapter):
    families = ("diffusion",)
    replays_noise = True  # x_T is an argument of both samplers; DDIM with eta 0 draws nothing after it

    def graphs(self, model: Any, *, input_size: Sequence[int], dynamic: bool) -> list[GraphSpec]:
        import torch

        names = tuple(model.input_names)

        def make_inputs(batch: int, variant: Any) -> tuple[torch.Tensor, ...]:
            # Random timesteps over the whole range and, for conditional models, the null label too.
            return model.example_inputs(
                batch_size=batch, generator=torch.Generator().manual_seed(1000 + batch)
            )

        axes = {n: {0: "batch"} for n in (*names, "prediction")} if dynamic else {}
        return [
            GraphSpec(
                name="model",
                module=model,
                input_names=names,
                output_names=("prediction",),
                make_inputs=make_inputs,
                variants=(tuple(int(v) for v in input_size[1:]),),
                dynamic_axes=axes,
                note="diffusion denoiser: noisy image, timestep (and class; the null label for guidance) -> "
                f"the {model.process.prediction} prediction; the samplers run in numpy",
                extra={"process": model.process.to_dict(), "num_classes": int(model.num_classes)},
            )
        ]

    # ---------------------------------------------------------------- runtime side (numpy only)
    def postprocess(self, graph: str, outputs: dict[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        # A denoiser's output is a prediction of noise (or v), not an image: hand the arrays back per sample.
        return list(outputs["prediction"])

    def sample(self, model: Any, n: int, **options: Any) -> np.ndarray:
        """`n` images (n, C, H, W) in [0, 1] drawn torch-free (see `export.diffusion_runtime.sample`)."""
        from export.diffusion_runtime import sample

        return sample(model, n, **options)
