"""CLIP: "Learning Transferable Visual Models From Natural Language Supervision", Radford et al., 2021
(https://arxiv.org/abs/2103.00020).

Two towers map an image and a text into one embedding space; trained contrastively on (image, caption)
pairs ("predict which of the N x N possible pairings across a batch actually occurred"), they classify
images zero-shot: class names put into prompt templates go through the text tower, and the image takes
the class whose text embedding is nearest (cosine, scaled by the learned temperature).

- Image tower: a small ViT (`VisionTransformer`: patches, a class token, pre-LN transformer, the class
  token's output projected) or, as in the paper's ResNet variants, a `ModifiedResNet` (3-conv stem,
  anti-aliased bottlenecks, attention pooling).
- Text tower: a causal transformer over token embeddings, pooled at the end-of-text token (the highest
  id of the vocabulary, so ``tokens.argmax(-1)`` finds it, as in the paper), then projected.
- ``logit_scale``: the log of the softmax's inverse temperature, learned, initialised to log(1 / 0.07).

Module names and parameter layout follow open_clip's ``CLIP`` (``visual.*``, ``transformer.resblocks.*``,
``token_embedding``, ``positional_embedding``, ``ln_final``, ``text_projection``, ``logit_scale``) so that
``open_clip.model.CLIP(**model.open_clip_config())`` loads this model's ``state_dict`` strictly and gives
the same embeddings (tests/models/test_clip.py checks it). The code is the zoo's own, on
``torch.nn.MultiheadAttention``.

Output contract: ``model(image)`` is ``encode_image(image)``, the (N, embed_dim) image embeddings (not
normalised), as ``zoo predict`` and the exported image graph use it; ``model(image, tokens)`` gives both
towers' embeddings and the pairs' scaled similarities ``(image_embeds, text_embeds, logits_per_image)``,
what contrastive training reads (as open_clip's forward does). ``encode_text(tokens)`` takes (N, context_length)
int64 token ids from the weight's tokenizer (`zoo.text.get_tokenizer`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from zoo.errors import ConfigError
from zoo.layers.attention import ResidualAttentionBlock
from zoo.models.base import ZooModel
from zoo.registry import register_model

__all__ = [
    "CLIP",
    "ImageTower",
    "ModifiedResNet",
    "TextTower",
    "Transformer",
    "VisionTransformer",
    "zero_shot_classifier",
]

PAPER = "https://arxiv.org/abs/2103.00020"


class Transformer(nn.Module):
    """A stack of `ResidualAttentionBlock` s (``resblocks``), batch first."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.width, self.layers = width, layers
        self.resblocks = nn.ModuleList(
            [ResidualAttentionBlock(width, heads, mlp_ratio) for _ in range(layers)]
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


class VisionTransformer(nn.Module):
    """ViT image tower: non-overlapping patches (``conv1``, no bias), a learned class token and position
    embeddings, ``ln_pre``, the transformer, ``ln_post`` on the class token, then ``proj`` (width, D)."""

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        width: int,
        layers: int,
        heads: int,
        output_dim: int,
        mlp_ratio: float = 4.0,
        in_chans: int = 3,
    ):
        super().__init__()
        if image_size % patch_size:
            raise ConfigError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
        self.image_size, self.patch_size = image_size, patch_size
        self.grid = image_size // patch_size
        scale = width**-0.5
        self.conv1 = nn.Conv2d(in_chans, width, patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid**2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads, mlp_ratio)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (N, grid^2, width)
        cls = self.class_embedding.to(x.dtype).expand(len(x), 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class Bottleneck(nn.Module):
    """CLIP's ResNet bottleneck: every conv stride 1; a stride > 1 is an average pool after the 3x3 conv
    (anti-aliased downsampling), and the shortcut pools before its 1x1 conv."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.act3 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            # The key "-1" holds no parameters, so the conv and norm keep indices 0 and 1 (open_clip's).
            self.downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("-1", nn.AvgPool2d(stride)),
                        ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, bias=False)),
                        ("1", nn.BatchNorm2d(planes * self.expansion)),
                    ]
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.act3(out + identity)


class AttentionPool2d(nn.Module):
    """Attention pooling: the mean of the feature map (plus a position embedding) queries every position
    (and itself) in one multi-head attention layer; its output, projected by ``c_proj``, is the embedding."""

    def __init__(self, spatial: int, dim: int, heads: int, output_dim: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spatial**2 + 1, dim) / dim**0.5)
        self.k_proj, self.q_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.c_proj = nn.Linear(dim, output_dim)
        self.heads = heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2).transpose(1, 2)  # (N, HW, C)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1) + self.positional_embedding.to(x.dtype)
        n, _, dim = x.shape
        heads = self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(n, -1, heads, dim // heads).transpose(1, 2)

        q = split(self.q_proj(x[:, :1]))
        out = F.scaled_dot_product_attention(q, split(self.k_proj(x)), split(self.v_proj(x)))
        return self.c_proj(out.transpose(1, 2).reshape(n, dim))


class ModifiedResNet(nn.Module):
    """CLIP's ResNet image tower: a 3-conv stem (stride 2, then a 2x2 average pool), four stages of
    `Bottleneck` s (strides 1, 2, 2, 2) and `AttentionPool2d` in place of global average pooling."""

    def __init__(
        self,
        layers: Sequence[int],
        output_dim: int,
        heads: int,
        image_size: int,
        width: int,
        in_chans: int = 3,
    ):
        super().__init__()
        if image_size % 32:
            raise ConfigError(
                f"the ResNet tower reduces by 32: image_size {image_size} must be a multiple of 32"
            )
        self.image_size = image_size
        half = width // 2
        self.conv1 = nn.Conv2d(in_chans, half, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(half)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(half, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(half, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.act3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        inplanes = width
        stages = []
        for i, blocks in enumerate(layers):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            stage = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * Bottleneck.expansion
            stage += [Bottleneck(inplanes, planes) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.attnpool = AttentionPool2d(image_size // 32, inplanes, heads, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.avgpool(self.act3(self.bn3(self.conv3(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


class ImageTower(nn.Module):
    """The image tower on its own (images -> embeddings), sharing the parameters of a `CLIP`: the image
    graph of the export (`CLIP.image_tower`)."""

    def __init__(self, clip: CLIP):
        super().__init__()
        self.clip = clip

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(image)


class TextTower(nn.Module):
    """The text tower on its own (token ids -> text embeddings), sharing the parameters of a `CLIP`: what
    the text graph exports (`CLIP.text_tower`)."""

    def __init__(self, clip: CLIP):
        super().__init__()
        self.clip = clip

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_text(tokens)


class CLIP(ZooModel):
    """Image and text towers projected to one ``embed_dim`` space, and the learned temperature.

    ``vision``: ``{"type": "vit", "patch_size", "width", "layers", "heads"}`` or ``{"type": "resnet",
    "layers": [b1, b2, b3, b4], "width", "heads"}``; ``text``: ``{"width", "layers", "heads"}`` with
    ``vocab_size`` and ``context_length`` from the tokenizer (`zoo.text`), whose end-of-text token is
    its highest id (pooling takes ``tokens.argmax(-1)``).
    """

    input_names = ("image", "tokens")
    output_names = ("image_embeds", "text_embeds", "logits_per_image")

    def __init__(
        self,
        embed_dim: int = 128,
        vision: dict[str, Any] | None = None,
        text: dict[str, Any] | None = None,
        vocab_size: int = 64,
        context_length: int = 32,
        img_size: int = 64,
        in_chans: int = 3,
        mlp_ratio: float = 4.0,
        init_logit_scale: float = math.log(1 / 0.07),
    ):
        super().__init__()
        vision = {"type": "vit", "patch_size": 8, "width": 128, "layers": 4, "heads": 4, **(vision or {})}
        text = {"width": 128, "layers": 3, "heads": 4, **(text or {})}
        self.vision_cfg, self.text_cfg = vision, text
        self.embed_dim, self.vocab_size, self.context_length = embed_dim, vocab_size, context_length
        self.input_size = (in_chans, img_size, img_size)
        self.dynamic_size = False  # position embeddings fix the image size
        if vision["type"] == "vit":
            self.visual: nn.Module = VisionTransformer(
                img_size, vision["patch_size"], vision["width"], vision["layers"], vision["heads"], embed_dim,
                mlp_ratio, in_chans,
            )  # fmt: skip
            self.first_conv = "visual.conv1"
        elif vision["type"] == "resnet":
            self.visual = ModifiedResNet(
                vision["layers"], embed_dim, vision["heads"], img_size, vision["width"], in_chans
            )
            self.first_conv = "visual.conv1"
        else:
            raise ConfigError(f"vision type {vision['type']!r} is not 'vit' or 'resnet'")
        width = text["width"]
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.transformer = Transformer(width, text["layers"], text["heads"], mlp_ratio)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, embed_dim))
        # Causal: a token sees the tokens before it only, so the end-of-text token summarises the text
        # in order ("a 3 left of a 7" differs from "a 7 left of a 3"). Not saved: it follows from the size.
        mask = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))
        self._init_text()

    def _init_text(self) -> None:
        # The paper's (and open_clip's) initialisation of the text tower: small normal embeddings and
        # projections scaled with depth, so the residual stream starts near the embeddings.
        width, layers = self.transformer.width, self.transformer.layers
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        proj_std, attn_std, fc_std = (width**-0.5) * ((2 * layers) ** -0.5), width**-0.5, (2 * width) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=width**-0.5)

    # -------------------------------------------------------------------------------------------- towers
    def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """(N, C, H, W) normalised images -> (N, embed_dim) embeddings (unit length with `normalize`)."""
        if image.shape[1:] != self.input_size:
            raise ValueError(
                f"images must be (N, {', '.join(map(str, self.input_size))}), got {tuple(image.shape)}"
            )
        features = self.visual(image)
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """(N, context_length) int64 token ids -> (N, embed_dim) embeddings, read at each row's end-of-text
        token (its highest id)."""
        if tokens.dim() != 2 or tokens.shape[1] != self.context_length or tokens.is_floating_point():
            raise ValueError(
                f"tokens must be (N, {self.context_length}) integer ids from the weight's tokenizer "
                f"(zoo.get_tokenizer), got {tuple(tokens.shape)} {tokens.dtype}"
            )
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.ln_final(self.transformer(x, self.attn_mask))
        x = x[torch.arange(len(x), device=x.device), tokens.argmax(dim=-1)]
        features = x @ self.text_projection
        return F.normalize(features, dim=-1) if normalize else features

    def forward(
        self, image: torch.Tensor, tokens: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`encode_image` (unnormalised, the exported image graph); with `tokens`, also `encode_text` and
        the (N_images, N_texts) logits ``exp(logit_scale) * cos``."""
        if tokens is None:
            return self.encode_image(image)
        images, texts = self.encode_image(image), self.encode_text(tokens)
        logits = self.logit_scale.exp() * F.normalize(images, dim=-1) @ F.normalize(texts, dim=-1).T
        return images, texts, logits

    def example_inputs(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random images and token rows as the tokenizer writes them: start (2), words, end-of-text (the
        highest id) at a different place in each row, then padding (0)."""
        device = self.logit_scale.device
        image = torch.randn(batch_size, *self.input_size, generator=generator)
        tokens = torch.zeros(batch_size, self.context_length, dtype=torch.long)
        for row in range(batch_size):
            end = 2 + (row * 5) % (self.context_length - 2)
            tokens[row, 0] = 2
            tokens[row, 1:end] = torch.randint(3, self.vocab_size - 1, (end - 1,), generator=generator)
            tokens[row, end] = self.vocab_size - 1
        return image.to(device), tokens.to(device)

    def logits(self, image: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(image->text, text->image) logits of a batch: scaled cosine similarities."""
        i, t = self.encode_image(image, True), self.encode_text(tokens, True)
        per_image = self.logit_scale.exp() * i @ t.T
        return per_image, per_image.T

    def image_tower(self) -> ImageTower:
        """The image tower as a module of its own (images in, embeddings out), for export."""
        return ImageTower(self)

    def text_tower(self) -> TextTower:
        """The text tower as a module of its own (token ids in, embeddings out), for export."""
        return TextTower(self)

    def open_clip_config(self) -> dict[str, Any]:
        """The kwargs of ``open_clip.model.CLIP`` that build the same network (module names and shapes), for
        tests against open_clip and for users who move a weight there."""
        v = self.vision_cfg
        vision_cfg: dict[str, Any] = {"image_size": self.input_size[1], "width": v["width"]}
        if v["type"] == "vit":
            vision_cfg.update(
                layers=v["layers"], patch_size=v["patch_size"], head_width=v["width"] // v["heads"]
            )
        else:
            # open_clip gives the attention pool width * 32 // head_width heads.
            vision_cfg.update(layers=list(v["layers"]), head_width=v["width"] * 32 // v["heads"])
        vision_cfg["mlp_ratio"] = float(
            self.transformer.resblocks[0].mlp.c_fc.out_features / self.transformer.width
        )
        text_cfg = {
            "context_length": self.context_length,
            "vocab_size": self.vocab_size,
            "width": self.text_cfg["width"],
            "heads": self.text_cfg["heads"],
            "layers": self.text_cfg["layers"],
            "mlp_ratio": vision_cfg["mlp_ratio"],
        }
        return {"embed_dim": self.embed_dim, "vision_cfg": vision_cfg, "text_cfg": text_cfg}


@torch.no_grad()
def zero_shot_classifier(
    model: CLIP, tokenizer: Any, class_names: Sequence[str], templates: Sequence[str]
) -> torch.Tensor:
    """(K, embed_dim) unit class embeddings: each class name put into every template, the texts' unit
    embeddings averaged and renormalised (the paper's prompt ensembling, in embedding space)."""
    if not class_names or not templates:
        raise ValueError("need at least one class name and one template")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise ValueError(f"templates must hold '{{}}' where the class name goes: {bad}")
    texts = [t.format(name) for name in class_names for t in templates]
    device = next(model.parameters()).device
    embeds = model.encode_text(tokenizer(texts).to(device), normalize=True)
    embeds = embeds.view(len(class_names), len(templates), -1).mean(dim=1)
    return F.normalize(embeds, dim=-1)


def _create(defaults: dict[str, Any], kwargs: dict[str, Any]) -> CLIP:
    return CLIP(**{**defaults, **kwargs})


@register_model(task="zero-shot-image-classification")
def clip_vit_tiny(**kwargs: Any) -> CLIP:
    """CLIP with a 4-layer ViT (8 px patches of 64 px scenes, width 128) and a 3-layer causal text
    transformer (width 128), 128-d joint embeddings."""
    return _create({"embed_dim": 128}, kwargs)


@register_model(task="zero-shot-image-classification", weights=("scenes",))
def clip_resnet_tiny(**kwargs: Any) -> CLIP:
    """CLIP with the paper's ResNet image tower, tiny (1 bottleneck per stage, width 16, attention
    pooling) and the `clip_vit_tiny` text tower."""
    return _create(
        {"embed_dim": 128, "vision": {"type": "resnet", "layers": [1, 1, 1, 1], "width": 16, "heads": 2}},
        kwargs,
    )
