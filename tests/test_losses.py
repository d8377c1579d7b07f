"""zoo.losses against their definitions written out by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zoo.losses import cross_entropy, reconstruction_loss


def test_cross_entropy_label_smoothing_is_the_mixture_with_the_uniform_target():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(6, 5, generator=g), torch.tensor([0, 1, 2, 3, 4, 0])
    eps = 0.1
    logp = logits.log_softmax(1)
    nll = -logp[torch.arange(6), y]
    expected = ((1 - eps) * nll + eps * (-logp).mean(1)).mean()
    torch.testing.assert_close(cross_entropy(logits, y, label_smoothing=eps), expected)
    # The same as the smoothed target written out: q(k) = (1 - eps) [k == y] + eps / K.
    q = (1 - eps) * F.one_hot(y, 5).float() + eps / 5
    torch.testing.assert_close(cross_entropy(logits, q), expected)
    torch.testing.assert_close(cross_entropy(logits, y, reduction="sum"), nll.sum())


def test_cross_entropy_is_ln_k_at_uniform_predictions_and_computed_in_float32():
    logits = torch.zeros(3, 10, dtype=torch.bfloat16)
    for eps in (0.0, 0.2):
        loss = cross_entropy(logits, torch.tensor([1, 2, 3]), label_smoothing=eps)
        assert loss.dtype == torch.float32 and loss.item() == pytest.approx(math.log(10), rel=1e-6)


def test_reconstruction_losses():
    g = torch.Generator().manual_seed(0)
    recon, target = torch.rand(2, 1, 4, 4, generator=g), torch.rand(2, 1, 4, 4, generator=g)
    torch.testing.assert_close(reconstruction_loss(recon, target, "mse"), (recon - target).square().mean())
    bce = -(target * recon.log() + (1 - target) * (1 - recon).log())
    torch.testing.assert_close(reconstruction_loss(recon, target, "bce"), bce.mean())
    torch.testing.assert_close(reconstruction_loss(recon, target, "bce", reduction="sum"), bce.sum())
    # A saturated output (exactly 0 where the target is 1) gives a finite loss and gradient.
    saturated = torch.zeros(1, 4, requires_grad=True)
    loss = reconstruction_loss(saturated, torch.ones(1, 4), "bce")
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(saturated.grad).all()
    with pytest.raises(ValueError, match="'l1'"):
        reconstruction_loss(recon, target, "l1")


# ------------------------------------------------------------------------------------ segmentation
def _seg_batch(seed: int = 0, ignore: bool = True, classes: int = 5):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, classes, 6, 7, generator=g) * 2
    target = torch.randint(0, classes - 1, (3, 6, 7), generator=g)  # the last class is absent
    if ignore:
        target[0, :2] = 255
    return logits, target


def test_class_frequency_weights_are_inverse_frequency_with_unit_mean():
    from zoo.losses import class_frequency_weights

    counts = torch.tensor([900.0, 60.0, 40.0, 0.0])
    w = class_frequency_weights(counts)
    freq = counts / counts.sum()
    assert (freq * w).sum().item() == pytest.approx(1.0, rel=1e-6)
    assert w[1] / w[0] == pytest.approx(900 / 60, rel=1e-5) and w[2] / w[1] == pytest.approx(1.5, rel=1e-5)
    assert w[3] == w[:3].max()  # an absent class gets the largest weight of the others
    sqrt = class_frequency_weights(counts, power=0.5)
    assert sqrt[1] / sqrt[0] == pytest.approx(math.sqrt(15), rel=1e-5)
    assert class_frequency_weights(counts, max_weight=2.0).max() <= 2.0
    with pytest.raises(ValueError):
        class_frequency_weights(torch.zeros(3))


def test_weighted_cross_entropy_is_torchs_weighted_mean():
    from zoo.losses import class_frequency_weights, weighted_cross_entropy

    logits, target = _seg_batch()
    w = class_frequency_weights(torch.bincount(target[target != 255], minlength=5))
    expected = F.cross_entropy(logits, target, weight=w, ignore_index=255)
    torch.testing.assert_close(weighted_cross_entropy(logits, target, w, ignore_index=255), expected)
    # Written out: sum_i w_{y_i} (-log p_{y_i}) / sum_i w_{y_i} over the labelled pixels.
    keep = target != 255
    logp = logits.log_softmax(1).movedim(1, -1)[keep]
    y = target[keep]
    by_hand = (w[y] * -logp[torch.arange(len(y)), y]).sum() / w[y].sum()
    torch.testing.assert_close(
        weighted_cross_entropy(logits.bfloat16(), target, w, 255), by_hand, atol=0.05, rtol=0
    )


@pytest.mark.parametrize("ignore", [False, True])
def test_dice_loss_matches_segmentation_models_pytorch(ignore):
    smp = pytest.importorskip("segmentation_models_pytorch")
    from zoo.losses import dice_loss

    logits, target = _seg_batch(1, ignore)
    reference = smp.losses.DiceLoss("multiclass", from_logits=True, ignore_index=255 if ignore else None)
    # smp zeroes an absent class's term but still divides by every class; ours averages the present ones.
    present = torch.bincount(target[target != 255], minlength=5).gt(0).sum().item()
    ours = dice_loss(logits, target, ignore_index=255 if ignore else None)
    torch.testing.assert_close(ours * present / 5, reference(logits, target), rtol=1e-5, atol=1e-6)
    # A perfect prediction has zero loss; the gradient exists.
    perfect = F.one_hot(torch.where(target == 255, 0, target), 5).movedim(-1, 1).float() * 50
    assert dice_loss(perfect, target, ignore_index=255).item() == pytest.approx(0.0, abs=1e-5)
    leaf = logits.clone().requires_grad_()
    dice_loss(leaf, target, ignore_index=255).backward()
    assert torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0


@pytest.mark.parametrize("ignore", [False, True])
def test_sigmoid_focal_loss_matches_segmentation_models_pytorch(ignore):
    smp = pytest.importorskip("segmentation_models_pytorch")
    from zoo.losses import focal_loss

    logits, target = _seg_batch(2, ignore)
    idx = 255 if ignore else None
    for gamma, alpha in ((2.0, 0.25), (1.0, 0.5)):
        reference = smp.losses.FocalLoss("multiclass", alpha=alpha, gamma=gamma, ignore_index=idx)
        ours = focal_loss(logits, target, gamma=gamma, alpha=alpha, kind="sigmoid", ignore_index=idx)
        torch.testing.assert_close(ours, reference(logits, target), rtol=1e-5, atol=1e-6)


def test_softmax_focal_loss_written_out_and_cross_entropy_at_gamma_zero():
    from zoo.losses import focal_loss

    logits, target = _seg_batch(3)
    keep = target != 255
    p = logits.softmax(1).movedim(1, -1)[keep]
    y = target[keep]
    p_t = p[torch.arange(len(y)), y]
    expected = (-((1 - p_t) ** 2) * p_t.log()).mean()
    torch.testing.assert_close(focal_loss(logits, target, gamma=2.0, ignore_index=255), expected)
    alpha = torch.where(y == 0, 0.75, 0.25)
    torch.testing.assert_close(
        focal_loss(logits, target, gamma=2.0, alpha=0.25, ignore_index=255),
        (alpha * -((1 - p_t) ** 2) * p_t.log()).mean(),
    )
    torch.testing.assert_close(
        focal_loss(logits, target, gamma=0.0, ignore_index=255),
        F.cross_entropy(logits, target, ignore_index=255),
    )
    with pytest.raises(ValueError, match="'tanh'"):
        focal_loss(logits, target, kind="tanh")


def test_segmentation_loss_combines_the_parts():
    from zoo.losses import dice_loss, focal_loss, segmentation_loss, weighted_cross_entropy

    logits, target = _seg_batch(4)
    w = torch.rand(5) + 0.5
    ce = F.cross_entropy(logits, target, ignore_index=255)
    torch.testing.assert_close(segmentation_loss(logits, target, "ce", weight=w), ce)
    torch.testing.assert_close(
        segmentation_loss(logits, target, "weighted_ce", weight=w),
        weighted_cross_entropy(logits, target, w, 255),
    )
    torch.testing.assert_close(
        segmentation_loss(logits, target, "ce_dice", dice_weight=0.5),
        ce + 0.5 * dice_loss(logits, target, 255),
    )
    torch.testing.assert_close(segmentation_loss(logits, target, "dice"), dice_loss(logits, target, 255))
    torch.testing.assert_close(
        segmentation_loss(logits, target, "focal"), focal_loss(logits, target, ignore_index=255)
    )
    with pytest.raises(ValueError, match="'lovasz'"):
        segmentation_loss(logits, target, "lovasz")


def test_bernoulli_log_likelihood_is_minus_torchs_cross_entropy_and_exports_finite(tmp_path):
    import numpy as np
    import onnxruntime as ort

    from zoo.losses import bernoulli_log_likelihood

    logits = torch.tensor([-300.0, -120.0, -5.0, 0.0, 3.0, 120.0, 300.0]).repeat(2, 1)
    x = torch.tensor([[1.0] * 7, [0.0] * 7])
    expected = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    assert torch.allclose(bernoulli_log_likelihood(logits, x), expected, rtol=1e-6, atol=1e-6)

    class Wrapped(torch.nn.Module):
        def forward(self, logits, x):
            return bernoulli_log_likelihood(logits, x)

    path = tmp_path / "ll.onnx"
    torch.onnx.export(Wrapped().eval(), (logits, x), str(path), dynamo=True)
    (out,) = ort.InferenceSession(str(path)).run(None, {"logits": logits.numpy(), "x": x.numpy()})
    assert np.isfinite(out).all() and np.allclose(out, expected.numpy(), rtol=1e-6, atol=1e-5)


# ------------------------------------------------------------------------------------------ colorization
def test_colorization_copy_loss_copies_through_attention():
    from zoo.losses import colorization_copy_loss

    colours = torch.tensor([[0, 1, 2, 1]])
    # Sharp one-hot embeddings: every target position attends to its own reference position only.
    sharp = 50 * torch.eye(4).unsqueeze(0)  # (1, D=4, P=4)
    assert colorization_copy_loss(sharp, sharp, colours, colours, 3) < 1e-6
    # The same attention cannot be right when the target's colours are a permutation of the reference's.
    assert colorization_copy_loss(sharp, sharp, colours, colours.roll(1, 1), 3) > 10
    # Zero embeddings attend uniformly: the prediction is the reference's colour histogram (1/4, 1/2, 1/4).
    flat = torch.zeros(1, 4, 2, 2)
    loss = colorization_copy_loss(flat, flat, colours.view(1, 2, 2), colours.view(1, 2, 2), 3)
    assert torch.isclose(loss, -torch.tensor([0.25, 0.5, 0.25, 0.5]).log().mean())


def test_colorization_copy_loss_names_mismatched_shapes():
    from zoo.losses import colorization_copy_loss

    with pytest.raises(ValueError, match="one bin per embedding position"):
        colorization_copy_loss(
            torch.zeros(1, 4, 2, 2), torch.zeros(1, 4, 2, 2), torch.zeros(1, 3), torch.zeros(1, 4), 3
        )


# ------------------------------------------------------------------------------------------ noisy labels
def test_generalized_cross_entropy_spans_cross_entropy_to_mae():
    from zoo.losses import generalized_cross_entropy

    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(8, 5, generator=g), torch.randint(0, 5, (8,), generator=g)
    p_y = logits.softmax(1)[torch.arange(8), y]
    assert torch.isclose(generalized_cross_entropy(logits, y, 1.0), (1 - p_y).mean())  # q = 1: MAE
    ce = F.cross_entropy(logits, y)
    assert torch.isclose(generalized_cross_entropy(logits, y, 1e-4), ce, rtol=1e-3)  # q -> 0: CE
    # A confidently contradicted label pulls less than under CE: its gradient is scaled by p_y^q.
    wrong = torch.tensor([[5.0, -5.0]], requires_grad=True)
    generalized_cross_entropy(wrong, torch.tensor([1]), 0.7).backward()
    gce_grad = wrong.grad.abs().sum()
    wrong.grad = None
    F.cross_entropy(wrong, torch.tensor([1])).backward()
    assert gce_grad < 0.01 * wrong.grad.abs().sum()
    with pytest.raises(ValueError, match=r"q must be in \(0, 1\]"):
        generalized_cross_entropy(logits, y, 0.0)


def _gated_crf_by_hand(probs, image, radius, sigma_xy, sigma_rgb, valid):
    """Every ordered pair (i, j) with j in i's window, written out pixel by pixel."""
    n, _, h, w = probs.shape
    total = 0.0
    for b in range(n):
        for y in range(h):
            for x in range(w):
                for v in range(max(0, y - radius), min(h, y + radius + 1)):
                    for u in range(max(0, x - radius), min(w, x + radius + 1)):
                        if (v, u) == (y, x) or not (valid[b, y, x] and valid[b, v, u]):
                            continue
                        position = ((v - y) ** 2 + (u - x) ** 2) / (2 * sigma_xy**2)
                        colour = float((image[b, :, y, x] - image[b, :, v, u]).square().sum()) / (
                            2 * sigma_rgb**2
                        )
                        agree = float((probs[b, :, y, x] * probs[b, :, v, u]).sum())
                        total += math.exp(-position - colour) * (1 - agree)
    return total / (n * h * w)


def test_gated_crf_loss_is_the_potts_relaxation_over_the_window():
    from zoo.losses import gated_crf_loss

    # Two pixels of one colour, certain of different classes: one pair each way, K = exp(-1 / 2 sigma_xy^2).
    image = torch.zeros(1, 3, 1, 2)
    certain = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 2)
    assert gated_crf_loss(certain, image, radius=1, sigma_xy=1.0).item() == pytest.approx(math.exp(-0.5))
    half = torch.tensor([[0.5, 0.5], [1.0, 0.0]]).T.reshape(1, 2, 1, 2)  # they agree on half the mass
    assert gated_crf_loss(half, image, radius=1, sigma_xy=1.0).item() == pytest.approx(0.5 * math.exp(-0.5))
    # A colour edge between them (distance 1 at sigma_rgb 0.5: exp(-2) more) makes disagreement cheap.
    edge = torch.tensor([0.0, 1.0]).reshape(1, 1, 1, 2).expand(1, 3, 1, 2) / math.sqrt(3)
    expected = math.exp(-0.5 - 2.0)
    assert gated_crf_loss(certain, edge, 1, 1.0, 0.5).item() == pytest.approx(expected)
    # Random inputs against every pair written out, with a gate.
    g = torch.Generator().manual_seed(0)
    probs = torch.randn(2, 3, 5, 6, generator=g).softmax(1)
    image = torch.rand(2, 3, 5, 6, generator=g)
    valid = torch.rand(2, 5, 6, generator=g) > 0.2
    got = gated_crf_loss(probs, image, 2, 1.5, 0.3, valid)
    assert got.item() == pytest.approx(_gated_crf_by_hand(probs, image, 2, 1.5, 0.3, valid), rel=1e-5)


def test_gated_crf_loss_is_zero_on_one_class_everywhere_and_its_gradient_smooths():
    from zoo.losses import gated_crf_loss

    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 8, 8, generator=g)
    constant = F.one_hot(torch.full((2, 8, 8), 3), 5).permute(0, 3, 1, 2).float()
    assert gated_crf_loss(constant, image).item() == 0.0
    # Gradient sanity: finite, flows to the logits, and a small step along it lowers the loss.
    logits = torch.randn(2, 5, 8, 8, generator=g, requires_grad=True)
    loss = gated_crf_loss(logits.softmax(1), image)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with torch.no_grad():
        lower = gated_crf_loss((logits - 0.5 * logits.grad / logits.grad.norm()).softmax(1), image)
    assert lower < loss
    # On an image of two flat halves, a prediction that follows the edge costs less than one across it.
    halves = torch.zeros(1, 3, 8, 8)
    halves[..., 4:] = 1.0
    along = F.one_hot((torch.arange(8) >= 4).long().expand(8, 8), 2).permute(2, 0, 1)[None].float()
    across = along.transpose(-1, -2)
    assert gated_crf_loss(along, halves) < 0.01 * gated_crf_loss(across, halves)


def test_gated_crf_loss_names_bad_inputs():
    from zoo.losses import gated_crf_loss

    with pytest.raises(ValueError, match=r"probs \(N, C, H, W\) and image"):
        gated_crf_loss(torch.rand(1, 2, 4, 4), torch.rand(1, 3, 5, 4))
    with pytest.raises(ValueError, match="radius"):
        gated_crf_loss(torch.rand(1, 2, 4, 4), torch.rand(1, 3, 4, 4), radius=0)


def test_gated_crf_loss_downsampled_is_the_loss_of_the_block_means():
    from zoo.losses import gated_crf_loss

    g = torch.Generator().manual_seed(1)
    probs = torch.randn(2, 4, 8, 8, generator=g).softmax(1)
    image = torch.rand(2, 3, 8, 8, generator=g)
    pooled = gated_crf_loss(F.avg_pool2d(probs, 2), F.avg_pool2d(image, 2), 2, 1.0, 0.2)
    torch.testing.assert_close(gated_crf_loss(probs, image, 2, 1.0, 0.2, downsample=2), pooled)
