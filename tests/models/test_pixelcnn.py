"""PixelCNN specifics: the autoregressive property, the exact NLL, sampling and its bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.errors import ConfigError
from zoo.models.pixelcnn import MaskedConv2d, causal_mask, fold_masks

TINY = {"channels": 8, "layers": 2, "head": 8}


def tiny(name: str = "pixelcnn", **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return zoo.create_model(name, **{**TINY, **kwargs}).eval()


def test_masks():
    assert causal_mask(3, 3, "A").tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert causal_mask(3, 3, "B").tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]
    assert causal_mask(3, 3, "VA").tolist() == [[1, 1, 1], [0, 0, 0], [0, 0, 0]]
    assert causal_mask(3, 3, "VB").tolist() == [[1, 1, 1], [1, 1, 1], [0, 0, 0]]
    assert causal_mask(1, 5, "A").tolist() == [[1, 1, 0, 0, 0]]


@pytest.mark.parametrize("name", ["pixelcnn", "pixelcnn_cond"])
def test_logit_i_depends_only_on_pixels_before_i(name):
    """Gradient of logit i w.r.t. the input: zero at every pixel >= i (raster order), non-zero before."""
    model = tiny(name, layers=3)
    labels = torch.tensor([3]) if model.num_classes else None
    x = model.prepare(torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    for i in (0, 1, 27, 28, 29, 300, 783):
        xi = x.clone().requires_grad_(True)
        model.logits(xi, labels)[0, 0].flatten()[i].backward()
        grad = xi.grad.flatten()
        assert grad[i:].abs().max() == 0, f"logit {i} sees pixel >= {i}"
        if i:
            assert grad[:i].abs().max() > 0, f"logit {i} sees nothing of its past"
    # Pixel i - 1 (the immediate left neighbour) and the pixel straight above are in every receptive field.
    xi = x.clone().requires_grad_(True)
    model.logits(xi, labels)[0, 0, 10, 10].backward()
    assert xi.grad[0, 0, 10, 9] != 0 and xi.grad[0, 0, 9, 10] != 0


def test_nll_is_the_direct_bernoulli_computation():
    model = tiny("pixelcnn_cond")
    images = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 5, 9])
    logits, bpd = model(images, labels)
    x = (images >= 0.5).float()
    p = torch.sigmoid(logits.double())
    direct = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    assert torch.allclose(model.nll(x, labels).double(), direct, rtol=1e-5)
    assert torch.allclose(bpd.double(), direct / (784 * math.log(2)), rtol=1e-5)
    # The class changes the likelihood: the conditioning reaches the logits.
    assert not torch.allclose(model.nll(x, labels), model.nll(x, torch.tensor([1, 1, 1])))


def test_folded_masks_give_the_same_logits():
    model = tiny()
    x = model.prepare(torch.rand(2, 1, 28, 28))
    before = model.logits(x)
    fold_masks(model)
    convs = [m for m in model.modules() if isinstance(m, MaskedConv2d)]
    assert convs and all(m.folded for m in convs)
    assert all(torch.equal(m.weight * m.mask, m.weight) for m in convs)
    assert torch.allclose(model.logits(x), before, atol=1e-6)


def test_sample_shape_range_and_window_equals_full_image():
    one = tiny(layers=1).sample(1, generator=torch.Generator().manual_seed(0), labels=None)
    assert one.shape == (1, 1, 28, 28) and one.dtype == torch.float32
    assert set(one.unique().tolist()) <= {0.0, 1.0}
    # The windowed sampler computes exactly what the whole network computes (same draws, same images). At
    # 12x12 (144 steps, not 784: the test stays fast) the windows (reach 3 + 1 = 4) still crop the image.
    model = tiny("pixelcnn_cond", layers=1, img_size=12)
    assert model.reach == 4
    a = model.sample(2, generator=torch.Generator().manual_seed(0), labels=[4, 7])
    b = model.sample(2, generator=torch.Generator().manual_seed(0), labels=[4, 7], window=False)
    assert a.shape == (2, 1, 12, 12) and torch.equal(a, b) and 0 < a.mean() < 1


def test_bad_input():
    plain, cond = tiny(layers=0), tiny("pixelcnn_cond", layers=0)
    with pytest.raises(ConfigError, match="n=0"):
        plain.sample(0)
    with pytest.raises(ConfigError, match="unconditional"):
        plain.sample(1, labels=[3])
    with pytest.raises(ConfigError, match="label 10 is not one of this model's classes: 0, 1, 2"):
        cond.sample(2, labels=[3, 10])
    with pytest.raises(ConfigError, match="label 2.5 is not one of"):
        cond.sample(1, labels=[2.5])
    with pytest.raises(ConfigError, match=r"allowed: 0\.\.9"):
        cond(torch.rand(1, 1, 28, 28), torch.tensor([-1]))
    with pytest.raises(ConfigError, match="in_chans"):
        zoo.create_model("pixelcnn", in_chans=3)


def test_untrained_nll_near_one_bit_and_training_lowers_it():
    """At init the logits are near 0 (about 1 bit/dim); a few Adam steps on one batch lower the NLL."""
    model = tiny().train()
    x = model.prepare(torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(2)) ** 3)
    with torch.no_grad():
        start = float(model.nll(x).mean())
    assert 0.5 * 784 * math.log(2) < start < 2 * 784 * math.log(2)
    opt = torch.optim.Adam(model.parameters(), 2e-2)
    for _ in range(6):
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model.logits(x), x, reduction="sum") / len(x)
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(model.nll(x).mean()) < 0.8 * start
