"""Losses that several objectives share, each a plain function of tensors (no module state), computed in
float32 whatever the autocast dtype of the forward pass: a bf16 log-softmax or log loses the small
differences the gradient is made of.

- `cross_entropy`: classification, with label smoothing and soft (MixUp / CutMix) targets;
- `bernoulli_log_likelihood`: log p(x) of binary data under per-pixel Bernoulli logits (VAE, PixelCNN), in
  a form that stays finite after ONNX export;
- `reconstruction_loss`: autoencoders (and the reconstruction term of a VAE's ELBO): per-pixel mean
  squared error or Bernoulli negative log-likelihood (binary cross-entropy) of images in [0, 1];
- segmentation (logits (N, C, H, W), class maps (N, H, W), an ``ignore_index``): `weighted_cross_entropy`
  with `class_frequency_weights`, `dice_loss`, `focal_loss` and their combination `segmentation_loss`;
  from scribbles (sparse labels), the `gated_crf_loss` regulariser on the softmax of every pixel;
- image restoration (denoising, super-resolution, colorization): `restoration_loss` (MSE, L1, or the
  `charbonnier_loss`);
- adversarial (GANs): `discriminator_loss` and `generator_loss` (non-saturating or Wasserstein) and the
  WGAN-GP `gradient_penalty`;
- self-supervised: SimCLR's `nt_xent_loss`, `info_nce_loss` against a queue of negatives (MoCo), BYOL's
  `negative_cosine_similarity`, CPC's `patch_info_nce_loss`;
- image-text: CLIP's symmetric `clip_loss`, with optional hard negative texts (NegCLIP).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "BYOL_PAPER",
    "CLIP_PAPER",
    "COLORIZATION_PAPER",
    "CPC_PAPER",
    "DICE_LOSS",
    "FOCAL_LOSS",
    "GAN_LOSSES",
    "GAN_PAPER",
    "GATED_CRF_LOSS",
    "GCE_PAPER",
    "LABEL_SMOOTHING",
    "MOCO_PAPER",
    "MOCO_V2_PAPER",
    "NEGCLIP_PAPER",
    "SIMCLR_PAPER",
    "WGAN_GP_PAPER",
    "bernoulli_log_likelihood",
    "charbonnier_loss",
    "class_frequency_weights",
    "clip_loss",
    "colorization_copy_loss",
    "copy_attention",
    "cross_entropy",
    "dice_loss",
    "discriminator_loss",
    "focal_loss",
    "gated_crf_loss",
    "generalized_cross_entropy",
    "generator_loss",
    "gradient_penalty",
    "info_nce_loss",
    "negative_cosine_similarity",
    "nt_xent_loss",
    "patch_info_nce_loss",
    "reconstruction_loss",
    "restoration_loss",
    "segmentation_loss",
    "weighted_cross_entropy",
]

LABEL_SMOOTHING = "https://arxiv.org/abs/1512.00567"  # Szegedy et al., Rethinking the Inception Architecture

Reduction = Literal["mean", "sum", "none"]


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Cross-entropy of `logits` ``(N, C, ...)`` against class indices ``(N, ...)`` or class probabilities
    ``(N, C, ...)`` (the soft targets of MixUp / CutMix), with label smoothing, in float32.

    Label smoothing: "We propose a mechanism for encouraging the model to be less confident" (Szegedy et
    al., 2016, section 7, `LABEL_SMOOTHING`): the one-hot target of class y becomes
    ``q'(k) = (1 - ε) δ(k, y) + ε / K``, a mixture with the uniform distribution over the K classes. With
    ``ε = label_smoothing`` the loss is ``(1 - ε) * NLL + ε * mean_k(-log p_k)``; at initialisation
    (uniform predictions) it is ln(K) with or without smoothing.
    """
    return F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing, reduction=reduction)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Elementwise log p(x) = x * l - log(1 + e^l) of data `x` in [0, 1] under Bernoulli logits `l` (the
    negative of ``binary_cross_entropy_with_logits``), in float32.

    Written as x * l - max(l, 0) - log(1 + e^-|l|) because the exported graph must stay finite: the ONNX
    exporters turn the fused cross-entropy into log(sigmoid(l)), which is -inf once sigmoid underflows
    (|l| > ~88, common at a trained decoder's empty border pixels)."""
    logits, x = logits.float(), x.float()
    return x * logits - logits.clamp(min=0) - torch.log(1 + torch.exp(-logits.abs()))


def reconstruction_loss(
    recon: torch.Tensor,
    target: torch.Tensor,
    kind: Literal["mse", "bce"] = "mse",
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """How far a reconstruction `recon` is from `target`, both images in [0, 1], in float32.

    ``mse``: the mean squared error per pixel. ``bce``: the negative log-likelihood of `target` under
    independent Bernoulli pixels of probability `recon` (binary cross-entropy, the reconstruction term of
    the ELBO for binarised images); `recon` is clamped to [1e-6, 1 - 1e-6] first, so a saturated sigmoid
    gives a large but finite loss and gradient instead of log(0).
    """
    recon, target = recon.float(), target.float()
    if kind == "bce":
        return F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), target, reduction=reduction)
    if kind == "mse":
        return F.mse_loss(recon, target, reduction=reduction)
    raise ValueError(f"reconstruction loss {kind!r}: expected 'mse' or 'bce'")


# ------------------------------------------------------------------------------------ segmentation
# Dense per-pixel classification: logits (N, C, H, W) against class indices (N, H, W), where a target
# equal to `ignore_index` marks an unlabelled pixel that no loss counts. On the digit scenes the background
# holds ~94% of the pixels, which is why these exist beside plain cross-entropy.
FOCAL_LOSS = "https://arxiv.org/abs/1708.02002"  # Lin et al., Focal Loss for Dense Object Detection, 2017
DICE_LOSS = "https://arxiv.org/abs/1606.04797"  # Milletari et al., V-Net (the soft Dice loss), 2016


def class_frequency_weights(
    counts: torch.Tensor, power: float = 1.0, max_weight: float | None = None
) -> torch.Tensor:
    """Per-class loss weights from pixel counts: ``w_c ∝ (1 / f_c) ** power``, where ``f_c`` is class c's
    share of the pixels (a class with no pixels gets the largest weight of the others).

    ``power=1`` is plain inverse frequency, ``0.5`` its square root (gentler: with a 94% background,
    inverse frequency weighs a digit pixel ~150x a background pixel and the background's boundary turns
    noisy). The weights are scaled so the frequency-weighted mean weight is 1 (``sum_c f_c w_c = 1``): a
    weighted loss keeps the magnitude of the unweighted one, so learning rates carry over. ``max_weight``
    caps a weight after that scaling. Count once over the training split (what the recipes do, so every
    batch sees the same weights and a resumed run recomputes them exactly), not per batch: a batch without
    some class would otherwise change every weight.
    """
    counts = counts.double()
    if counts.dim() != 1 or (counts < 0).any() or counts.sum() <= 0:
        raise ValueError(f"counts must be a 1-d tensor of non-negative pixel counts, got {counts}")
    freq = counts / counts.sum()
    present = freq > 0
    weights = torch.zeros_like(freq)
    weights[present] = freq[present].pow(-power)
    weights[~present] = weights[present].max()
    weights = weights / (freq * weights).sum()
    if max_weight is not None:
        weights = weights.clamp(max=max_weight)
    return weights.float()


def weighted_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Per-pixel cross-entropy with class weights (e.g. `class_frequency_weights`), in float32.

    ``mean`` is torch's weighted mean, ``sum_i w_{y_i} l_i / sum_i w_{y_i}`` over the pixels not ignored:
    the weights shift the balance between classes, not the scale of the loss.
    """
    if weight is not None:
        weight = weight.to(device=logits.device, dtype=torch.float32)
    return F.cross_entropy(
        logits.float(), target.long(), weight=weight, ignore_index=ignore_index, reduction=reduction
    )


def _one_hot_valid(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(one-hot targets (N, C, H, W) float, valid-pixel mask (N, 1, H, W) float); ignored pixels are all-zero."""
    target = target.long()
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    one_hot = F.one_hot(torch.where(valid, target, 0), logits.shape[1]).movedim(-1, 1).float()
    valid = valid.unsqueeze(1).float()
    return one_hot * valid, valid


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int | None = None,
    smooth: float = 0.0,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Multi-class soft Dice loss: ``1 - mean_c (2 sum p_c t_c + s) / (sum p_c + sum t_c + s)``.

    "We propose a novel objective function based on Dice coefficient" (Milletari et al., 2016,
    `DICE_LOSS`), here per class over softmax probabilities ``p`` and one-hot targets ``t``, each sum over
    the whole batch and every pixel not ignored (so a class's Dice is that of the batch, as mIoU is that of
    the split). The mean runs over the classes present in the batch's targets: an absent class has
    ``sum t_c = 0``, so its Dice is 0 whatever the prediction and it would only add a constant. It weighs
    every class equally however few its pixels, the balance that mIoU itself has. ``eps`` floors the
    denominator.
    """
    probs = logits.float().softmax(1)
    one_hot, valid = _one_hot_valid(logits, target, ignore_index)
    probs = probs * valid
    dims = (0, 2, 3)
    intersection = (probs * one_hot).sum(dims)
    cardinality = probs.sum(dims) + one_hot.sum(dims)
    dice = (2 * intersection + smooth) / (cardinality + smooth).clamp_min(eps)
    present = one_hot.sum(dims) > 0
    if not present.any():
        return logits.float().sum() * 0.0  # nothing labelled: no signal, but a graph for backward
    return 1.0 - dice[present].mean()


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    alpha: float | None = None,
    kind: Literal["softmax", "sigmoid"] = "softmax",
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Multi-class focal loss, the mean over pixels not ignored.

    "The Focal Loss is designed to address the one-stage object detection scenario in which there is an
    extreme imbalance between foreground and background classes" (Lin et al., 2017, `FOCAL_LOSS`): the
    cross-entropy of each pixel is scaled by ``(1 - p_t) ** gamma``, so the many easy (background) pixels
    add little and the hard ones dominate.

    - ``softmax``: ``-(1 - p_t)^gamma log p_t`` with ``p_t`` the softmax probability of the true class
      (``gamma=0`` is cross-entropy); `alpha`, if given, weighs background (class 0) pixels by
      ``1 - alpha`` and the others by ``alpha``.
    - ``sigmoid``: the paper's own form, one-vs-rest: ``torchvision.ops.sigmoid_focal_loss`` of every
      class's logit against its one-hot target (``alpha`` weighs positives, torchvision's default 0.25
      when None), averaged over pixels and classes.
    """
    logits = logits.float()
    if kind == "sigmoid":
        from torchvision.ops import sigmoid_focal_loss

        one_hot, valid = _one_hot_valid(logits, target, ignore_index)
        per = sigmoid_focal_loss(logits, one_hot, alpha=0.25 if alpha is None else alpha, gamma=gamma)
        return (per * valid).sum() / (valid.sum() * logits.shape[1]).clamp_min(1)
    if kind != "softmax":
        raise ValueError(f"focal loss kind {kind!r}: expected 'softmax' or 'sigmoid'")
    target = target.long()
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    safe = torch.where(valid, target, 0)
    logp_t = logits.log_softmax(1).gather(1, safe.unsqueeze(1)).squeeze(1)
    loss = -(1 - logp_t.exp()).pow(gamma) * logp_t
    if alpha is not None:
        loss = loss * torch.where(safe == 0, 1 - alpha, alpha)
    valid = valid.float()
    return (loss * valid).sum() / valid.sum().clamp_min(1)


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    kind: Literal["ce", "weighted_ce", "dice", "focal", "ce_dice"] = "ce_dice",
    weight: torch.Tensor | None = None,
    ignore_index: int = 255,
    dice_weight: float = 1.0,
    focal_gamma: float = 2.0,
) -> torch.Tensor:
    """The segmentation objectives by name, for recipes: ``ce`` (plain), ``weighted_ce`` (class `weight`,
    e.g. `class_frequency_weights`), ``dice``, ``focal`` (softmax) and ``ce_dice``: cross-entropy (weighted
    when `weight` is given) plus ``dice_weight`` times the Dice loss. The combination is common practice:
    cross-entropy gives every pixel a well-scaled gradient from the start, Dice aligns the objective with
    the per-class overlap that mIoU scores."""
    if kind in ("ce", "weighted_ce", "ce_dice"):
        ce = weighted_cross_entropy(logits, target, weight if kind != "ce" else None, ignore_index)
        if kind != "ce_dice":
            return ce
        return ce + dice_weight * dice_loss(logits, target, ignore_index)
    if kind == "dice":
        return dice_loss(logits, target, ignore_index)
    if kind == "focal":
        return focal_loss(logits, target, gamma=focal_gamma, ignore_index=ignore_index)
    raise ValueError(f"segmentation loss {kind!r}: expected ce, weighted_ce, dice, focal or ce_dice")


GATED_CRF_LOSS = "https://arxiv.org/abs/1906.04651"  # Obukhov et al. 2019, Gated CRF Loss (scribbles)


def gated_crf_loss(
    probs: torch.Tensor,
    image: torch.Tensor,
    radius: int = 2,
    sigma_xy: float = 2.0,
    sigma_rgb: float = 0.1,
    valid: torch.Tensor | None = None,
    downsample: int = 1,
) -> torch.Tensor:
    """The gated CRF loss (Obukhov et al. 2019, "Gated CRF Loss for Weakly Supervised Semantic Image
    Segmentation"): the Potts model's relaxation over a local window, "sum_i sum_{j in Omega_i} K_ij
    m_ij (1 - y_i . y_j)", with the colour + position Gaussian of a dense CRF as affinity, ``K_ij =
    exp(-|p_i - p_j|^2 / 2 sigma_xy^2 - |I_i - I_j|^2 / 2 sigma_rgb^2)``, and the gate m_ij = 1 where both
    pixels are `valid` (and inside the image). Neighbours that look alike and disagree pay: it spreads
    sparse labels over regions of similar colour and stops them at edges.

    `probs` (N, C, H, W) are per-pixel class probabilities (a softmax), `image` (N, 3, H, W) the colours
    the affinity compares (e.g. in [0, 1], with `sigma_rgb` on that scale), `valid` (N, H, W) bool or None.
    The window holds the (2 radius + 1)^2 - 1 pixels around each pixel. ``downsample`` > 1 first averages
    probabilities and colours over ``downsample`` x ``downsample`` blocks (as the paper's implementation
    does: the window then reaches that many times further, at 1 / downsample^2 of the cost; `radius` and
    `sigma_xy` count blocks, and a gate block is valid if any of its pixels is). Returns the sum over pairs divided
    by the number of pixels, in float32; zero for a prediction that is one class everywhere. Computed one
    window offset at a time, so memory stays at a few maps whatever the window; the terms are symmetric in
    i and j, so each unordered pair is computed once and counted twice."""
    if probs.dim() != 4 or image.shape[0] != probs.shape[0] or image.shape[-2:] != probs.shape[-2:]:
        raise ValueError(
            f"probs (N, C, H, W) and image (N, 3, H, W) of one size, got {probs.shape}, {image.shape}"
        )
    if radius < 1 or sigma_xy <= 0 or sigma_rgb <= 0 or downsample < 1:
        raise ValueError(
            f"radius {radius} and downsample {downsample} must be >= 1 and sigmas {sigma_xy}, {sigma_rgb} > 0"
        )
    probs, image = probs.float(), image.float()
    if downsample > 1:
        probs, image = F.avg_pool2d(probs, downsample), F.avg_pool2d(image, downsample)
        if valid is not None:
            valid = F.max_pool2d(valid[:, None].float(), downsample)[:, 0] > 0
    n, _, h, w = probs.shape
    gate = torch.ones(n, h, w, dtype=torch.bool, device=probs.device) if valid is None else valid.bool()
    total = probs.new_zeros(())
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            # Half the window: (dy, dx) > (0, 0) in reading order; its mirror (-dy, -dx) is the same pairs.
            if (dy, dx) <= (0, 0) or abs(dy) >= h or abs(dx) >= w:
                continue
            # Pixel i at (y, x) and its neighbour j at (y + dy, x + dx), both inside the image.
            ys, yd = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
            xs, xd = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
            colour = (image[:, :, ys, xs] - image[:, :, yd, xd]).square().sum(1)
            kernel = torch.exp(-(dy * dy + dx * dx) / (2 * sigma_xy**2) - colour / (2 * sigma_rgb**2))
            kernel = kernel * (gate[:, ys, xs] & gate[:, yd, xd])
            agree = (probs[:, :, ys, xs] * probs[:, :, yd, xd]).sum(1)
            total = total + (kernel * (1 - agree)).sum()
    return 2 * total / (n * h * w)


# ------------------------------------------------------------------------------------ image-to-image
def charbonnier_loss(output: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean of ``sqrt((output - target)**2 + eps**2)``: a differentiable L1 ("Deep Laplacian Pyramid
    Networks for Fast and Accurate Super-Resolution", Lai et al., 2017, https://arxiv.org/abs/1704.03915).
    Like L1 it does not let a few large errors dominate (the sharp edges MSE blurs to hedge), and unlike L1
    its gradient goes smoothly to zero at a perfect pixel."""
    diff = output.float() - target.float()
    return torch.sqrt(diff.square() + eps * eps).mean()


def restoration_loss(
    output: torch.Tensor, target: torch.Tensor, kind: Literal["mse", "l1", "charbonnier"] = "l1"
) -> torch.Tensor:
    """Per-pixel losses of image restoration (denoising, super-resolution, colorization) by name, in float32:
    ``mse`` (what PSNR scores, as DnCNN trains), ``l1`` (EDSR: "L1 loss provides better convergence") and
    ``charbonnier``."""
    output, target = output.float(), target.float()
    if kind == "mse":
        return F.mse_loss(output, target)
    if kind == "l1":
        return F.l1_loss(output, target)
    if kind == "charbonnier":
        return charbonnier_loss(output, target)
    raise ValueError(f"restoration loss {kind!r}: expected mse, l1 or charbonnier")


# ------------------------------------------------------------------------------------ adversarial
GAN_LOSSES = ("ns", "wgan-gp")
GAN_PAPER = "https://arxiv.org/abs/1406.2661"  # Goodfellow et al. 2014, the non-saturating loss
WGAN_GP_PAPER = "https://arxiv.org/abs/1704.00028"  # Gulrajani et al. 2017, Improved Training of WGANs


def discriminator_loss(
    real_scores: torch.Tensor, fake_scores: torch.Tensor, kind: Literal["ns", "wgan-gp"] = "ns"
) -> torch.Tensor:
    """The discriminator's (critic's) loss on scores of real and generated images, in float32.

    ``ns``: binary cross-entropy of logits, real -> 1 and fake -> 0, i.e. ``softplus(-D(x)) + softplus(D(G(z)))``
    (Goodfellow et al. 2014). ``wgan-gp``: the critic's Wasserstein estimate ``E[D(G(z))] - E[D(x)]``
    (Gulrajani et al. 2017; add `gradient_penalty` for the Lipschitz constraint)."""
    real, fake = real_scores.float(), fake_scores.float()
    if kind == "ns":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "wgan-gp":
        return fake.mean() - real.mean()
    raise ValueError(f"GAN loss {kind!r}: expected one of {GAN_LOSSES}")


def generator_loss(fake_scores: torch.Tensor, kind: Literal["ns", "wgan-gp"] = "ns") -> torch.Tensor:
    """The generator's loss on the discriminator's scores of its images, in float32.

    ``ns``, the non-saturating loss: "Rather than training G to minimize log(1 - D(G(z))) we can train G to
    maximize log D(G(z)). This objective function [...] provides much stronger gradients early in learning"
    (Goodfellow et al. 2014): ``softplus(-D(G(z)))``. ``wgan-gp``: ``-E[D(G(z))]``."""
    fake = fake_scores.float()
    if kind == "ns":
        return F.softplus(-fake).mean()
    if kind == "wgan-gp":
        return -fake.mean()
    raise ValueError(f"GAN loss {kind!r}: expected one of {GAN_LOSSES}")


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP's two-sided penalty ``E[(||grad_x D(x_hat)||_2 - 1)^2]`` at ``x_hat = e x + (1 - e) G(z)``,
    e ~ U[0, 1] per sample (Gulrajani et al. 2017, Algorithm 1), in float32; differentiable (create_graph)
    so it trains the critic. `critic` maps images to (N,) scores (close over the labels of a conditional
    one); `generator` draws e on its own device. Weight it by lambda (10 in the paper)."""
    n = real.shape[0]
    where = generator.device if generator is not None else real.device
    eps = torch.rand(n, *([1] * (real.dim() - 1)), generator=generator, device=where).to(real.device)
    x_hat = (eps * real.detach().float() + (1 - eps) * fake.detach().float()).requires_grad_(True)
    scores = critic(x_hat).float()
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).square().mean()


# ------------------------------------------------------------------------------------ self-supervised
SIMCLR_PAPER = "https://arxiv.org/abs/2002.05709"  # Chen et al. 2020, SimCLR (NT-Xent)
MOCO_PAPER = "https://arxiv.org/abs/1911.05722"  # He et al. 2020, MoCo (a queue of negatives)
MOCO_V2_PAPER = (
    "https://arxiv.org/abs/2003.04297"  # Chen et al. 2020, MoCo v2 (MLP head, stronger augmentation)
)
BYOL_PAPER = "https://arxiv.org/abs/2006.07733"  # Grill et al. 2020, BYOL
CPC_PAPER = "https://arxiv.org/abs/1807.03748"  # van den Oord et al. 2018, CPC (InfoNCE)


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's normalized temperature-scaled cross-entropy, in float32: "the final loss is computed across
    all positive pairs, both (i, j) and (j, i), in a mini-batch" (Chen et al. 2020).

    `z1`, `z2` ``(N, D)`` are the projections of two views of the same N images. Each of the 2N vectors is
    classified, by cosine similarity / `temperature`, among the other 2N - 1: its other view is the right
    answer, the 2(N - 1) views of other images are the negatives. Mean over the 2N anchors.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"nt_xent_loss takes two (N, D) batches of one shape, got {z1.shape}, {z2.shape}")
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    n = z1.shape[0]
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))  # a view is never its own positive nor a negative
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, target)


def info_nce_loss(
    query: torch.Tensor, key: torch.Tensor, negatives: torch.Tensor, temperature: float = 0.2
) -> torch.Tensor:
    """InfoNCE with negatives from elsewhere (van den Oord et al. 2018; MoCo's queue, He et al. 2020), in
    float32: each query ``(N, D)`` is classified among its own key ``(N, D)`` and the `negatives` ``(K, D)``
    by cosine similarity / `temperature`, ``-log exp(q.k+ / t) / (exp(q.k+ / t) + sum_K exp(q.k- / t))``.
    No in-batch negatives: their number is K, whatever the batch size."""
    if query.shape != key.shape or negatives.ndim != 2 or negatives.shape[1] != query.shape[1]:
        raise ValueError(
            f"info_nce_loss takes query and key (N, D) and negatives (K, D), got {tuple(query.shape)}, "
            f"{tuple(key.shape)}, {tuple(negatives.shape)}"
        )
    q, k = F.normalize(query.float(), dim=1), F.normalize(key.float(), dim=1)
    neg = F.normalize(negatives.float(), dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ neg.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def negative_cosine_similarity(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss, ``-cos(p, z)`` averaged over the batch, in float32 (Grill et al. 2020 write
    it ``2 - 2 cos``: the same gradient). The target is detached: "stop-gradient" on the target branch."""
    return -F.cosine_similarity(prediction.float(), target.detach().float(), dim=1).mean()


def patch_info_nce_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CPC's InfoNCE (van den Oord et al. 2018, eq. 4), in float32: at each of P positions, the prediction
    for image i ``(N, P, D)`` must score its own target ``(N, P, D)`` above the same position's targets in the
    batch's other images, with the bilinear score ``exp(z^T W c)`` (the predictions are already ``W c``).
    Mean over images and positions. An all-zero encoding scores every candidate alike: the loss stays at
    log N, never at the 0 that a mean-squared prediction error would give it."""
    if predictions.shape != targets.shape or predictions.ndim != 3:
        raise ValueError(
            f"patch_info_nce_loss takes predictions and targets (N, P, D) of one shape, got "
            f"{tuple(predictions.shape)}, {tuple(targets.shape)}"
        )
    n, p, _ = predictions.shape
    logits = torch.einsum("npd,mpd->pnm", predictions.float(), targets.float())  # (P, N, N)
    labels = torch.arange(n, device=logits.device).repeat(p)
    return F.cross_entropy(logits.reshape(p * n, n), labels)


COLORIZATION_PAPER = "https://arxiv.org/abs/1806.09594"  # Vondrick et al. 2018, tracking by colorizing


def copy_attention(
    reference: torch.Tensor, target: torch.Tensor, temperature: float = 1.0, topk: int = 0
) -> torch.Tensor:
    """Vondrick et al.'s copy weights (float32): for reference embeddings ``(N, D, P)`` and target embeddings
    ``(N, D, Q)``, ``A[n, i, j] = exp(f_i . f_j / T) / sum_k exp(f_k . f_j / T)`` over the reference
    positions i, ``(N, P, Q)``: each target position's weights sum to 1. ``topk > 0`` keeps each target
    position's k largest scores only (the rest get weight 0), as propagation at test time may."""
    if reference.ndim != 3 or target.ndim != 3 or reference.shape[:2] != target.shape[:2]:
        raise ValueError(
            f"copy_attention takes embeddings (N, D, P) and (N, D, Q) with one N and D, got "
            f"{tuple(reference.shape)}, {tuple(target.shape)}"
        )
    scores = torch.einsum("ndp,ndq->npq", reference.float(), target.float()) / temperature
    if 0 < topk < scores.shape[1]:
        kth = scores.topk(topk, dim=1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    return scores.softmax(dim=1)


def colorization_copy_loss(
    reference: torch.Tensor,
    target: torch.Tensor,
    reference_colours: torch.Tensor,
    target_colours: torch.Tensor,
    num_colours: int,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Colorization as self-supervision (Vondrick et al. 2018, eq. 1-2): the target frame's colours are
    predicted by copying the reference frame's with `copy_attention`, ``y_j = sum_i A_ij c_i`` over one-hot
    quantised colours, and scored by cross-entropy ``-log y_j[c_j]`` (mean over target positions).

    Embeddings are ``(N, D, h, w)`` (or already flat ``(N, D, P)``; several reference frames concatenated
    along P); colours are the matching ``(N, h, w)`` (or ``(N, P)``) integer bins in [0, num_colours)."""
    ref, tgt = reference.flatten(2), target.flatten(2)
    ref_c, tgt_c = reference_colours.flatten(1).long(), target_colours.flatten(1).long()
    if ref_c.shape != (ref.shape[0], ref.shape[2]) or tgt_c.shape != (tgt.shape[0], tgt.shape[2]):
        raise ValueError(
            f"colours must give one bin per embedding position: reference {tuple(ref_c.shape)} for embeddings "
            f"{tuple(ref.shape)}, target {tuple(tgt_c.shape)} for {tuple(tgt.shape)}"
        )
    weights = copy_attention(ref, tgt, temperature)  # (N, P, Q)
    one_hot = F.one_hot(ref_c, num_colours).float()  # (N, P, K)
    predicted = torch.einsum("npq,npk->nqk", weights, one_hot)  # (N, Q, K): each row sums to 1
    return F.nll_loss(predicted.clamp_min(1e-8).log().transpose(1, 2), tgt_c)


GCE_PAPER = "https://arxiv.org/abs/1805.07836"  # Zhang and Sabuncu 2018, generalized cross entropy


def generalized_cross_entropy(logits: torch.Tensor, target: torch.Tensor, q: float = 0.7) -> torch.Tensor:
    """Generalized cross-entropy (Zhang and Sabuncu 2018, eq. 6), in float32: ``(1 - p_y^q) / q``, mean over
    the batch, with ``p_y`` the softmax probability of the (possibly wrong) label. As q -> 0 it tends to
    cross-entropy; q = 1 is the mean absolute error, which is robust to label noise but slow to train: a
    wrong label's gradient is weighted by ``p_y^q``, so confidently contradicted labels count for little."""
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1], got {q}")
    p_y = logits.float().softmax(1).gather(1, target[:, None]).squeeze(1)
    return ((1 - p_y.clamp_min(1e-12) ** q) / q).mean()


CLIP_PAPER = "https://arxiv.org/abs/2103.00020"  # Radford et al. 2021, CLIP
NEGCLIP_PAPER = "https://arxiv.org/abs/2210.01936"  # Yuksekgonul et al. 2023, bags-of-words and NegCLIP


def clip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    hard_negatives: torch.Tensor | None = None,
    hard_negative_valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """CLIP's symmetric cross-entropy over the N x N image-text similarities, in float32: "the cosine
    similarity of the N real pairs is maximised and that of the N^2 - N incorrect pairings minimised"
    (Radford et al. 2021); the mean of the image->text and text->image cross-entropies.

    `image_features`, `text_features` ``(N, D)`` are unit-length embeddings of matching pairs (row i with
    row i), `logit_scale` the multiplier of the similarities (``exp`` of the learned log-temperature).
    `hard_negatives` ``(N, D)``, unit-length, are one extra text per image that must score below the true
    one (NegCLIP, Yuksekgonul et al. 2023: the caption with its words reordered), added to every image's
    candidates in the image->text term; rows where `hard_negative_valid` ``(N,)`` is False (no distinct
    reordering exists) are left out as candidates.
    """
    if image_features.shape != text_features.shape or image_features.ndim != 2:
        raise ValueError(
            f"clip_loss takes two (N, D) batches of one shape, got {tuple(image_features.shape)}, "
            f"{tuple(text_features.shape)}"
        )
    image, text = image_features.float(), text_features.float()
    scale = logit_scale.float()
    per_image = scale * image @ text.T
    target = torch.arange(len(image), device=image.device)
    per_text = per_image.T
    if hard_negatives is not None:
        if hard_negatives.shape != text_features.shape:
            raise ValueError(
                f"hard_negatives must be (N, D) like the texts, got {tuple(hard_negatives.shape)}"
            )
        extra = scale * image @ hard_negatives.float().T
        if hard_negative_valid is not None:
            extra = extra.masked_fill(~hard_negative_valid.bool()[None, :], float("-inf"))
        per_image = torch.cat([per_image, extra], dim=1)
    return (F.cross_entropy(per_image, target) + F.cross_entropy(per_text, target)) / 2
