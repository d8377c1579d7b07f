"""CLIP without torch: the two exported graphs (`export.adapters.clip`), the weight's ``tokenizer.json``,
onnxruntime and numpy.

    clip = ClipRuntime("clip.onnx", "tokenizer.json")        # clip.text.onnx is found beside clip.onnx
    probs = clip.zero_shot(images, ["0", "1", ..., "9"])      # (N, K), the weight's prompt templates
    order = clip.search("a 4 above a 9", images)              # image indices, best first, and scores

Images are (H, W, C) uint8 arrays (or files); they are resized and normalised by the task's numpy
preprocessing, the code ``zoo predict`` runs, so both runtimes see the same input.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from export.runtime import OnnxModel, OnnxModelError
from zoo.text import TOKENIZER_FILE, CaptionTokenizer

__all__ = ["ClipRuntime", "unit", "zero_shot_lines"]


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class ClipRuntime:
    """The image graph, the text graph (``<stem>.text.onnx`` beside it unless given) and the tokenizer
    (``tokenizer.json`` beside the graphs unless given)."""

    def __init__(
        self,
        image_graph: str | os.PathLike,
        tokenizer: str | os.PathLike | CaptionTokenizer | None = None,
        text_graph: str | os.PathLike | None = None,
        threads: int | None = None,
    ):
        image_graph = Path(image_graph)
        text_graph = (
            Path(text_graph) if text_graph else image_graph.with_name(f"{image_graph.stem}.text.onnx")
        )
        self.image = OnnxModel(image_graph, threads=threads)
        self.text = OnnxModel(text_graph, threads=threads)
        if self.image.meta.graph != "model" or self.text.meta.graph != "text":
            raise OnnxModelError(
                f"{image_graph.name} and {text_graph.name} must be a CLIP export's image and text graphs "
                f"(zoo export of a clip_* model), got graphs '{self.image.meta.graph}', '{self.text.meta.graph}'"
            )
        if not isinstance(tokenizer, CaptionTokenizer):
            path = Path(tokenizer) if tokenizer else image_graph.with_name(TOKENIZER_FILE)
            tokenizer = CaptionTokenizer.from_file(path)
        self.tokenizer = tokenizer
        self.meta = self.image.meta
        self.templates = tuple(self.meta.task_fields.get("templates") or ("{}",))
        self.scale = float(self.meta.task_fields.get("similarity_scale") or 100.0)

    def preprocess(self, images: Sequence[Any]) -> np.ndarray:
        """Image files or (H, W, C) uint8 arrays -> the image graph's (N, C, H, W) float32 input."""
        from zoo.preprocess import load_image
        from zoo.tasks import get_task

        task = get_task(self.meta.task)
        channels = self.meta.input_size[0]
        arrays = [
            load_image(i, channels) if isinstance(i, str | os.PathLike) else np.asarray(i) for i in images
        ]
        arrays = [np.repeat(a[..., :1], channels, axis=2) if a.shape[2] != channels else a for a in arrays]
        return np.concatenate([task.preprocess(a, self.meta) for a in arrays]).astype(np.float32)

    def embed_images(self, images: Sequence[Any], batch: int = 256) -> np.ndarray:
        """(N, D) unit image embeddings."""
        x = self.preprocess(images)
        out = [self.image.run(x[i : i + batch])["image_embeds"] for i in range(0, len(x), batch)]
        return unit(np.concatenate(out))

    def embed_texts(self, texts: Sequence[str], batch: int = 256) -> np.ndarray:
        """(N, D) unit text embeddings (unknown words become the unknown token; long texts are cut)."""
        ids = self.tokenizer.encode(list(texts))
        out = [self.text.run(ids[i : i + batch])["text_embeds"] for i in range(0, len(ids), batch)]
        return unit(np.concatenate(out))

    def class_embeddings(
        self, class_names: Sequence[str], templates: Sequence[str] | None = None
    ) -> np.ndarray:
        """(K, D) unit class embeddings: each name in every template, averaged (prompt ensembling)."""
        templates = tuple(templates or self.templates)
        if not class_names:
            raise ValueError("give at least one class name")
        texts = [t.format(name) for name in class_names for t in templates]
        embeds = self.embed_texts(texts).reshape(len(class_names), len(templates), -1).mean(axis=1)
        return unit(embeds)

    def zero_shot(
        self, images: Sequence[Any], class_names: Sequence[str], templates: Sequence[str] | None = None
    ) -> np.ndarray:
        """(N, K) probabilities of each class for each image (softmax of the scaled cosine similarities)."""
        logits = self.scale * self.embed_images(images) @ self.class_embeddings(class_names, templates).T
        logits = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)

    def search(self, query: str, images: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Images ranked by a text query: (indices best first, their cosine similarities)."""
        scores = self.embed_images(images) @ self.embed_texts([query])[0]
        order = np.argsort(-scores, kind="stable")
        return order, scores[order]


def zero_shot_lines(
    image_graph: str | os.PathLike, files: Sequence[Any], labels: Sequence[str], k: int = 3
) -> list[str]:
    """``zoo predict --onnx clip.onnx img.png --labels ...``: each file's top-k labels, printed by the task
    as the PyTorch path prints them."""
    from zoo.preprocess import conversion_note
    from zoo.tasks import get_task

    labels = [label.strip() for label in labels if label.strip()]
    if not labels:
        raise ValueError("--labels: give class names or texts, separated by commas")
    runtime = ClipRuntime(image_graph)
    task = get_task(runtime.meta.task)
    classes = runtime.class_embeddings(labels)
    lines = []
    for path in files:
        outputs = {"image_embeds": runtime.embed_images([path])}
        (result,) = task.postprocess(outputs, runtime.meta, class_embeddings=classes, class_names=labels)
        line = task.describe(result, str(path), k=k)
        note = (
            conversion_note(path, runtime.meta.input_size[0]) if isinstance(path, str | os.PathLike) else ""
        )
        lines.append(f"{line} (note: {note})" if note else line)
    return lines
