"""The tracking-by-colorization embedder: its grid, its options' errors, and translation equivariance (what lets
attention follow a moving digit)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import build
from zoo.errors import ConfigError


@pytest.mark.parametrize(("stride", "size", "grid"), [(2, 48, 24), (2, 33, 17), (4, 48, 12), (1, 20, 20)])
def test_embeddings_live_on_the_stride_grid(stride, size, grid):
    model = build("colorization_tracker", stride=stride).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 1, size, size))
    assert out.shape == (3, model.embed_dim, grid, grid)


def test_bad_options_say_what_is_expected():
    with pytest.raises(ConfigError, match="stride must be 1, 2 or 4"):
        build("colorization_tracker", stride=3)
    with pytest.raises(ConfigError, match="at least one block"):
        build("colorization_tracker", dilations=())


def test_a_shifted_frame_gives_shifted_embeddings_inside():
    model = build("colorization_tracker").eval()
    frame = torch.zeros(1, 1, 48, 48)
    frame[..., 10:24, 12:22] = torch.rand(14, 10, generator=torch.Generator().manual_seed(0))
    shifted = torch.roll(frame, shifts=(4, 6), dims=(2, 3))  # 2 and 3 cells of the stride-2 grid
    with torch.no_grad():
        a, b = model(frame), model(shifted)
    # Away from the borders (zero padding) the embedding moves with the content, cell for cell.
    torch.testing.assert_close(b[..., 8:16, 9:17], a[..., 6:14, 6:14], atol=1e-4, rtol=1e-4)
