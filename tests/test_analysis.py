"""zoo.analysis: the formulas against hand-computed cases, the per-tensor receptive-field tracking against
the gradient (which input pixels really reach an output), FLOPs against FlopCounterMode and hand counts,
and `summary` on every registered model and through the CLI."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import zoo
from tests.helpers import build, flatten_outputs
from zoo import analysis
from zoo.analysis import GLOBAL, ModelSummary, conv_output_size, receptive_field, summary
from zoo.cli import main
from zoo.errors import ConfigError

# --------------------------------------------------------------------------------------------------
# conv_output_size
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        ((28, 3), {"padding": 1}, 28),  # "same" 3x3
        ((28, 3), {"stride": 2, "padding": 1}, 14),
        ((7, 3), {"stride": 2, "padding": 1}, 4),  # (7 + 2 - 3) // 2 + 1
        ((224, 7), {"stride": 2, "padding": 3}, 112),  # ResNet stem conv
        ((112, 3), {"stride": 2, "padding": 1}, 56),  # ResNet stem max-pool
        ((28, 5), {}, 24),  # valid 5x5
        ((32, 3), {"dilation": 2}, 28),  # extent 5
        ((32, 3), {"padding": 2, "dilation": 2}, 32),
        ((5, 2), {"stride": 2}, 2),  # floor drops the last pixel
        ((5, 2), {"stride": 2, "ceil_mode": True}, 3),  # ceil keeps a half window
        ((5, 3), {"stride": 3, "padding": 1, "ceil_mode": True}, 2),  # a window starting in padding: dropped
        ((1, 1), {}, 1),
    ],
)
def test_conv_output_size_hand_cases(args, kwargs, expected):
    assert conv_output_size(*args, **kwargs) == expected


def test_conv_output_size_agrees_with_torch_conv_and_pooling():
    # Meta tensors: torch's own shape rules, without computing anything.
    checked = 0
    for n in range(1, 10):
        for k in (1, 2, 3, 5):
            for s in (1, 2, 3):
                for d in (1, 2):
                    for p in range(k // 2 + 1):
                        x, w = torch.empty(1, 1, n, device="meta"), torch.empty(1, 1, k, device="meta")
                        try:
                            expected = F.conv1d(x, w, stride=s, padding=p, dilation=d).shape[-1]
                        except RuntimeError:
                            with pytest.raises(ValueError):
                                conv_output_size(n, k, s, p, d)
                            continue
                        assert conv_output_size(n, k, s, p, d) == expected, (n, k, s, p, d)
                        for ceil in (False, True):
                            pooled = F.max_pool1d(x, k, s, p, d, ceil_mode=ceil).shape[-1]
                            assert conv_output_size(n, k, s, p, d, ceil_mode=ceil) == pooled, (n, k, s, p, d)
                        checked += 1
    assert checked > 200


def test_conv_output_size_rejects_impossible_arguments():
    with pytest.raises(ValueError, match="smaller than the kernel"):
        conv_output_size(2, 5)
    with pytest.raises(ValueError, match="stride"):
        conv_output_size(8, 3, stride=0)


# --------------------------------------------------------------------------------------------------
# receptive_field
# --------------------------------------------------------------------------------------------------

# The path through torchvision's resnet18 that sees furthest: the 7x7/2 stem conv, the 3x3/2 max-pool,
# then the two 3x3 convs of each of the 8 basic blocks, the first conv of stages 2-4 with stride 2.
RESNET18_PATH = [(7, 2), (3, 2)] + [(3, 1)] * 4 + ([(3, 2)] + [(3, 1)] * 3) * 3


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ([], (1, 1)),
        ([(3, 1)] * 3, (7, 1)),  # 1 + 2 + 2 + 2
        ([(7, 2), (3, 2)], (11, 4)),  # 1 + 6*1, then + 2*2
        ([(2, 2)] * 3, (8, 8)),  # non-overlapping 2x2 tiles: 1 + 1 + 2 + 4
        ([(3, 1, 1), (3, 1, 2), (3, 1, 4)], (15, 1)),  # dilations 1, 2, 4: 1 + 2 + 4 + 8
        ([(3, 2, 2), (3, 1)], (9, 2)),  # 1 + 2*2*1 = 5, then + 2*1*2
        ([(5, 1, 3)], (13, 1)),  # a dilated 5-tap kernel spans 1 + 4*3
        (RESNET18_PATH, (435, 32)),  # step by step in test_resnet18_path_by_hand
    ],
)
def test_receptive_field_hand_cases(layers, expected):
    assert receptive_field(layers) == expected


def test_resnet18_path_by_hand():
    # stem 7 (jump 2) -> pool 11 (jump 4) -> layer1 +4*2*4 = 43 -> layer2 +2*4 then +3*2*8 = 99 (jump 8)
    # -> layer3 +2*8 then +3*2*16 = 211 (jump 16) -> layer4 +2*16 then +3*2*32 = 435 (jump 32)
    assert receptive_field(RESNET18_PATH[:6]) == (43, 4)
    assert receptive_field(RESNET18_PATH[:10]) == (99, 8)
    assert receptive_field(RESNET18_PATH[:14]) == (211, 16)


def test_receptive_field_rejects_bad_layers():
    with pytest.raises(ValueError, match="kernel, stride and dilation"):
        receptive_field([(3, 0)])


# --------------------------------------------------------------------------------------------------
# Per-tensor tracking, checked against the gradient
# --------------------------------------------------------------------------------------------------


class Fn(nn.Module):
    """A leaf module computing ``fn(x, *weights)``: summary gives it one row, for fn's output."""

    def __init__(self, fn, *weight_shapes):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        for i, shape in enumerate(weight_shapes):
            self.register_buffer(f"w{i}", torch.randn(*shape, generator=generator))
        self.fn = fn

    def forward(self, x):
        return self.fn(x, *self.buffers())


def measured_rf(
    module: nn.Module, size: int, channels: int = 2, dtype: torch.dtype = torch.float64
) -> tuple[int, int]:
    """The extent (h, w) of the input pixels with a non-zero gradient to one output position.

    The largest over the 2x2 output positions at the centre: away from the borders, and covering both
    parities where up-sampling gives neighbouring positions different fields.
    """
    module = module.to(dtype)
    x = torch.randn(1, channels, size, size, dtype=dtype, requires_grad=True)
    y = module(x)
    best = [0, 0]
    for i in (y.shape[-2] // 2 - 1, y.shape[-2] // 2):
        for j in (y.shape[-1] // 2 - 1, y.shape[-1] // 2):
            (grad,) = torch.autograd.grad(y[0, :, i, j].sum(), x, retain_graph=True)
            reached = grad[0].abs().sum(0) != 0
            for axis in range(2):
                hit = reached.any(dim=1 - axis).nonzero().flatten()
                best[axis] = max(best[axis], int(hit[-1] - hit[0] + 1))
    return tuple(best)


def conv(x, w, **kw):
    return F.conv2d(x, w, padding=tuple(k // 2 * kw.get("dilation", 1) for k in w.shape[-2:]), **kw)


# (fn, weight shapes, input size, expected receptive field (h, w), expected jump (h, w))
TRACKED_CASES = {
    "three_3x3": (lambda x, a, b, c: conv(conv(conv(x, a), b), c), [(2, 2, 3, 3)] * 3, 24, (7, 7), (1, 1)),
    "dilated": (
        lambda x, a, b: conv(conv(x, a, dilation=2), b, dilation=4),
        [(2, 2, 3, 3)] * 2,
        32,
        (13, 13),
        (1, 1),
    ),
    "asymmetric": (lambda x, a, b: conv(conv(x, a), b), [(2, 2, 1, 5), (2, 2, 3, 1)], 16, (3, 5), (1, 1)),
    "strided_then_3x3": (
        lambda x, a, b: conv(F.conv2d(x, a, stride=2, padding=1), b),
        [(2, 2, 3, 3)] * 2,
        24,
        (7, 7),  # 3 (jump 2), then + 2*2
        (2, 2),
    ),
    "avgpool_then_3x3": (lambda x, a: conv(F.avg_pool2d(x, 2), a), [(2, 2, 3, 3)], 24, (6, 6), (2, 2)),
    "conv_transpose": (
        # 3x3/2 (rf 3, jump 2), then a 4x4/2 transposed conv: each output sees 2 adjacent inputs
        lambda x, a, b: F.conv_transpose2d(F.conv2d(x, a, stride=2, padding=1), b, stride=2, padding=1),
        [(2, 2, 3, 3), (2, 2, 4, 4)],
        16,
        (5, 5),
        (1, 1),
    ),
    "nearest_upsample": (
        lambda x, a, b: conv(F.interpolate(F.conv2d(x, a, stride=2, padding=1), scale_factor=2), b),
        [(2, 2, 3, 3)] * 2,
        16,
        (5, 5),  # 3 (jump 2) -> nearest x2: 3 (jump 1) -> 3x3: + 2*1
        (1, 1),
    ),
    "bilinear_upsample": (
        lambda x, a: F.interpolate(F.conv2d(x, a, stride=2, padding=1), scale_factor=2, mode="bilinear"),
        [(2, 2, 3, 3)],
        16,
        (5, 5),  # two taps, one jump (2) apart
        (1, 1),
    ),
    "pixel_shuffle": (
        lambda x, a: F.pixel_shuffle(conv(F.pixel_unshuffle(x, 2), a), 2),
        [(8, 8, 3, 3)],
        16,
        (6, 6),  # unshuffle: 2x2 blocks (jump 2), 3x3 of blocks: 2 + 2*2
        (1, 1),
    ),
    "adaptive_pool": (
        lambda x: F.adaptive_avg_pool2d(x, 3),  # 8 -> 3: windows [0, 3), [2, 6), [5, 8)
        [],
        8,
        (4, 4),
        (8 / 3, 8 / 3),
    ),
    "branches_concatenated": (
        lambda x, a, b, c, d: conv(torch.cat([conv(conv(x, a), b), conv(x, c)], dim=1), d),
        [(2, 2, 3, 3), (2, 2, 3, 3), (2, 2, 7, 7), (2, 4, 1, 1)],
        20,
        (7, 7),  # max(5, 7), then a 1x1
        (1, 1),
    ),
    "residual_with_strided_shortcut_first": (
        # as in ResNet's BasicBlock: the 1x1/2 shortcut runs before the 3x3/2 and 3x3 of the main path
        lambda x, a, b, c: F.conv2d(x, c, stride=2) + conv(F.conv2d(x, a, stride=2, padding=1), b),
        [(2, 2, 3, 3), (2, 2, 3, 3), (2, 2, 1, 1)],
        24,
        (7, 7),
        (2, 2),
    ),
    "elementwise_max": (
        lambda x, a, b: torch.max(conv(x, a), conv(x, b)),
        [(2, 2, 3, 3), (2, 2, 3, 3)],
        12,
        (3, 3),
        (1, 1),
    ),
    "channel_softmax_and_view": (
        # position-wise: softmax and mean over channels, and a reshape that keeps H and W
        lambda x, a: conv(x, a).log_softmax(1).mean(1, keepdim=True).view(1, 1, 1, 12, 12).squeeze(2),
        [(2, 2, 3, 3)],
        12,
        (3, 3),
        (1, 1),
    ),
}


@pytest.mark.parametrize("case", list(TRACKED_CASES))
def test_tracked_receptive_field_matches_hand_value_and_gradient(case):
    fn, shapes, size, rf, jump = TRACKED_CASES[case]
    module = Fn(fn, *shapes)
    row = summary(module, input_size=(2, size, size)).layers[-1]
    assert row.receptive_field == rf
    assert row.jump == pytest.approx(jump)
    assert measured_rf(module, size) == rf


def test_in_place_write_into_a_slice_carries_the_field_to_the_base():
    def fn(x, a):
        canvas = torch.zeros(1, 2, 16, 16)
        canvas[:, :, 2:14, 2:14] = conv(conv(x, a), a)
        return canvas * 2

    row = summary(Fn(fn, (2, 2, 3, 3)), input_size=(2, 12, 12)).layers[-1]
    assert row.receptive_field == (5, 5)


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: x * x.mean((2, 3), keepdim=True),  # squeeze-and-excitation style gating
        lambda x: x.amax(-1),
        lambda x: x.flatten(1),
        lambda x: x.flatten(2).transpose(1, 2),  # to tokens, for attention
        lambda x: F.adaptive_avg_pool2d(x, 1),
        lambda x: x.softmax(-1),  # spatial softmax
        lambda x: x.sum(),
        lambda x: F.linear(x, torch.ones(3, x.shape[-1])),  # mixes along the width
        lambda x: torch.ones(8, 8) @ x,  # mixes along the height; the image is the second argument
    ],
    ids=[
        "se_gate",
        "amax_width",
        "flatten",
        "tokens",
        "global_pool",
        "spatial_softmax",
        "sum",
        "linear",
        "matmul_from_the_left",
    ],
)
def test_ops_mixing_positions_make_the_field_global(fn):
    row = summary(Fn(fn), input_size=(2, 8, 8)).layers[-1]
    assert row.receptive_field == GLOBAL
    assert row.jump is None


def test_inputs_without_image_layout_have_no_receptive_field():
    per_step = nn.Sequential(nn.Linear(6, 8), nn.ReLU())
    result = summary(per_step, inputs=torch.randn(1, 5, 6))  # (batch, time, features)
    assert [r.receptive_field for r in result.layers] == [None, None]
    assert [r.jump for r in result.layers] == [None, None]
    lines = str(result).splitlines()
    assert lines[3].split()[3:5] == ["-", "-"]


# --------------------------------------------------------------------------------------------------
# ResNet: branching done right
# --------------------------------------------------------------------------------------------------


def rows_by_name(result: ModelSummary) -> dict[str, object]:
    return {r.name if r.call == 1 else f"{r.name}#{r.call}": r for r in result.layers}


def test_resnet18_receptive_field_matches_the_analytic_value():
    result = summary(build("resnet18"), input_size=(3, 64, 64))
    rows = rows_by_name(result)
    with torch.device("meta"):  # shapes are all a summary needs: a meta model gives the same table
        assert rows_by_name(summary(build("resnet18"), input_size=(3, 64, 64))) == rows
    # layer4's output (its last ReLU) sees 435 pixels: the path through every 3x3 conv, by hand above.
    assert rows["layer4.1.relu#2"].receptive_field == (435, 435)
    assert rows["layer4.1.relu#2"].jump == (32.0, 32.0)
    assert rows["maxpool"].receptive_field == (11, 11)
    assert rows["layer1.1.relu#2"].receptive_field == (43, 43)
    # Each stage's 1x1/2 shortcut sees only what the block input saw, and must not inflate the block.
    assert rows["layer2.0.downsample.0"].receptive_field == (43, 43)
    assert rows["layer2.0.downsample.0"].jump == (8.0, 8.0)
    assert rows["layer2.0.relu#2"].receptive_field == (43 + 2 * 4 + 2 * 8,) * 2  # 3x3/2 then 3x3
    assert rows["layer4.0.downsample.0"].receptive_field == (211, 211)
    assert rows["avgpool"].receptive_field == GLOBAL
    assert rows["fc"].receptive_field == GLOBAL

    # Composing every conv and pool in execution order (shortcuts included) overestimates: the per-tensor
    # tracking is what gets 435.
    def first(v):
        return v if isinstance(v, int) else v[0]

    in_order = [
        (first(m.kernel_size), first(m.stride), first(m.dilation))
        for m in build("resnet18").modules()
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d))
    ]
    assert receptive_field(in_order)[0] > 435


def test_resnet18_summary_equals_torchvision_resnet18():
    torchvision = pytest.importorskip("torchvision")
    with torch.device("meta"):  # the same table as real tensors (checked above), at no cost
        ours = summary(build("resnet18"), input_size=(3, 64, 64))
        theirs = summary(torchvision.models.resnet18(), input_size=(3, 64, 64))
    # torchvision runs the shortcut last, the zoo first: compare the rows by name.
    assert rows_by_name(ours) == rows_by_name(theirs)
    assert theirs.model == "ResNet" and ours.model == "resnet18"


def test_resnet_receptive_field_agrees_with_the_gradient():
    model = build("resnet8_small", in_chans=1).eval()
    for module in list(model.modules()):
        if hasattr(module, "relu"):  # linear network: no gradient is cut by a ReLU
            module.relu = nn.Identity()
    layer4 = rows_by_name(summary(model, input_size=(1, 28, 28)))["layer4.0.bn2"]
    assert layer4.receptive_field == (49, 49)  # 3, 5, 7 | 9 (jump 2), 13 | 17 (4), 25 | 33 (8), 49
    features = nn.Sequential(
        *[getattr(model, n) for n in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")]
    )
    assert measured_rf(features, 72, channels=1, dtype=torch.float32) == (49, 49)


# --------------------------------------------------------------------------------------------------
# FLOPs and parameters
# --------------------------------------------------------------------------------------------------


def test_flops_follow_torch_counts_per_module_and_by_hand():
    model = build("resnet8_small", in_chans=1).eval()
    result = summary(model, input_size=(1, 28, 28))
    rows = rows_by_name(result)
    assert rows["conv1"].flops == 2 * (1 * 3 * 3) * 16 * 28 * 28  # 2 per multiply-add
    assert rows["fc"].flops == 2 * 128 * 1000
    assert rows["layer1.0.bn1"].flops == 0
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 1, 28, 28))
    per_module = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    assert result.total_flops == counter.get_total_flops()
    for row in result.layers:
        assert row.flops == per_module.get(f"ResNet.{row.name}", 0), row.name
    assert "2 per MAC" in str(result).splitlines()[1]


@pytest.mark.filterwarnings("ignore:TF32 acceleration")
def test_lstm_flops_match_torch_counting_its_decomposed_kernel():
    lstm = nn.LSTM(6, 8, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(1, 5, 6)
    result = summary(lstm, inputs=x)
    with torch.backends.mkldnn.flags(enabled=False), torch.no_grad(), FlopCounterMode(display=False) as c:
        lstm(x)  # without mkldnn, the LSTM runs as addmm's that the counter knows
    assert c.get_total_flops() > 0
    assert result.total_flops == c.get_total_flops()
    assert result.total_flops == 2 * 5 * 2 * (4 * 8 * (6 + 8) + 4 * 8 * (16 + 8))  # 2 per MAC, by hand


class Gated(nn.Module):
    """Owns a parameter it applies itself, a child it calls twice, and a child it never calls."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.scale = nn.Parameter(torch.ones(4, 4))
        self.unused = nn.Linear(4, 3)
        self.frozen = nn.Linear(4, 4).requires_grad_(False)

    def forward(self, x):
        return self.frozen(self.proj(self.proj(x)) @ self.scale)


def test_rows_add_up_to_the_totals():
    result = summary(Gated(), inputs=torch.randn(1, 4))
    rows = rows_by_name(result)
    assert rows["proj"].params == 20 and rows["proj#2"].params == 0  # counted once
    assert rows[""].params == 16  # the parent's own parameter
    assert rows[""].flops == 2 * 4 * 4  # the parent's own matmul, not its children's
    assert rows["proj"].flops == rows["proj#2"].flops == 2 * 4 * 4
    assert result.total_params == 20 + 16 + 15 + 20
    assert result.trainable_params == 20 + 16 + 15
    assert result.uncalled_params == 15
    assert sum(r.params for r in result.layers) + result.uncalled_params == result.total_params
    assert sum(r.flops for r in result.layers) == result.total_flops == 4 * 2 * 4 * 4
    text = str(result)
    assert (
        "proj (call 2)" in text and "(model)" in text and "15 of them in modules forward did not call" in text
    )


# --------------------------------------------------------------------------------------------------
# Every registered model
# --------------------------------------------------------------------------------------------------


def small_input_size(model: nn.Module) -> tuple[int, ...] | None:
    """The model's own input size, shrunk to 64x64 for ImageNet-size models that accept it."""
    size = tuple(model.input_size)
    if getattr(model, "dynamic_size", False) and len(size) == 3 and size[1] * size[2] > 64 * 64:
        return (size[0], 64, 64)
    return None  # the model's example inputs


def build_for_summary(name: str) -> nn.Module:
    """The model on the meta device when its forward runs there (no init or compute cost), else real."""
    with torch.device("meta"):
        model = build(name).eval()
    try:
        with torch.no_grad():
            model(*model.example_inputs(1))
    except (NotImplementedError, RuntimeError):  # a forward that needs values, e.g. data-dependent shapes
        model = build(name).eval()
    return model


@pytest.mark.parametrize("name", zoo.list_models())
def test_summary_runs_on_every_registered_model(name):
    model = build_for_summary(name)
    size = small_input_size(model)
    result = summary(model, input_size=size)
    assert result.layers, f"{name}: no rows"
    assert result.total_params == sum(p.numel() for p in model.parameters())
    assert result.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(r.params for r in result.layers) + result.uncalled_params == result.total_params
    assert sum(r.flops for r in result.layers) == result.total_flops
    device = next(model.parameters()).device
    inputs = model.example_inputs(1) if size is None else (torch.randn(1, *size, device=device),)
    with torch.no_grad():
        expected = [tuple(t.shape) for t in flatten_outputs(model(*inputs))]
    assert sorted(result.output_shapes) == sorted(expected)
    for row in result.layers:
        rf = row.receptive_field
        assert rf is None or rf == GLOBAL or (len(rf) == 2 and min(rf) >= 1), (name, row)
    json.dumps(result.to_dict())
    lines = str(result).splitlines()
    rules = [i for i, line in enumerate(lines) if set(line) == {"-", " "}]
    assert len(rules) == 2 and rules[1] - rules[0] - 1 == len(result.layers)
    assert f"params: {result.total_params:,} total" in lines[rules[1] + 1]


def test_summary_defaults_to_the_models_example_inputs_and_keeps_training_mode():
    model = build("resnet8_small").train()
    result = summary(model)
    assert result.input_shapes == ((1, *model.input_size),)
    assert model.training
    assert torch.is_grad_enabled()
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_a_failure_of_the_analysis_is_not_blamed_on_the_input(monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("a bug in a propagation rule")

    monkeypatch.setattr(analysis._FieldTracker, "_propagate", broken)
    model = build("resnet8_small")
    with pytest.raises(KeyError, match="a bug in a propagation rule"):
        summary(model)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_to_dict_is_plain_data():
    data = summary(build("resnet8_small", in_chans=1), input_size=(1, 28, 28)).to_dict()
    again = json.loads(json.dumps(data))
    assert again == data
    assert data["input_shapes"] == [[1, 1, 28, 28]] and data["output_shapes"] == [[1, 1000]]
    first, last = data["layers"][0], data["layers"][-1]
    assert first["name"] == "conv1" and first["receptive_field"] == [3, 3] and first["jump"] == [1.0, 1.0]
    assert last["receptive_field"] == "global" and last["jump"] is None
    assert data["flops_convention"].startswith("torch.utils.flop_counter: 2 per multiply-add")


def test_bad_inputs_raise_clear_errors():
    model = build("resnet8_small")
    with pytest.raises(ConfigError, match="not both"):
        summary(model, input_size=(3, 8, 8), inputs=torch.randn(1, 3, 8, 8))
    with pytest.raises(ConfigError, match=r"has 2 dims but resnet8_small takes 3 \(e.g. 3x32x32\)"):
        summary(model, input_size=(28, 28))
    with pytest.raises(ConfigError, match="positive ints"):
        summary(model, input_size=(3, 0, 8))
    with pytest.raises(
        ConfigError, match="resnet8_small cannot run on an input of shape 1x1x28x28: .*channels"
    ):
        summary(model, input_size=(1, 28, 28))  # built for 3 channels
    with pytest.raises(ConfigError, match="pass summary"):
        summary(nn.Linear(3, 4))


def test_integer_inputs_keep_their_dtype():
    class Tokens(nn.Module):
        input_size = (7,)

        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)

        def example_inputs(self, batch_size=2):
            return (torch.randint(0, 10, (batch_size, *self.input_size)),)

        def forward(self, tokens):
            return self.embed(tokens)

    result = summary(Tokens(), input_size=(12,))
    assert result.output_shapes == ((1, 12, 4),)
    assert result.layers[0].receptive_field is None


# --------------------------------------------------------------------------------------------------
# The CLI
# --------------------------------------------------------------------------------------------------


def test_cli_summary_prints_the_table(capsys):
    assert main(["summary", "resnet8_small", "--input", "1x28x28"]) == 0
    out = capsys.readouterr().out
    model = zoo.create_model("resnet8_small", in_chans=1)  # --input 1x... asks for a one-channel model
    total = sum(p.numel() for p in model.parameters())
    lines = out.splitlines()
    assert lines[0] == "resnet8_small: input 1x1x28x28 -> output 1x1000"
    assert lines[1].split()[:3] == ["layer", "type", "output"]
    rows = {line.split()[0]: line.split() for line in lines[3:] if line and not line.startswith("-")}
    assert rows["layer4.0.conv2"][2:5] == ["1x128x4x4", "49x49", "8x8"]  # 28 -> 14 -> 7 -> 4
    assert rows["fc"][1:5] == ["Linear", "1x1000", "global", "-"]
    assert f"params: {total:,} total" in out


@pytest.mark.parametrize(("value", "message"), [("28by28", "is not CxHxW"), ("0x28x28", "positive")])
def test_cli_summary_rejects_malformed_input_sizes(value, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["summary", "resnet8_small", "--input", value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_summary_reports_an_input_the_model_cannot_take(capsys):
    assert main(["summary", "resnet8_small", "--input", "1x28"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo summary: error: input_size 1x28 has 2 dims but resnet8_small takes 3")
