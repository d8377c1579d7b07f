"""Autoencoders: the full model plus the two halves, ``encoder`` (image -> latent) and ``decoder``.

Files (for ``to_onnx(..., "ae.onnx")``): ``ae.onnx`` (image -> reconstruction, one call for the common
case), ``ae.encoder.onnx`` (image -> latent) and ``ae.decoder.onnx`` (latent -> reconstruction), so a
deployment can compress, sample or interpolate in latent space without PyTorch. The decoder is traced and
validated on latents of real encoder outputs (its example images, encoded), not on noise.

The runtime turns reconstructions back into (H, W, C) uint8 images in the input's pixel space (undoing the
weight's mean/std if it has one) and writes them as ``<name>_reconstruction.png`` for ``zoo predict``.
Models of the task that lack ``encode``/``decode`` export the full model only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from export.adapters import Adapter, GraphSpec, image_graph, register_adapter, to_uint8_images


@register_adapter
class AutoencoderAdapter(Adapter):
    tasks = ("autoencoding",)

    def graphs(self, model: Any, *, input_size: Sequence[int], dynamic: bool) -> list[GraphSpec]:
        import torch
        from torch import nn

        full = image_graph(model, input_size=input_size, dynamic=dynamic, output_names=("reconstruction",))
        if not (hasattr(model, "encode") and hasattr(model, "decode")):
            return [full]

        class Half(nn.Module):
            """One of the model's methods as a module's forward, for the exporter."""

            def __init__(self, method: str):
                super().__init__()
                self.model, self.method = model, method

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return getattr(self.model, self.method)(x)

        encoder = image_graph(
            model,
            input_size=input_size,
            dynamic=dynamic,
            output_names=("latent",),
            name="encoder",
            module=Half("encode").eval(),
            note="image -> latent code",
        )

        @torch.no_grad()
        def latents(batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
            return (model.encode(*full.make_inputs(batch, size)),)

        (latent,) = latents(1, full.variants[0])
        axes: dict[str, dict[int, str]] = {}
        if dynamic:
            latent_axes = {0: "batch"}
            if latent.dim() == 4 and len(full.variants) > 1:  # a convolutional code follows the image size
                latent_axes.update({2: "latent_height", 3: "latent_width"})
            axes = {"latent": latent_axes, "reconstruction": {0: "batch"}}
        decoder = GraphSpec(
            name="decoder",
            module=Half("decode").eval(),
            input_names=("latent",),
            output_names=("reconstruction",),
            make_inputs=latents,
            variants=full.variants,
            dynamic_axes=axes,
            note="latent code -> reconstruction",
        )
        full.note = "image -> reconstruction (encoder then decoder)"
        return [full, encoder, decoder]

    def postprocess(self, graph: str, outputs: dict[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        if "reconstruction" in outputs:
            return to_uint8_images(outputs["reconstruction"], meta.input_size, meta.mean, meta.std)
        if "latent" in outputs:
            return list(outputs["latent"])
        return super().postprocess(graph, outputs, meta, **options)

    def describe(self, item: Any, source: str, out_dir: Path | None = None, **options: Any) -> str:
        if item.dtype != np.uint8:  # a latent code
            return f"{source}: latent " + " ".join(f"{v:.4f}" for v in np.ravel(item))
        if out_dir is None:
            from zoo.errors import ConfigError

            raise ConfigError("autoencoder predictions are images: pass --out DIR to write them")
        from PIL import Image

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"{Path(source).stem}_reconstruction.png"
        Image.fromarray(item[..., 0] if item.shape[2] == 1 else item).save(target)
        return f"{source}: reconstruction -> {target}"
