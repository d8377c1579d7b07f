"""The CLIP card's pictures: zero-shot answers on MNIST test digits and text->image search on test scenes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["QUERIES", "card_tables", "draw_card_pictures"]

# Text queries of the search picture: relations, sizes and a word-written digit.
QUERIES = (
    "a 4 above a 9",
    "a 9 above a 4",
    "a 3 to the left of a 7",
    "a large 5",
    "a small 1",
    "the number two",
)


@torch.no_grad()
def draw_card_pictures(
    model: Any, tokenizer: Any, meta: Any, config: Any, picture_path: Callable[[str], Path]
) -> dict[str, str]:
    """Draw ``zero_shot.png`` and ``search.png``; returns role -> path for the weight's ``files``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from recipes.clip import CaptionedScenes, digits_as_images, normalise_uint8, scene_splits
    from zoo.data.images import mnist_5k_arrays, mnist_5k_rows
    from zoo.models.clip import zero_shot_classifier

    images, labels = mnist_5k_arrays()
    test_rows = mnist_5k_rows()["test"]
    rows = test_rows[np.linspace(7, len(test_rows) - 1, 20).astype(int)]
    x = digits_as_images(images[rows], meta)
    classes = zero_shot_classifier(model, tokenizer, [str(d) for d in range(10)], tuple(meta.templates))
    probs = (model.logit_scale.exp() * model.encode_image(x, normalize=True) @ classes.T).softmax(1)
    fig = Figure(figsize=(10, 4.6), dpi=100)
    FigureCanvasAgg(fig)
    for i, row in enumerate(rows):
        ax = fig.add_subplot(2, 10, i + 1)
        ax.imshow(images[row, 0], cmap="gray")
        p, k = probs[i].max(0)
        ok = int(k) == int(labels[row])
        ax.set_title(f"{int(k)} ({float(p):.0%})", fontsize=9, color="green" if ok else "red")
        ax.axis("off")
    fig.suptitle("zero-shot on MNIST 5k test digits: top class (probability) from the prompt ensemble")
    fig.tight_layout()
    zero_shot = picture_path("zero_shot.png")
    fig.savefig(zero_shot)

    scenes = CaptionedScenes.render(scene_splits("test", 300))
    feats = model.encode_image(normalise_uint8(scenes.images, meta.mean, meta.std), normalize=True)
    texts = model.encode_text(tokenizer(list(QUERIES)), normalize=True)
    top = (texts @ feats.T).topk(4, dim=1).indices
    fig = Figure(figsize=(9, 2.3 * len(QUERIES)), dpi=100)
    FigureCanvasAgg(fig)
    for q, query in enumerate(QUERIES):
        for j, index in enumerate(top[q].tolist()):
            ax = fig.add_subplot(len(QUERIES), 4, 4 * q + j + 1)
            ax.imshow(scenes.images[index].permute(1, 2, 0).numpy())
            ax.set_title(_wrap(scenes.captions[index]), fontsize=6)
            ax.axis("off")
            if j == 0:
                ax.text(-8, 32, f'"{query}"', fontsize=9, ha="right", va="center", rotation=0)
    fig.suptitle("text -> image search: top 4 of 300 test scenes (their true captions above)")
    fig.tight_layout()
    fig.subplots_adjust(left=0.25)
    search = picture_path("search.png")
    fig.savefig(search)
    return {"zero_shot": str(zero_shot), "search": str(search)}


def card_tables(measured: dict[str, Any], baselines: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The card's tables, from measured numbers only: digit classification on the MNIST 5k test digits
    (zero-shot, the raw-pixel baselines, the linear probes with 100 labels beside the self-supervised
    encoders' recorded in their own cards, same protocol), and word order by relation."""
    from zoo.errors import WeightsError
    from zoo.registry import get_weights, list_models

    def pct(value: Any, std: Any = None) -> str:
        return f"{value:.2%}" + (f" ± {std:.2%}" if std else "")

    raw_all = baselines.get("raw pixels, logistic regression, all train labels", {})
    raw_100 = baselines.get("raw pixels, 100 labels", {})
    rows = [
        {"method": "CLIP zero-shot, prompt ensemble (this weight)", "train labels": 0,
         "accuracy": pct(measured["zero_shot_acc"])},
        {"method": "CLIP zero-shot, one template 'the {}' (this weight)", "train labels": 0,
         "accuracy": pct(measured["zero_shot_acc_one_template"])},
    ]  # fmt: skip
    if raw_all:
        rows.append(
            {
                "method": "logistic regression on raw pixels",
                "train labels": 4000,
                "accuracy": pct(raw_all["acc"]),
            }
        )
    rows.append(
        {"method": "linear probe on this weight's image embeddings", "train labels": 100,
         "accuracy": pct(measured["linear_acc_n100"], measured.get("linear_acc_n100_std"))}
    )  # fmt: skip
    if raw_100:
        rows.append(
            {
                "method": "linear probe on raw pixels",
                "train labels": 100,
                "accuracy": pct(raw_100["linear_acc_n100"]),
            }
        )
    for name in list_models(pretrained=True):
        try:
            weight = get_weights(name)
        except WeightsError:  # declared but not in this hub (e.g. this weight before it is published)
            continue
        if weight.task == "feature-extraction" and "linear_acc_n100" in weight.metrics:
            rows.append(
                {"method": f"linear probe on {name} (self-supervised; recorded in its card)", "train labels": 100,
                 "accuracy": pct(weight.metrics["linear_acc_n100"], weight.metrics.get("linear_acc_n100_std"))}
            )  # fmt: skip
    relations = [
        {
            "relation": k.removeprefix("word_order_acc_").replace("_", " "),
            "true caption above swapped": pct(v),
        }
        for k, v in measured.items()
        if k.startswith("word_order_acc_") and not k.endswith(f"_sub{100}")
    ]
    return [
        {
            "title": "Digit classification (1,000 MNIST 5k test digits)",
            "intro": "Zero-shot uses no digit label; the probes use 10 labels per class (3 draws, mean ± spread), "
            "the protocol of the self-supervised encoders' label-efficiency tables.",
            "rows": rows,
        },
        {
            "title": "Word order by relation",
            "intro": "Two-digit test scenes of two different digits: how often the true caption scores above "
            "the same caption with the two digits swapped (chance 50%).",
            "rows": relations,
        },
    ]


def _wrap(caption: str, width: int = 26) -> str:
    """Break a long caption over lines at word boundaries (titles of small panels)."""
    lines, line = [], ""
    for word in caption.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])
