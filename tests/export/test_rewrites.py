"""Export rewrites: each is the same function as the layer it replaces, and only eligible layers change."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from export.rewrites import DepthwiseSumConv2d, PolyphaseBicubic, SubPixelConvTranspose2d, onnx_friendly
from tests.helpers import build


def _randomise_bn(bn: nn.BatchNorm2d, gen: torch.Generator) -> None:
    with torch.no_grad():
        bn.running_mean.normal_(generator=gen)
        bn.running_var.uniform_(0.5, 2.0, generator=gen)
        bn.weight.normal_(generator=gen)
        bn.bias.normal_(generator=gen)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "bias"),
    [(4, 2, 1, True), (4, 2, 1, False), (2, 2, 0, True), (6, 2, 2, True), (3, 3, 0, True), (9, 3, 3, False)],
    ids=str,
)
def test_sub_pixel_conv_transpose_equals_conv_transpose(kernel, stride, padding, bias):
    gen = torch.Generator().manual_seed(kernel * 10 + stride)
    deconv = nn.ConvTranspose2d(5, 7, kernel, stride, padding, bias=bias)
    if not SubPixelConvTranspose2d.supports(deconv):
        pytest.fail(f"{deconv} should be supported")
    x = torch.randn(3, 5, 6, 9, generator=gen)
    with torch.no_grad():
        want = deconv(x)
        got = SubPixelConvTranspose2d(deconv)(x)
    assert got.shape == want.shape == (3, 7, 6 * stride, 9 * stride)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "deconv",
    [
        nn.ConvTranspose2d(4, 4, 3, 2, 1, output_padding=1),  # upsamples, but unevenly tapped phases
        nn.ConvTranspose2d(4, 4, 4, 2, 0),  # output 2H + 2, not 2H
        nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=2),
        nn.ConvTranspose2d(4, 4, 4, 1, 0),  # stride 1: already a convolution
        nn.ConvTranspose2d(4, 4, (4, 2), (2, 1), (1, 0)),
    ],
    ids=str,
)
def test_other_conv_transposes_are_left_alone(deconv):
    assert not SubPixelConvTranspose2d.supports(deconv)
    model = nn.Sequential(deconv, nn.ReLU())
    assert onnx_friendly(model) == (model, [])


def test_batchnorm_is_folded_and_the_activation_moved_inside():
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ConvTranspose2d(8, 6, 4, 2, 1, bias=False),
        nn.BatchNorm2d(6),
        nn.LeakyReLU(0.1),
        nn.Conv2d(6, 1, 3, padding=1),
        nn.Sigmoid(),
    ).eval()
    _randomise_bn(model[2], gen)
    x = torch.randn(2, 3, 7, 5, generator=gen)
    friendly, applied = onnx_friendly(model)
    assert friendly is not model and isinstance(model[1], nn.ConvTranspose2d)  # the original is untouched
    assert [type(m).__name__ for m in friendly] == [
        "Conv2d",
        "SubPixelConvTranspose2d",
        "Identity",
        "Identity",
        "DepthwiseSumConv2d",
        "Sigmoid",
    ]
    assert isinstance(friendly[1].act, nn.LeakyReLU)
    assert len(applied) == 3 and "BatchNorm2d folded" in applied[0] and "with the LeakyReLU" in applied[1]
    with torch.no_grad():
        torch.testing.assert_close(friendly(x), model(x), atol=1e-5, rtol=1e-5)


def test_a_one_channel_conv_is_a_depthwise_conv_and_a_sum():
    gen = torch.Generator().manual_seed(1)
    for conv in (nn.Conv2d(6, 1, 3, padding=1), nn.Conv2d(6, 1, 5, stride=2, padding=2, bias=False)):
        x = torch.randn(2, 6, 11, 10, generator=gen)
        with torch.no_grad():
            torch.testing.assert_close(DepthwiseSumConv2d(conv)(x), conv(x), atol=1e-5, rtol=1e-5)
    for conv in (nn.Conv2d(6, 1, 1), nn.Conv2d(6, 2, 3), nn.Conv2d(1, 1, 3)):
        assert not DepthwiseSumConv2d.supports(conv)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_polyphase_bicubic_is_torchs_bicubic(scale):
    x = torch.rand(2, 3, 17, 13, generator=torch.Generator().manual_seed(scale))
    expected = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    torch.testing.assert_close(PolyphaseBicubic(scale, 3)(x), expected, atol=2e-6, rtol=0)


def test_super_resolution_exports_bicubic_without_cubic_resize(tmp_path):
    from export.onnx import to_onnx

    model = build("espcn_x4", widths=(8, 8))
    torch.nn.init.normal_(model.body[-1].weight, std=0.1)  # a nonzero residual beside the bicubic skip
    result = to_onnx(model, tmp_path / "sr.onnx")
    ops = {node.op_type for node in onnx.load(str(result.path)).graph.node}
    assert "Resize" not in ops and "DepthToSpace" in ops
    assert any("polyphase" in line for line in result.graph("model").metadata.extra["rewrites"])
    assert result.report.ok and result.report.max_abs < 1e-4
    assert type(model.bicubic).__name__ == "BicubicUpsample"  # the model itself is never changed


def test_a_model_without_eligible_layers_is_returned_as_is():
    model = build("resnet8_small")
    assert onnx_friendly(model) == (model, [])


def test_to_onnx_records_the_rewrites_and_validates_against_the_original(tmp_path):
    from export.onnx import to_onnx

    model = build("autoencoder")
    result = to_onnx(model, tmp_path / "ae.onnx")
    ops = {node.op_type for node in onnx.load(str(result.path)).graph.node}
    assert "ConvTranspose" not in ops and "DepthToSpace" in ops
    rewrites = result.graph("model").metadata.extra["rewrites"]
    assert any("sub-pixel" in line for line in rewrites), rewrites
    assert result.report.ok and result.report.max_abs < 1e-4

    plain = to_onnx(model, tmp_path / "plain.onnx", rewrite=False)
    assert "ConvTranspose" in {node.op_type for node in onnx.load(str(plain.path)).graph.node}
    assert "rewrites" not in plain.graph("model").metadata.extra
    assert isinstance(model.decoder[3][0], nn.ConvTranspose2d)  # the model itself is never changed


def test_cli_lists_the_rewrites_and_no_rewrite_turns_them_off(tmp_path, capsys):
    import zoo
    from zoo.cli import main

    folder = zoo.save_pretrained(build("autoencoder"), tmp_path / "deconv-ae")  # transposed-conv decoder
    assert main(["export", str(folder), "--out", str(tmp_path / "a"), "--no-dynamic"]) == 0
    printed = capsys.readouterr().out
    assert "rewritten for onnxruntime: decoder.3.1: BatchNorm2d folded" in printed
    assert "rewritten for onnxruntime: encoder." not in printed  # the encoder has nothing to rewrite
    assert main(["export", str(folder), "--out", str(tmp_path / "b"), "--no-dynamic", "--no-rewrite"]) == 0
    assert "rewritten" not in capsys.readouterr().out
