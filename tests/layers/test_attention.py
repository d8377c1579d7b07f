import pytest
import torch

from zoo.factory import create_model
from zoo.layers import ResidualAttentionBlock, SpatialSelfAttention


def test_spatial_attention_starts_as_the_identity_at_any_size():
    torch.manual_seed(0)
    block = SpatialSelfAttention(32, blocks=2).eval()
    for size in ((8, 8), (5, 11)):
        x = torch.randn(2, 32, *size)
        assert torch.equal(block(x), x)  # zero-initialised residual branches: pretrained features pass


def test_spatial_attention_mixes_every_position():
    torch.manual_seed(0)
    block = SpatialSelfAttention(16, blocks=1, heads=2).eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(1, 16, 6, 6, requires_grad=True)
    block(x)[0, :, 0, 0].sum().backward()
    # The top-left output depends on the bottom-right input: a 3x3 convolution alone could not reach it.
    assert x.grad[0, :, 5, 5].abs().sum() > 0
    assert block(torch.randn(3, 16, 4, 7)).shape == (3, 16, 4, 7)


def test_residual_attention_block_matches_multihead_attention():
    torch.manual_seed(0)
    block = ResidualAttentionBlock(8, 2, mlp_ratio=2.0).eval()
    x = torch.randn(2, 5, 8)
    y = block.ln_1(x)
    expected = x + block.attn(y, y, y, need_weights=False)[0]
    expected = expected + block.mlp(block.ln_2(expected))
    assert torch.allclose(block(x), expected, atol=1e-6)


@pytest.mark.parametrize("blocks", [0, 1])
def test_unet_bottleneck_attention(blocks):
    model = create_model("unet_resnet8_small", bottleneck_attention=blocks).eval()
    assert (model.bottleneck is None) == (blocks == 0)
    # No attention asked, no new state_dict keys: weights trained without it still load strictly.
    assert any(k.startswith("bottleneck.") for k in model.state_dict()) == bool(blocks)
    assert model(torch.randn(1, 3, 48, 40)).shape == (1, 11, 48, 40)
