"""Autoencoders: the full model plus the two halves, ``encoder`` (image -> latent) and ``decoder``.

Files (for ``to_onnx(..., "ae.onnx")``): ``ae.onnx`` (image -> reconstruction, one call for the common
case), ``ae.encoder.onnx`` (image -> latent) and ``ae.decoder.onnx`` (latent -> reconstruction), so a
deployment can compress, sample or interpolate in latent space without PyTorch. The decoder is traced and
validated on latents of real encoder outputs (its example images, encoded), not on noise.

Post-processing is the image-to-image task's (`zoo.tasks.image_to_image`): reconstructions become
(H, W, C) uint8 images in the input's pixel space, written as ``<name>_reconstruction.png`` by
``zoo predict``, and an encoder's latent codes pass through. A model of the family that lacks
``encode``/``decode`` exports the full model only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from export.adapters import Adapter, GraphSpec, image_graph, register_adapter


@register_adapter
class AutoencoderAdapter(Adapter):
    families = ("autoencoder",)

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
