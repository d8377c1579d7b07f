"""`zoo predict` with PyTorch: the weight's task pre- and post-processes, exactly as the ONNX runtime does.

Both paths call `zoo.tasks.base.predict_lines` with their own way to run the network, so what they read,
how they preprocess and what they print or draw cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import ConfigError
from zoo.factory import HF_PREFIX, create_model, looks_like_path
from zoo.models.base import named_outputs
from zoo.tasks import get_task
from zoo.tasks.base import predict_lines

__all__ = ["load_for_inference", "predict_files"]


def load_for_inference(name: str) -> torch.nn.Module:
    """A pretrained model in eval mode: `arch` (its default weight), `arch.tag`, a folder or an hf-hub repo."""
    if name.startswith(HF_PREFIX) or looks_like_path(name):
        model = create_model(name)
    else:
        model = create_model(name, pretrained=True)
    return model.eval()


@torch.no_grad()
def predict_files(
    name: str,
    files: Sequence[str | os.PathLike],
    k: int = 3,
    invert: bool = False,
    out_dir: Path | None = None,
    labels: Sequence[str] | None = None,
    **options: Any,
) -> Iterator[str]:
    """One printable line per file (and a picture in `out_dir` where the task draws one); `labels` (class
    names or texts) make a weight that embeds text (CLIP) classify zero-shot among them."""
    model = load_for_inference(name)
    meta = model.pretrained_weights
    if labels:
        from zoo.search import class_options
        from zoo.text import get_tokenizer

        if not hasattr(model, "encode_text"):
            raise ConfigError(f"--labels needs a weight that embeds text (CLIP); {name} does not")
        options.update(
            class_options(model, get_tokenizer(meta.name if not looks_like_path(name) else name), labels)
        )
    task = get_task(meta.task)
    if not meta.input_size:
        meta = meta.replace(input_size=tuple(model.input_size))

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        return named_outputs(model, model(torch.from_numpy(x)), task)

    yield from predict_lines(task, meta, files, run, invert=invert, out_dir=out_dir, k=k, **options)
