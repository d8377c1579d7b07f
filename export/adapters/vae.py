"""Variational autoencoders (`zoo.models.vae`): the full model, the encoder and the decoder.

Files (for ``to_onnx(..., "vae.onnx")``):

- ``vae.onnx``: image -> ``reconstruction`` and ``nll_bits_per_dim`` (forward: the predict path, with the
  model's fixed importance-sampling draws baked in as a constant);
- ``vae.encoder.onnx``: image -> ``mu``, ``logvar`` of the posterior (binarize the image first, as
  `zoo.models.vae.VAE.prepare` does: the encoder graph takes the data the likelihood is over);
- ``vae.decoder.onnx``: ``latent`` (B, latent_dim) -> ``image``, the decoder's mean image in [0, 1].

`sample` draws digits torch-free: z ~ N(0, I) from numpy, through the decoder graph. The decoder is
validated on latents of real encoder outputs and on prior draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from export.adapters import Adapter, GraphSpec, image_graph, register_adapter

__all__ = ["VAEAdapter", "sample"]


def sample(
    run_decoder: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    latent_dim: int,
    n: int,
    seed: int = 0,
) -> np.ndarray:
    """`n` samples (n, C, H, W) in [0, 1] from a decoder graph run by any runtime: ``run_decoder({"latent":
    z})`` returns its named outputs. The noise is numpy's (``default_rng(seed)``), so the same seed gives
    the same digits, though not the ones torch's generator would draw."""
    if n < 1:
        raise ValueError(f"n={n}: the number of samples must be >= 1")
    z = np.random.default_rng(seed).standard_normal((n, latent_dim)).astype(np.float32)
    return np.clip(np.asarray(run_decoder({"latent": z})["image"], np.float32), 0.0, 1.0)


@register_adapter
class VAEAdapter(Adapter):
    families = ("vae",)

    def graphs(self, model: Any, *, input_size: Sequence[int], dynamic: bool) -> list[GraphSpec]:
        import torch
        from torch import nn

        full = image_graph(
            model,
            input_size=input_size,
            dynamic=dynamic,
            output_names=tuple(model.output_names),
            note="image -> reconstruction (posterior mean) and NLL in bits/dim (IWAE, fixed draws)",
        )

        class Encoder(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                return self.model.encode(x)

        class Decoder(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, z: torch.Tensor) -> torch.Tensor:
                return self.model.decode(z)

        def binary_images(batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
            return (model.prepare(full.make_inputs(batch, size)[0]),)

        encoder = GraphSpec(
            name="encoder",
            module=Encoder().eval(),
            input_names=("image",),
            output_names=("mu", "logvar"),
            make_inputs=binary_images,
            variants=full.variants,
            dynamic_axes={"image": {0: "batch"}, "mu": {0: "batch"}, "logvar": {0: "batch"}}
            if dynamic
            else {},
            note="binarized image -> posterior mean and log-variance",
        )

        @torch.no_grad()
        def latents(batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
            # Half posterior means of real-looking inputs, half prior draws: the decoder meets both.
            (x,) = binary_images(batch, size)
            mu, _ = model.encode(x)
            g = torch.Generator().manual_seed(batch)
            prior = torch.randn(mu.shape, generator=g).to(mu.device)
            return (torch.where(torch.arange(batch, device=mu.device)[:, None] % 2 == 0, mu, prior),)

        decoder = GraphSpec(
            name="decoder",
            module=Decoder().eval(),
            input_names=("latent",),
            output_names=("image",),
            make_inputs=latents,
            variants=full.variants,
            dynamic_axes={"latent": {0: "batch"}, "image": {0: "batch"}} if dynamic else {},
            note="latent (B, latent_dim) -> mean image in [0, 1]; sample with z ~ N(0, I)",
            extra={"latent_dim": int(model.latent_dim)},
        )
        return [full, encoder, decoder]

    def sample(self, model: Any, n: int, *, seed: int = 0, labels: Any = None, **options: Any) -> np.ndarray:
        """`n` images (n, C, H, W) in [0, 1] from the exported decoder (`export.runtime.OnnxModel` of the
        ``decoder`` graph), z from numpy's ``default_rng(seed)``: ``zoo sample --onnx FILE.decoder.onnx``."""
        from zoo.errors import ConfigError
        from zoo.processes.latent import check_n

        if model.meta.graph != "decoder":
            raise ConfigError(
                f"{model.path.name} is the VAE's '{model.meta.graph}' graph; sample from its decoder graph "
                f"({model.path.name.removesuffix('.onnx').split('.' + model.meta.graph)[0]}.decoder.onnx)"
            )
        if labels is not None:
            raise ConfigError("this VAE is unconditional: it takes no labels (sample without --labels)")
        if options:
            raise ConfigError(f"a VAE decoder takes no sampler options; got {sorted(options)}")
        return sample(model.run, int(model.meta.extra["latent_dim"]), check_n(n), seed)

    def postprocess(self, graph: str, outputs: dict[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        if graph == "encoder":  # latent codes pass through, one dict per image
            return [{k: np.asarray(v[i]) for k, v in outputs.items()} for i in range(len(outputs["mu"]))]
        return super().postprocess(graph, outputs, meta, **options)
