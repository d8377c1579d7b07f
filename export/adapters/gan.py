"""GAN generators (`zoo.models.gan`): one graph, ``latent[, label] -> image``; sampling in numpy.

The graph is the generator in eval mode (batch norm folded to its running statistics), with a dynamic
batch on every input. ``zoo.latent_dim`` and ``zoo.num_classes`` travel in the file's metadata, so
`GANAdapter.sample` (what ``OnnxModel.sample`` and ``zoo sample --onnx FILE`` call) draws z ~ N(0, I) with
numpy's ``default_rng(seed)`` and runs the graph with onnxruntime alone: the same seed gives the same
digits in this runtime, though not the ones torch's generator would draw (pass ``latent`` to give both
runtimes the same noise, as the tests do).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from export.adapters import Adapter, GraphSpec, register_adapter

__all__ = ["GANAdapter"]


@register_adapter
class GANAdapter(Adapter):
    families = ("gan",)
    browser_demo = "latent"  # one sample from a fixed latent and a chosen class, in the gallery

    def graphs(self, model: Any, *, input_size: Sequence[int], dynamic: bool) -> list[GraphSpec]:
        import torch

        names = tuple(model.input_names)

        def make_inputs(batch: int, variant: Any) -> tuple[torch.Tensor, ...]:
            return model.example_inputs(
                batch_size=batch, generator=torch.Generator().manual_seed(1000 + batch)
            )

        axes = {n: {0: "batch"} for n in (*names, "image")} if dynamic else {}
        return [
            GraphSpec(
                name="model",
                module=model,
                input_names=names,
                output_names=("image",),
                make_inputs=make_inputs,
                variants=(tuple(int(v) for v in input_size[1:]),),
                dynamic_axes=axes,
                note="GAN generator: latent z ~ N(0, I)"
                + (" and class index" if model.num_classes else "")
                + " -> image in [0, 1]",
                extra={"latent_dim": int(model.latent_dim), "num_classes": int(model.num_classes)},
            )
        ]

    # ---------------------------------------------------------------- runtime side (numpy only)
    def postprocess(self, graph: str, outputs: dict[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        return list(np.clip(np.asarray(outputs["image"], np.float32), 0.0, 1.0))

    def sample(
        self,
        model: Any,
        n: int,
        *,
        seed: int = 0,
        labels: int | Sequence[int] | None = None,
        latent: np.ndarray | None = None,
        **options: Any,
    ) -> np.ndarray:
        """`n` images (n, C, H, W) float32 in [0, 1] from an exported generator (`export.runtime.OnnxModel`):
        z from numpy's ``default_rng(seed)`` (or `latent`), `labels` as ``DCGANGenerator.sample`` takes them."""
        from zoo.errors import ConfigError
        from zoo.processes.latent import check_labels, check_n

        if options:
            raise ConfigError(f"a GAN generator takes no sampler options; got {sorted(options)}")
        n = check_n(n)
        meta = model.meta
        latent_dim, num_classes = int(meta.extra["latent_dim"]), int(meta.extra.get("num_classes", 0))
        classes = check_labels(labels, int(n), num_classes, tuple(getattr(meta, "labels", None) or ()))
        if latent is None:
            latent = np.random.default_rng(seed).standard_normal((int(n), latent_dim))
        z = np.asarray(latent, np.float32)
        if z.shape != (int(n), latent_dim):
            raise ConfigError(f"latent of shape {z.shape}; expected {(int(n), latent_dim)}")
        feeds: dict[str, np.ndarray] = {"latent": z}
        if classes is not None:
            feeds["label"] = np.asarray(classes, np.int64)
        return np.clip(np.asarray(model.run(feeds)["image"], np.float32), 0.0, 1.0)
