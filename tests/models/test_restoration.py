"""Restoration family: shapes at any size, residual learning, the bicubic skip, the receptive radius that
tiling relies on, and the colorization U-Net's colour convention. The generic suites (forward, backward,
save/load, ONNX export) cover the rest."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import build
from zoo.errors import ConfigError
from zoo.models.restoration import bicubic_upsample

SR = [("espcn_x2", 2), ("espcn_x4", 4), ("edsr_x2", 2), ("edsr_x4", 4)]


@pytest.mark.parametrize(("name", "scale"), [("dncnn", 1), *SR])
@pytest.mark.parametrize(("height", "width"), [(17, 23), (40, 31)])
def test_any_size_in_scale_times_the_size_out(name, scale, height, width):
    model = build(name).eval()
    x = torch.rand(2, 3, height, width)
    with torch.no_grad():
        assert model(x).shape == (2, 3, height * scale, width * scale)
    assert model.dynamic_size and model.scale == scale and model.size_multiple == 1


def test_dncnn_subtracts_the_noise_it_predicts_and_starts_as_the_identity():
    model = build("dncnn", depth=4, width=8).eval()
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x)  # zero-initialised last conv: nothing removed yet
        torch.nn.init.normal_(model.body[-1].weight, std=0.1)
        torch.testing.assert_close(model(x), x - model.noise(x))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(c.kernel_size == (3, 3) for c in convs)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 2  # none after the first conv and none on the output, as in the paper


@pytest.mark.parametrize(("name", "scale"), SR)
def test_super_resolution_starts_at_bicubic_and_learns_the_residual(name, scale):
    model = build(name).eval()
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(model(x), bicubic_upsample(x, scale))
        plain = build(name, skip="none").eval()
        assert plain(x).shape == (1, 3, 12 * scale, 10 * scale)
    shuffles = [m.upscale_factor for m in model.modules() if isinstance(m, torch.nn.PixelShuffle)]
    assert shuffles == ([scale] if name.startswith("espcn") else [2] * (scale // 2))
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules())


def test_bicubic_matches_pil_style_upsampling():
    x = torch.rand(1, 3, 8, 8)
    ref = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(bicubic_upsample(x, 2), ref)


@pytest.mark.parametrize(("name", "tight"), [("dncnn", True), ("espcn_x2", True), ("edsr_x4", False)])
def test_receptive_radius_bounds_what_an_output_pixel_sees(name, tight):
    """Tiling's premise: changing inputs farther than `receptive_radius` leaves a pixel unchanged (and for
    networks without convs after the upsampling, the bound is tight)."""
    torch.manual_seed(0)
    model = build(name).eval()
    for m in model.modules():  # zero-initialised output layers would hide any dependence
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.05)
    radius, scale = model.receptive_radius, model.scale
    size = 2 * radius + 12
    x = torch.rand(1, 3, size, size)
    far = x.clone()
    far[..., :, size // 2 + radius + 1 :] = torch.rand_like(far[..., :, size // 2 + radius + 1 :])
    near = x.clone()
    near[..., :, size // 2 + radius - 1 :] += 0.5
    with torch.no_grad():
        column = slice(size // 2 * scale, size // 2 * scale + 1)
        base = model(x)[..., column]
        torch.testing.assert_close(model(far)[..., column], base)
        assert not tight or not torch.allclose(model(near)[..., column], base)
    assert model.tile_overlap == radius


def test_colorization_unet_reads_lightness_and_starts_grey():
    model = build("colorization_unet").eval()
    x = torch.rand(2, 1, 40, 24)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 2, 40, 24)
    torch.testing.assert_close(out, torch.full_like(out, 0.5))  # ab = 0: the grey picture
    assert model.output_names == ("ab",) and model.size_multiple == 8 and model.tile_overlap == 32


def test_unet_denoiser_subtracts_the_noise_it_predicts_and_starts_as_the_identity():
    model = build("unet_denoiser", width=8).eval()
    x = torch.rand(2, 3, 40, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x)  # zero-initialised head: nothing removed yet
        torch.nn.init.normal_(model.head.weight, std=0.1)
        torch.testing.assert_close(model(x), x - model.noise(x))
    assert model.output_names == ("denoised",) and model.size_multiple == 8 and model.tile_overlap == 32
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # blind: no batch statistics


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("espcn_x2", {"skip": "nearest"}),
        ("edsr_x2", {"skip": "bilinear"}),
        ("dncnn", {"depth": 1}),
        ("unet_denoiser", {"num_classes": 5}),
    ],
)
def test_bad_arguments_are_refused(name, kwargs):
    with pytest.raises(ConfigError):
        build(name, **kwargs)


def test_only_supported_scales():
    from zoo.models.restoration import ESPCN

    with pytest.raises(ConfigError, match="scale=5"):
        ESPCN(scale=5)


def test_geometric_self_ensemble_undoes_each_symmetry():
    """An equivariant function comes back unchanged (non-square input too); a translation-variant one is
    averaged over the 8 symmetries of the square."""
    from zoo.models.restoration import geometric_self_ensemble

    x = torch.rand(2, 3, 5, 9)
    torch.testing.assert_close(geometric_self_ensemble(lambda t: t * 2 + 1, x), x * 2 + 1)
    corner = torch.zeros(1, 1, 4, 4)
    corner[..., 0, 0] = 1.0
    out = geometric_self_ensemble(lambda t: t * 0 + corner, torch.zeros(1, 1, 4, 4))
    expected = torch.zeros(1, 1, 4, 4)
    expected[..., 0, 0] = expected[..., 0, -1] = expected[..., -1, 0] = expected[..., -1, -1] = 0.25
    torch.testing.assert_close(out, expected)


def test_pretrained_denoisers_take_self_ensemble_but_no_other_new_argument():
    """``self_ensemble`` changes how a weight runs, not its parameters: any denoiser weight takes it."""
    import zoo

    if "dncnn.photos" not in zoo.list_models(pretrained=True):
        pytest.skip("dncnn.photos is not published in this checkout")
    model = zoo.create_model("dncnn.photos", pretrained=True, self_ensemble=True)
    assert model.self_ensemble
    with pytest.raises(ConfigError, match="self_ensemble"):  # the message names what can be changed
        zoo.create_model("dncnn.photos", pretrained=True, depth=3)


def test_self_ensemble_exports_to_onnx_with_dynamic_sizes(tmp_path):
    """The 8 symmetries export as transposes and flips: a non-square input runs in onnxruntime as in torch."""
    import numpy as np

    ort = pytest.importorskip("onnxruntime")
    from export.onnx import to_onnx

    torch.manual_seed(0)
    model = build("unet_denoiser", width=4, self_ensemble=True).eval()
    for m in model.modules():  # the zero-initialised head would make every symmetry agree trivially
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.1)
    to_onnx(model, tmp_path / "se.onnx")
    session = ort.InferenceSession(str(tmp_path / "se.onnx"))
    x = np.random.default_rng(0).random((1, 3, 24, 40), dtype=np.float32)
    (y,) = session.run(None, {session.get_inputs()[0].name: x})
    with torch.no_grad():
        np.testing.assert_allclose(y, model(torch.from_numpy(x)).numpy(), atol=1e-5)
