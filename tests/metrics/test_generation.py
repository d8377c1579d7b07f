"""`FID` with a small feature network (no Inception download): ~0 for identical sets, growing with a shift,
and equal to the Fréchet distance computed with scipy on the same features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg
from torch import nn

from zoo.metrics import FID

SIZE = (1, 16, 16)


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 7 * 7, 12))


def _images(seed: int, n: int = 200) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SIZE, generator=g)


def _fid(fake: torch.Tensor, real: torch.Tensor, **kwargs) -> float:
    m = FID(_network(), 12, SIZE, **kwargs)
    for lo in range(0, len(fake), 64):  # several batches
        m.update(fake[lo : lo + 64], real[lo : lo + 64])
    return m.compute()["fid"]


def test_identical_sets_give_zero_and_shifts_grow_it():
    real = _images(0)
    same = _fid(real, real)
    shifted = [_fid((real + d).clamp(0, 1), real) for d in (0.05, 0.15, 0.3)]
    assert abs(same) < 1e-3 * shifted[0]
    assert shifted[0] < shifted[1] < shifted[2]
    assert FID.higher_is_better == {"fid": False}


def test_matches_the_frechet_distance_of_the_features():
    real, fake = _images(1), (_images(2) * 0.8 + 0.1)
    net = _network().eval()
    with torch.no_grad():
        fr, ff = net(real).double().numpy(), net(fake).double().numpy()
    mu_r, mu_f = fr.mean(0), ff.mean(0)
    cov_r, cov_f = np.cov(fr, rowvar=False), np.cov(ff, rowvar=False)
    ref = ((mu_r - mu_f) ** 2).sum() + np.trace(cov_r + cov_f - 2 * linalg.sqrtm(cov_r @ cov_f).real)
    assert _fid(fake, real) == pytest.approx(ref, rel=1e-4)
    # uint8 images are scaled to [0, 1] before the network: the same value from the same pixels.
    to8 = lambda x: (x * 255).round().to(torch.uint8)  # noqa: E731
    assert _fid(to8(fake), to8(real)) == pytest.approx(_fid(to8(fake).float() / 255, to8(real).float() / 255))


def test_real_features_kept_across_resets_and_too_few_images():
    real, fake = _images(3), _images(4)
    m = FID(_network(), 12, SIZE, reset_real_features=False)
    m.update(None, real)
    m.update(fake, None)
    first = m.compute()["fid"]
    m.reset()
    m.update(fake, None)  # reals were kept
    assert m.compute()["fid"] == pytest.approx(first)
    m = FID(_network(), 12, SIZE)
    m.update(fake[:1], real)
    assert math.isnan(m.compute()["fid"])
    with pytest.raises(ValueError, match=r"not \(10,\)"):
        FID(_network(), 10, SIZE)


def test_the_network_stays_frozen_in_eval_mode():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 14 * 14, 6))
    m = FID(net, 6, SIZE)
    before = net[1].running_mean.clone()
    m.update(_images(5, 32) * 3, _images(6, 32))
    assert torch.equal(net[1].running_mean, before) and not net.training
    assert not any(p.requires_grad for p in net.parameters())


def test_classifier_features_are_the_input_of_the_head_and_separate_real_from_fake():
    import zoo
    from zoo.data import load_dataset
    from zoo.metrics import classifier_features

    extractor, num_features = classifier_features("cnn.mnist")
    model = zoo.create_model("cnn.mnist", pretrained=True).eval()
    meta = model.pretrained_weights
    model.head = nn.Identity()
    images = load_dataset("mnist_5k").test.images  # uint8, 100 of each digit
    x = images[:50].float() / 255
    with torch.no_grad():
        expected = model((x - meta.mean[0]) / meta.std[0])
    assert num_features == expected.shape[1] == 128
    torch.testing.assert_close(extractor(x), expected)

    def fid(fake: torch.Tensor, real: torch.Tensor) -> float:
        m = FID(extractor, num_features, (1, 28, 28))
        m.update(fake, real)
        return m.compute()["fid"]

    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(images), generator=g)
    half_a, half_b = images[order[:200]], images[order[200:400]]
    noisy = (half_a.float() + 60 * torch.randn(half_a.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    ones = images[100:200].repeat(2, 1, 1, 1)  # the right pictures, one class only
    same, worse, collapsed = fid(half_a, half_b), fid(noisy, half_b), fid(ones, half_b)
    assert same < 0.1 * worse and same < 0.1 * collapsed  # measured: 7, 365 and 208
    with pytest.raises(ValueError, match="no classifier head"):
        classifier_features(zoo.create_model("autoencoder"))
