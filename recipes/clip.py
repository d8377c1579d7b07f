"""CLIP (Radford et al. 2021) on captioned digit scenes: image and text towers trained contrastively.

Train scenes are composed from MNIST 5k's train digits only, test scenes from its test digits only
(`zoo.data.scenes`). Each scene's caption names every digit with size words and a relation ("a 3 to the
left of a large 7"); a lone digit is "a large 7" or, in half of the scenes, says where it stands ("a large 7
in the top left"). At train time the caption is paraphrased (`paraphrase`): a single digit is also "a
handwritten 7", "the number seven", "the small 7" (its position kept); any digit may be written as a word. Fresh compositions:
the run renders ``pool_size`` train scenes (new layouts of the same train digits) once.

Loss: `zoo.losses.clip_loss`, CLIP's symmetric cross-entropy over the batch with the learned temperature.
CLIP models are known to read captions as bags of words (Yuksekgonul et al. 2023): "a 3 left of a 7" and
"a 7 left of a 3" hold the same words, and in-batch negatives almost never differ by order alone. With
``hard_negatives`` each caption's digits swapped (`swap_digits`) join the image->text candidates as one
more wrong text per image (NegCLIP), which is what teaches order.

Measured (`measure`, at publish, and re-measured by the tests on a fixed subset), test digits only:

- ``zero_shot_acc``: the 1,000 MNIST 5k test digits (28 px grey, resized to the scene size as ``zoo
  predict`` does), classified from the ten class names with the weight's prompt templates (ensemble);
  beside it ``zero_shot_acc_one_template`` and the raw-pixel logistic regression on all 4,000 train
  labels (``baselines``);
- ``i2t_r1`` / ``i2t_r5`` / ``t2i_r1`` / ``t2i_r5``: retrieval among 1,000 test scenes and their captions;
  a hit is a caption (image) whose caption is *identical* to the true one (single-digit scenes share
  captions such as "a large 7": identical texts are one text);
- ``word_order_acc``: two-digit test scenes of two different digits: the true caption scores above it with
  the two digits swapped; per relation in ``word_order_acc_<relation>``;
- ``linear_acc_n100``: a linear probe of the image embeddings with 100 labels (10 per class, 3 draws),
  the protocol of the self-supervised encoders' table (`zoo.probing`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from recipes.classification import optimizer_papers
from recipes.engine import (
    Context,
    Data,
    Objective,
    ObjectiveConfig,
    OptimizerConfig,
    ScheduleConfig,
    register_preset,
)
from zoo.data.scenes import POSITION_PHRASES
from zoo.errors import ConfigError
from zoo.losses import CLIP_PAPER, NEGCLIP_PAPER, clip_loss

__all__ = [
    "TEMPLATES",
    "CaptionedScenes",
    "ClipConfig",
    "ClipObjective",
    "digits_as_images",
    "measure",
    "paraphrase",
    "swap_digits",
]

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Prompt templates of the zero-shot classifier: "the" avoids the a/an choice the digit would force.
TEMPLATES = ("the number {}", "the {}", "the handwritten {}", "the large {}", "the small {}")
SUBSET = 100  # items of each evaluation the fast test re-measures (recorded as *_sub100)
_DIGIT = {str(d): d for d in range(10)} | {w: d for d, w in enumerate(NUMBER_WORDS)}


@dataclass
class ClipConfig(ObjectiveConfig):
    model: str = "clip_resnet_tiny"
    dataset: Literal["digit_scenes_64"] = "digit_scenes_64"  # 64 px, 1-3 digits, scales 0.5x-2x
    pool_size: int = (
        16000  # train scenes rendered once (compositions of the train digits; the split has 4,000)
    )
    context_length: int = 20  # tokens per caption; the longest three-digit captions take 16
    hard_negatives: bool = True  # NegCLIP: each caption with two digits swapped as an extra wrong text
    word_prob: float = 0.2  # chance that a digit is written as a word ("seven") in a train caption
    test_scenes: int = 1000  # retrieval: test scenes and their captions
    order_scenes: int = (
        600  # word order: two-digit test scenes rendered (those of two different digits count)
    )
    measure_limit: int = 0  # measure on the first N items of each evaluation only (0: all; smoke runs)
    templates: tuple[str, ...] = TEMPLATES
    init_logit_scale: float = 2.659  # log(1 / 0.07), the paper's

    def validate(self) -> None:
        super().validate()
        self.require_nonnegative("measure_limit")
        for key in ("pool_size", "context_length", "test_scenes", "order_scenes"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}': {getattr(self, key)} must be >= 1")
        if not 0 <= self.word_prob <= 1:
            raise ConfigError(f"config key 'word_prob': {self.word_prob} must be in [0, 1]")
        if not self.templates or any("{}" not in t for t in self.templates):
            raise ConfigError(f"config key 'templates': each must hold '{{}}', got {self.templates}")


# ------------------------------------------------------------------------------------------ captions
def _fix_articles(words: list[str]) -> list[str]:
    """ "a" or "an" by the word that follows (an 8, an eight, a large 8)."""
    out = list(words)
    for i, w in enumerate(out[:-1]):
        if w in ("a", "an"):
            out[i] = "an" if out[i + 1] in ("8", "eight") else "a"
    return out


# Where a scene's only digit stands (`zoo.data.scenes.POSITION_PHRASES`): "in the top left", "at the bottom"...
_POSITION = "(?:" + "|".join(re.escape(p) for p in POSITION_PHRASES) + ")"


def paraphrase(caption: str, rng: np.random.Generator, word_prob: float = 0.2) -> str:
    """A train-time rewording of a scene caption: digits as words with `word_prob`; a lone digit also as
    "a handwritten 7", "the number seven", "the small 7" (the forms prompts use), its position kept."""
    words = caption.split()
    words = [NUMBER_WORDS[_DIGIT[w]] if w in _DIGIT and rng.random() < word_prob else w for w in words]
    single = re.fullmatch(rf"an? (?:(small|large) )?(\S+)((?: {_POSITION})?)", " ".join(words))
    if single and single.group(2) in _DIGIT:
        size = f"{single.group(1)} " if single.group(1) else ""
        noun, where = single.group(2), single.group(3)  # where: " in the top left" (a scene's only digit)
        forms = (
            f"a {size}{noun}",
            f"a {size}handwritten {noun}",
            f"the number {noun}",
            f"the {size}number {noun}",
            f"the {size}{noun}",
            f"the handwritten {noun}",
        )
        words = (forms[int(rng.integers(len(forms)))] + where).split()
    return " ".join(_fix_articles(words))


def swap_digits(caption: str, rng: np.random.Generator | None = None) -> str | None:
    """The caption with two of its digits (different ones) swapped, keeping every other word in place
    (the word-order negative); None when it names fewer than two different digits. With `rng` the pair is
    drawn at random, else the first two digits are swapped."""
    words = caption.split()
    where = [i for i, w in enumerate(words) if w in _DIGIT]
    pairs = [
        (i, j) for a, i in enumerate(where) for j in where[a + 1 :] if _DIGIT[words[i]] != _DIGIT[words[j]]
    ]
    if not pairs:
        return None
    i, j = pairs[int(rng.integers(len(pairs)))] if rng is not None else pairs[0]
    words[i], words[j] = words[j], words[i]
    return " ".join(_fix_articles(words))


# ------------------------------------------------------------------------------------------ data
class CaptionedScenes(torch.utils.data.Dataset):
    """Rendered scenes and their captions, batched by indexing: ``(uint8 (B, 3, H, W), [caption, ...])``."""

    def __init__(
        self, images: torch.Tensor, captions: list[str], digits: list[tuple[int, ...]] | None = None
    ):
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(captions):
            raise ValueError(
                f"need (N, C, H, W) uint8 images and N captions, got {images.shape}, {len(captions)}"
            )
        self.images, self.captions = images, list(captions)
        self.digits = digits or [()] * len(captions)

    @classmethod
    def render(cls, scenes: Any, count: int | None = None) -> CaptionedScenes:
        count = len(scenes) if count is None else min(count, len(scenes))
        rendered = [scenes.scene(i) for i in range(count)]
        images = torch.from_numpy(np.stack([s.image for s in rendered])).permute(0, 3, 1, 2).contiguous()
        return cls(images, [s.caption for s in rendered], [tuple(int(d) for d in s.digits) for s in rendered])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        return self.images[i], self.captions[i]

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        return self.images[indices], [self.captions[int(i)] for i in indices]


SCENE_SIZE = 64


def scene_splits(split: str, count: int, seed: int = 0, **config: Any) -> Any:
    """`count` scenes of `split` of ``digit_scenes_64`` (`config` overrides its `SceneConfig`)."""
    from zoo.data.scenes import DigitScenes, SceneConfig

    return DigitScenes(split, count, SceneConfig(size=SCENE_SIZE, **config), seed)


class ScenePool(torch.utils.data.Dataset):
    """The train pool: ``count`` train scenes and their captions, each rendered the first time a batch asks
    for it (about 4 ms a scene) and kept, so a short run (a smoke test) renders only what it trains on."""

    def __init__(self, count: int):
        self.count = count
        self.scenes = scene_splits("train", count)
        self.images = torch.zeros(count, 3, SCENE_SIZE, SCENE_SIZE, dtype=torch.uint8)
        self.captions: list[str | None] = [None] * count

    def __len__(self) -> int:
        return self.count

    def _render(self, indices: torch.Tensor) -> None:
        for i in indices.tolist():
            if self.captions[i] is None:
                scene = self.scenes.scene(i)
                self.images[i] = torch.from_numpy(scene.image).permute(2, 0, 1)
                self.captions[i] = scene.caption

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        self._render(torch.tensor([i]))
        return self.images[i], str(self.captions[i])

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        self._render(indices)
        return self.images[indices], [str(self.captions[int(i)]) for i in indices]


def caption_corpus(templates: tuple[str, ...] = TEMPLATES) -> list[str]:
    """Every word the scene captions, their paraphrases and the prompts use, in phrases (the tokenizer's
    training text): the vocabulary follows from the caption grammar, with no scene rendered."""
    nouns = [f"{size}{d}" for d in _DIGIT for size in ("", "small ", "large ")]
    relations = ("to the left of", "to the right of", "above", "below", "in front of", "behind")
    corpus = [
        " ".join(_fix_articles(f"a {a} {rel} a {b} and a {b}".split()))
        for a in nouns
        for rel in relations
        for b in ("7", "8")
    ]
    corpus += [f"{form} {d}" for d in _DIGIT for form in ("a handwritten", "the number", "the", "an")]
    corpus += [f"a {d} {where}" for d in _DIGIT for where in POSITION_PHRASES]
    corpus += [t.format(d) for t in templates for d in _DIGIT] + ["a 1, a 2 and a 3"]
    return corpus


def digits_as_images(images: np.ndarray, meta: Any) -> torch.Tensor:
    """MNIST digits (N, 1, 28, 28) uint8 -> the model's normalised input, as ``zoo predict`` prepares a
    digit file: grey to RGB, resized to the weight's input size, normalised (`zoo.tasks` preprocess)."""
    from zoo.tasks import get_task

    task = get_task("zero-shot-image-classification")
    rgb = np.repeat(np.asarray(images).transpose(0, 2, 3, 1), 3, axis=3)
    return torch.from_numpy(np.concatenate([task.preprocess(image, meta) for image in rgb]))


def normalise_uint8(images: torch.Tensor, mean: Any, std: Any) -> torch.Tensor:
    x = images.float().div_(255)
    return (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)


# ------------------------------------------------------------------------------------------ measurement
@torch.no_grad()
def _encode_images(model: nn.Module, x: torch.Tensor, batch: int = 250) -> torch.Tensor:
    return torch.cat([model.encode_image(x[i : i + batch], normalize=True) for i in range(0, len(x), batch)])


@torch.no_grad()
def _encode_texts(model: nn.Module, tokenizer: Any, texts: list[str], batch: int = 500) -> torch.Tensor:
    return torch.cat(
        [
            model.encode_text(tokenizer(texts[i : i + batch]), normalize=True)
            for i in range(0, len(texts), batch)
        ]
    )


def _recall(similarity: torch.Tensor, hit: torch.Tensor, k: int) -> float:
    """Share of rows whose top-k columns hold a hit (``hit`` (Q, C) bool)."""
    top = similarity.topk(min(k, similarity.shape[1]), dim=1).indices
    return float(hit.gather(1, top).any(dim=1).float().mean())


@torch.no_grad()
def measure(
    model: nn.Module,
    tokenizer: Any,
    meta: Any,
    c: ClipConfig,
    limit: int = 0,
    *,
    baselines: bool = False,
    probe: bool = True,
) -> dict[str, Any]:
    """Every number of the card (see the module docstring) for `model` (eval mode) and the weight
    metadata `meta` (input size, mean, std, templates); `limit` > 0 measures on the first `limit` items of
    each evaluation (evenly spread over the digits for MNIST, which is sorted by label)."""
    from zoo.data.images import mnist_5k_arrays, mnist_5k_rows
    from zoo.models.clip import zero_shot_classifier

    model.eval()
    out: dict[str, Any] = {}
    images, labels = mnist_5k_arrays()
    rows = mnist_5k_rows()
    test_rows = rows["test"]
    if limit:
        test_rows = test_rows[np.linspace(0, len(test_rows) - 1, limit).astype(int)]
    x_test, y_test = digits_as_images(images[test_rows], meta), torch.as_tensor(labels[test_rows])
    feats_test = _encode_images(model, x_test)
    names = [str(d) for d in range(10)]
    for key, templates in (
        ("zero_shot_acc", tuple(meta.templates)),
        ("zero_shot_acc_one_template", ("the {}",)),
    ):
        classes = zero_shot_classifier(model, tokenizer, names, templates)
        out[key] = float(((feats_test @ classes.T).argmax(1) == y_test).float().mean())

    # Retrieval among test scenes and their captions.
    n = limit or c.test_scenes
    test = CaptionedScenes.render(scene_splits("test", n))
    img = _encode_images(model, normalise_uint8(test.images, meta.mean, meta.std))
    txt = _encode_texts(model, tokenizer, test.captions)
    same = torch.tensor([[a == b for b in test.captions] for a in test.captions])
    sim = img @ txt.T
    for k in (1, 5):
        out[f"i2t_r{k}"] = _recall(sim, same, k)
        out[f"t2i_r{k}"] = _recall(sim.T, same, k)

    # Word order: two-digit scenes of two different digits, true caption against its digits swapped.
    order = CaptionedScenes.render(
        scene_splits("test", limit or c.order_scenes, seed=1, min_digits=2, max_digits=2)
    )
    keep = [
        i for i, (cap, d) in enumerate(zip(order.captions, order.digits)) if len(d) == 2 and swap_digits(cap)
    ]
    captions = [order.captions[i] for i in keep]
    img = _encode_images(model, normalise_uint8(order.images[keep], meta.mean, meta.std))
    true = (img * _encode_texts(model, tokenizer, captions)).sum(1)
    swapped = (img * _encode_texts(model, tokenizer, [swap_digits(cap) for cap in captions])).sum(1)
    wins = (true > swapped).float()
    out["word_order_acc"] = float(wins.mean())
    out["word_order_scenes"] = len(keep)
    relations = [_relation_of(cap) for cap in captions]
    for rel in sorted(set(relations)):
        mask = torch.tensor([r == rel for r in relations])
        out[f"word_order_acc_{rel.replace(' ', '_')}"] = float(wins[mask].mean())

    if probe:
        from zoo.probing import probe as fit_probe

        train_rows = rows["train"]
        if limit:
            train_rows = train_rows[np.linspace(0, len(train_rows) - 1, 10 * limit).astype(int)]
        feats_train = _encode_images(model, digits_as_images(images[train_rows], meta))
        y_train = torch.as_tensor(labels[train_rows])
        result = fit_probe(
            feats_train, y_train, feats_test, y_test, labels_per_class=10, draws=1 if limit else 3
        )
        out["linear_acc_n100"], out["linear_acc_n100_std"] = result.linear
        out["knn_acc_n100"], out["knn_acc_n100_std"] = result.knn
        if baselines:
            # The zero-shot baseline: logistic regression on raw pixels with every train label, and the
            # raw pixels with the 100 labels the probe gets.
            raw_train = torch.as_tensor(images[train_rows]).flatten(1).float() / 255
            raw_test = torch.as_tensor(images[test_rows]).flatten(1).float() / 255
            every = fit_probe(raw_train, y_train, raw_test, y_test, labels_per_class=0, draws=1)
            few = fit_probe(
                raw_train, y_train, raw_test, y_test, labels_per_class=10, draws=1 if limit else 3
            )
            out["baselines"] = {
                "raw pixels, logistic regression, all train labels": {"acc": every.linear[0]},
                "raw pixels, 100 labels": {"linear_acc_n100": few.linear[0], "knn_acc_n100": few.knn[0]},
            }
    return out


def _relation_of(caption: str) -> str:
    for rel in ("to the left of", "to the right of", "above", "below", "in front of", "behind"):
        if f" {rel} " in caption:
            return rel
    return "none"


# ------------------------------------------------------------------------------------------ objective
class ClipObjective(Objective):
    name = "clip"
    Config = ClipConfig
    config: ClipConfig

    def data(self) -> Data:
        from zoo.text import train_tokenizer

        c = self.config
        from zoo.data import load_dataset

        c = self.config
        splits = load_dataset(c.dataset)  # the scene world's normalisation and split text
        train = ScenePool(c.pool_size)
        # A smoke run (eval_limit) evaluates its first items only: render no more.
        test = CaptionedScenes.render(scene_splits("test", min(c.test_scenes, c.eval_limit or c.test_scenes)))
        self.tokenizer = train_tokenizer(caption_corpus(c.templates), c.context_length)
        self.mean, self.std = tuple(splits.mean), tuple(splits.std)
        info = {"input_size": splits.input_size, "mean": self.mean, "std": self.std, "labels": ()}
        split = (
            f"{splits.split}; trained on {c.pool_size} compositions of the same train digits; measured on "
            f"{c.test_scenes} test scenes (retrieval, test loss), {c.order_scenes} two-digit test scenes "
            "(seed 1, word order) and the 1,000 mnist_5k test digits (zero-shot, probe)"
        )
        return Data(train, None, test, splits.name, split, info)

    def build(self, data: Data) -> dict[str, nn.Module]:
        from zoo.factory import create_model

        c = self.config
        args = {
            "vocab_size": self.tokenizer.vocab_size,
            "context_length": c.context_length,
            "img_size": SCENE_SIZE,
            "init_logit_scale": c.init_logit_scale,
            **c.model_args,
        }
        return {"model": create_model(c.model, **args)}

    def weight_meta(self, model: nn.Module) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(
            name=self.config.model,
            input_size=model.input_size,
            mean=self.mean,
            std=self.std,
            templates=self.config.templates,
            size_multiple=None,
        )

    def train_step(self, ctx: Context, batch: Any) -> dict[str, torch.Tensor]:
        c = self.config
        images, captions = batch
        # The captions' rewordings come from the run's seeded generator (a resumed run replays them).
        rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=ctx.generator)))
        texts = [paraphrase(cap, rng, c.word_prob) for cap in captions]
        model = ctx.models["model"]
        x = ctx.to_device(normalise_uint8(images, self.mean, self.std))
        all_texts, valid = list(texts), None
        if c.hard_negatives:
            swapped = [swap_digits(t, rng) for t in texts]
            valid = torch.tensor([s is not None for s in swapped], device=x.device)
            all_texts += [s or t for s, t in zip(swapped, texts)]  # a placeholder where none exists (masked)
        ids = ctx.to_device(self.tokenizer(all_texts))
        with ctx.autocast():
            image = model.encode_image(x, normalize=True)
            text = model.encode_text(ids, normalize=True)
        text, negatives = (text[: len(texts)], text[len(texts) :]) if c.hard_negatives else (text, None)
        scale = model.logit_scale.exp()
        loss = clip_loss(image, text, scale, negatives, valid)
        ctx.optimize(loss)
        with torch.no_grad():
            # CLIP clips the temperature so the logits' scale never exceeds 100.
            model.logit_scale.clamp_(0, 4.6052)
            acc = (
                (image.float() @ text.float().T).argmax(1) == torch.arange(len(texts), device=x.device)
            ).float()
        return {"loss": loss.detach(), "batch_i2t_acc": acc.mean(), "logit_scale": scale.detach()}

    @torch.no_grad()
    def eval_step(self, ctx: Context, batch: Any) -> dict[str, tuple[torch.Tensor, int]]:
        images, captions = batch
        model = ctx.models["model"]
        x = ctx.to_device(normalise_uint8(images, self.mean, self.std))
        image = model.encode_image(x, normalize=True)
        text = model.encode_text(ctx.to_device(self.tokenizer(captions)), normalize=True)
        loss = clip_loss(image, text, model.logit_scale.exp())
        return {"loss": (loss * len(images), len(images))}

    def measured(self, model: nn.Module, baselines: bool = False) -> dict[str, Any]:
        """`measure` on the full evaluations (or ``measure_limit``) and, suffixed ``_sub100``, on the fixed
        subset of 100 items a fast test re-measures."""
        c, meta = self.config, self.weight_meta(model)
        # A smoke run (eval_limit) measures on as few items, unless measure_limit says otherwise.
        limit = c.measure_limit or c.eval_limit
        full = measure(model.eval(), self.tokenizer, meta, c, limit, baselines=baselines)
        sub = measure(model, self.tokenizer, meta, c, SUBSET)
        return {**full, **{f"{k}_sub{SUBSET}": v for k, v in sub.items()}}

    def publish_metrics(self, model: nn.Module, data: Data) -> dict[str, float]:
        return {k: v for k, v in self.measured(model).items() if isinstance(v, float | int)}

    def publish(self, model: nn.Module, data: Data) -> tuple[nn.Module, dict[str, Any]]:
        from recipes.clip_report import card_tables, draw_card_pictures
        from zoo.models.clip import zero_shot_classifier

        c = self.config
        model = copy.deepcopy(model).eval()
        meta_ns = self.weight_meta(model)
        measured = self.measured(model, baselines=True)
        baselines = measured.pop("baselines", {})
        tokenizer_path = self.tokenizer.save(self.picture_path("tokenizer.json"))
        pictures = draw_card_pictures(model, self.tokenizer, meta_ns, c, self.picture_path)
        meta: dict[str, Any] = {
            "task": "zero-shot-image-classification",
            "input_size": list(model.input_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "templates": list(c.templates),
            "context_length": c.context_length,
            "similarity_scale": round(float(model.logit_scale.detach().exp()), 6),
            "tokenizer": "tokenizer.json",
            # The digits' class embeddings, as measure() classified with them (see zoo.tasks.zero_shot).
            "class_names": [str(d) for d in range(10)],
            "class_embeddings": zero_shot_classifier(
                model, self.tokenizer, [str(d) for d in range(10)], c.templates
            ).tolist(),
            "papers": list(dict.fromkeys([CLIP_PAPER, NEGCLIP_PAPER, *optimizer_papers(c)])),
            "metrics": {k: v for k, v in measured.items() if isinstance(v, float | int)},
            "baselines": {"raw pixels, 100 labels": baselines.get("raw pixels, 100 labels", {})},
            "tables": card_tables(measured, baselines),
            "files": {"tokenizer": str(tokenizer_path), **pictures},
            "description": (
                f"{c.model}: CLIP image and text towers trained contrastively (symmetric InfoNCE, learned "
                f"temperature{', NegCLIP digit-swapped captions as hard negatives' if c.hard_negatives else ''}) "
                f"on {c.pool_size} captioned digit scenes of MNIST 5k train digits. Zero-shot accuracy on the "
                "1,000 MNIST 5k test digits with the prompt ensemble (class names '0'..'9' in the templates); "
                "retrieval among 1,000 test scenes (a hit is an identical caption); word order on two-digit "
                "test scenes (true caption against the two digits swapped); a linear probe of the image "
                "embeddings with 100 labels."
            ),
        }
        return model, meta


# ------------------------------------------------------------------------------------------------ presets
register_preset(
    "clip_resnet_tiny.scenes",
    ClipObjective,
    ClipConfig(
        model="clip_resnet_tiny",
        epochs=16,
        pool_size=32000,
        channels_last=True,
        batch_size=128,
        precision="auto",
        eval_every=0,
        log_every=20,
        optim=OptimizerConfig(name="adamw", lr=1e-3, weight_decay=0.1),
        schedule=ScheduleConfig(name="cosine", warmup=0.05),
        grad_clip=1.0,
    ),
    "CLIP on 32,000 captioned digit scenes of MNIST 5k train digits: tiny ResNet image tower + causal text "
    "transformer, symmetric InfoNCE with digit-swapped hard negatives, AdamW, cosine, 16 epochs; 16 minutes on 2 idle CPU cores",
)
