"""Zero-shot image classification (CLIP): classes given as text at run time, not fixed in the weight.

The image tower gives an embedding; class names, put into the weight's prompt ``templates``, go through
the text tower (with the weight's ``tokenizer`` file); the class is the text embedding with the largest
cosine similarity, scaled by the learned temperature. ``postprocess`` takes those class embeddings as
``class_embeddings=`` (computed once per label set) and gives the same `Classification` as a classifier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from zoo.tasks import register_task
from zoo.tasks.base import Task, WeightField
from zoo.tasks.classification import Classification, ImageClassification

__all__ = ["ZeroShotClassification"]


@register_task
class ZeroShotClassification(Task):
    name = "zero-shot-image-classification"
    pipeline_tag = "zero-shot-image-classification"
    summary = "classes named in text at run time, matched to images by embedding similarity"
    runtime_files = ("tokenizer",)
    weight_fields = (
        WeightField(
            "tokenizer", "tokenizer.json", "Hugging Face tokenizers file in the weight's folder", (str,)
        ),
        WeightField("context_length", 32, "tokens per text (longer texts are truncated)", (int,)),
        WeightField("templates", ("a photo of {}.",), "prompt templates a class name is put into", (tuple,)),
        # Not "logit_scale": that name is the model's learned parameter (log of this value, open_clip's name),
        # which a weight's fields would otherwise pick up from the model.
        WeightField(
            "similarity_scale", 100.0, "exp(logit_scale): the cosine similarities' multiplier", (float,)
        ),
        # The digit classes' text embeddings (prompt ensemble) computed at publish by the text tower, so that
        # `zoo verify` and the export check score zero-shot accuracy through the image graph alone.
        WeightField("class_names", (), "the classes of class_embeddings (the MNIST digits)", (tuple,)),
        WeightField("class_embeddings", (), "(K, D) unit text embeddings of class_names", (tuple,)),
    )
    headline_metrics = (("zero_shot_acc", "zero-shot top-1", "{:.2%}"),)
    output_names = ("image_embeds",)
    outputs_doc = {
        "image_embeds": "(N, D) image embeddings (image graph)",
        "text_embeds": "(N, D) text embeddings (text graph, token ids in)",
    }

    def postprocess(
        self,
        outputs: Mapping[str, np.ndarray],
        meta: Any,
        *,
        class_embeddings: np.ndarray | None = None,
        class_names: Sequence[str] = (),
        **options: Any,
    ) -> list[Any]:
        """Image embeddings -> a `Classification` over ``class_embeddings`` (K, D); without them, the
        unit-length embeddings themselves."""
        images = _unit(np.asarray(outputs.get("image_embeds", next(iter(outputs.values()))), np.float64))
        if class_embeddings is None:
            return list(images.astype(np.float32))
        texts = _unit(np.asarray(class_embeddings, np.float64))
        logits = getattr(meta, "similarity_scale", 100.0) * images @ texts.T
        return ImageClassification().postprocess({"logits": logits}, _Labels(tuple(class_names)))

    def describe(self, result: Any, source: str, *, k: int = 3, **options: Any) -> str:
        if isinstance(result, Classification):
            return ImageClassification().describe(result, source, k=k)
        return f"{source}: image embedding ({len(result)},)"

    def metrics(self, meta: Any) -> dict[str, Any]:
        from zoo.metrics import Accuracy

        return {"zero_shot": Accuracy(topk=(1,), names=("zero_shot_acc",))}

    def evaluation_data(self, test: Any, count: int, meta: Any) -> tuple[np.ndarray, Any]:
        """Zero-shot accuracy is measured on the MNIST 5k test digits (grey, repeated to the weight's
        channels), not on the scenes the weight was trained on: `count` of them spread evenly over the
        digits (the file is sorted by label)."""
        from zoo.data.images import mnist_5k_arrays, mnist_5k_rows

        images, labels = mnist_5k_arrays()
        rows = mnist_5k_rows()["test"]
        if count < len(rows):
            rows = rows[np.linspace(0, len(rows) - 1, count).astype(int)]
        channels = meta.input_size[0] if meta.input_size else 3
        digits = np.repeat(np.asarray(images[rows]).transpose(0, 2, 3, 1), channels, axis=3)
        return digits, np.asarray(labels[rows])

    def update_metrics(
        self, metrics: Mapping[str, Any], outputs: Mapping[str, np.ndarray], targets: Any, meta: Any
    ) -> None:
        """Image embeddings against the weight's recorded ``class_embeddings`` (nearest by cosine)."""
        import torch

        classes = np.asarray(getattr(meta, "class_embeddings", ()) or (), np.float64)
        if classes.ndim != 2:
            raise ValueError(f"{meta.name} records no class_embeddings to score zero-shot accuracy with")
        images = _unit(np.asarray(outputs.get("image_embeds", next(iter(outputs.values()))), np.float64))
        logits = images @ _unit(classes).T
        for metric in metrics.values():
            metric.update(torch.as_tensor(logits), torch.as_tensor(np.asarray(targets)))

    def card_sections(self, config: Mapping[str, Any]) -> list[str]:
        w = config.get("weights") or {}
        name = f"{config.get('architecture')}.{w.get('tag', 'local')}"
        usage = [
            "## Zero-shot classification and search",
            "",
            "```python",
            "import torch, zoo",
            "from zoo.models.clip import zero_shot_classifier",
            "",
            f'model = zoo.create_model("{name}", pretrained=True).eval()',
            f'tokenizer = zoo.get_tokenizer("{name}")  # tokenizer.json in the weight folder (HF tokenizers)',
            "classes = zero_shot_classifier(model, tokenizer, [str(d) for d in range(10)],",
            "                               model.pretrained_weights.templates)  # prompt ensemble",
            "with torch.no_grad():  # x: (N, 3, H, W) images normalised with the weight's mean and std",
            "    probs = (model.logit_scale.exp() * model.encode_image(x, normalize=True) @ classes.T).softmax(-1)",
            '    texts = model.encode_text(tokenizer(["a 4 above a 9"]), normalize=True)',
            "```",
            "",
            "```bash",
            f"zoo predict {name} digit.png --labels 0,1,2,3,4,5,6,7,8,9",
            f'zoo search-images {name} "a 4 above a 9" photos/',
            f'zoo embed {name} --text "a large 7" --out text.npy',
            "zoo export " + name + " --out clip.onnx   # clip.onnx (images) and clip.text.onnx (token ids)",
            "```",
            "",
            f"Prompt templates: {', '.join(repr(t) for t in w.get('templates') or ())}.",
            "",
        ]
        return usage + super().card_sections(config)

    def card_usage(self, meta: Mapping[str, Any], onnx_file: str) -> list[str]:
        return [
            "from export.clip_runtime import ClipRuntime  # onnxruntime + numpy + tokenizers, no torch",
            f'clip = ClipRuntime("{onnx_file}", "tokenizer.json")  # finds the .text.onnx beside it',
            'probs = clip.zero_shot(["digit.png"], [str(d) for d in range(10)])',
        ]


class _Labels:
    def __init__(self, labels: tuple[str, ...]):
        self.labels = labels


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
