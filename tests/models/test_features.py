"""Backbone features (``features_only=True``), parametrised over the registry.

A model is in the feature suites when it declares feature levels (``feature_info``), never by family name;
which models do is read from a build on the meta device, which costs neither memory nor initialisation.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FeaturePyramidNetwork

import zoo
from tests.helpers import build
from zoo.errors import ConfigError
from zoo.models.base import ZooModel
from zoo.models.features import FeatureExtractor, FeatureInfo
from zoo.registry import parse_model_name

# Above this side, tests run dynamic-size models at it: resnet152 at 224 px would dominate the suite.
MAX_SIDE = 64
TORCHVISION_NAMES = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


def _declares_levels(arch: str) -> bool:
    with torch.device("meta"):
        return bool(zoo.create_model(arch).feature_info)


ALL_MODELS = zoo.list_models()
FEATURE_MODELS = [name for name in ALL_MODELS if _declares_levels(name)]
PLAIN_MODELS = [name for name in ALL_MODELS if name not in FEATURE_MODELS]
FEATURE_WEIGHTS = [w for w in zoo.list_models(pretrained=True) if parse_model_name(w)[0] in FEATURE_MODELS]


@pytest.fixture(scope="module")
def full_model():
    """Fresh full models (seed 0, eval), built once per name for this module: resnet152 takes seconds."""
    cache: dict[str, nn.Module] = {}

    def get(name: str) -> nn.Module:
        if name not in cache:
            cache[name] = build(name).eval()
        return cache[name]

    yield get
    cache.clear()


def _test_input(model: nn.Module, batch_size: int = 2, size: tuple[int, int] | None = None) -> torch.Tensor:
    channels, height, width = model.input_size
    if size is None:
        size = (height, width) if not model.dynamic_size else (min(height, MAX_SIDE), min(width, MAX_SIDE))
    return torch.randn(batch_size, channels, *size, generator=torch.Generator().manual_seed(0))


def _capture_levels(model: nn.Module, names: list[str], x: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of the modules ``names`` while the full model runs its own forward (head included)."""
    captured: dict[str, torch.Tensor] = {}
    handles = [
        # A clone: a later in-place op must not change what the full model computed at that point.
        model.get_submodule(n).register_forward_hook(
            lambda _m, _i, out, n=n: captured.setdefault(n, out.clone())
        )
        for n in names
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return [captured[n] for n in names]


def _assert_sizes_match_reductions(features, info: FeatureInfo, x: torch.Tensor, name: str) -> None:
    height, width = x.shape[-2:]
    assert len(features) == len(info)
    for feature, channels, reduction, module in zip(
        features, info.channels(), info.reduction(), info.module_name()
    ):
        assert feature.ndim == 4 and feature.shape[:2] == (x.shape[0], channels), f"{name}:{module}"
        # Pooling floors odd sizes, padded strided convs round up: either is the nominal reduction.
        for side, actual in ((height, feature.shape[-2]), (width, feature.shape[-1])):
            assert actual in (side // reduction, -(-side // reduction)), (
                f"{name}:{module}: side {actual} from {side} is not reduction {reduction}"
            )


@pytest.mark.parametrize("name", FEATURE_MODELS)
def test_levels_match_feature_info(name, full_model):
    extractor = FeatureExtractor(full_model(name))
    info = extractor.feature_info
    assert info.reduction() == sorted(info.reduction()), "levels go shallow to deep"
    assert extractor.out_channels == info.channels()[-1]
    sizes = [None]
    if extractor.dynamic_size:
        side = min(extractor.input_size[-1], MAX_SIDE)
        sizes.append((side + 16, side + 8))  # larger and not square
    for size in sizes:
        x = _test_input(extractor, batch_size=1, size=size)
        with torch.no_grad():
            features = extractor(x)
        assert isinstance(features, list)
        _assert_sizes_match_reductions(features, info, x, name)


@pytest.mark.parametrize("name", FEATURE_MODELS)
def test_levels_equal_the_full_models_activations(name, full_model):
    model = full_model(name)
    names = model.feature_info.module_name()
    x = _test_input(model, batch_size=1)
    expected = _capture_levels(model, names, x)
    with torch.no_grad():
        reference = model.forward_features(x) if hasattr(model, "forward_features") else None
    full_keys = model.state_dict()

    extractor = FeatureExtractor(model)
    with torch.no_grad():
        features = extractor(x)
    for module, got, want in zip(names, features, expected):
        assert torch.equal(got, want), f"{name}: level '{module}' differs from the full model's"
    if reference is not None:
        assert torch.equal(features[-1], reference), f"{name}: forward_features is not the deepest level"
    # The head is dropped; what is kept keeps its parameter names and values.
    kept = extractor.state_dict()
    assert set(kept) < set(full_keys)
    assert all(torch.equal(kept[k], full_keys[k]) for k in kept)
    if model.classifier:
        assert not any(k.startswith(model.classifier + ".") for k in kept)


@pytest.mark.parametrize("weight", FEATURE_WEIGHTS)
def test_pretrained_features_load_strictly_and_equal_the_full_model(weight):
    full = zoo.create_model(weight, pretrained=True).eval()
    extractor = zoo.create_model(weight, pretrained=True, features_only=True).eval()
    trained = full.state_dict()
    kept = extractor.state_dict()
    # Loaded strictly into the full model (create_model refuses anything else), then cut: same tensors.
    assert set(kept) < set(trained) and all(torch.equal(kept[k], trained[k]) for k in kept)
    x = _test_input(full)
    expected = _capture_levels(full, full.feature_info.module_name(), x)
    with torch.no_grad():
        features = extractor(x)
    assert all(torch.equal(a, b) for a, b in zip(features, expected))
    meta = extractor.pretrained_weights
    assert meta.mean == full.pretrained_weights.mean and meta.labels == () and not meta.metrics


def test_features_only_is_not_a_builder_argument_of_the_weight():
    # Adaptations still work, and contradictions are still refused, with features_only=True.
    rgb = zoo.create_model("resnet8_small.mnist", pretrained=True, features_only=True, in_chans=3)
    assert rgb.conv1.weight.shape[1] == 3
    with pytest.raises(ConfigError, match="contradicts weight 'resnet8_small.mnist'"):
        zoo.create_model("resnet8_small.mnist", pretrained=True, features_only=True, widths=(8, 16, 32, 64))


def test_out_indices_select_levels_shallow_to_deep():
    torch.manual_seed(0)
    model = zoo.create_model("resnet8_small").eval()
    x = torch.randn(2, 3, 32, 32)
    every = _capture_levels(model, model.feature_info.module_name(), x)
    cases = {(1, 3): [1, 3], (3, 1): [1, 3], (-1,): [4], (0, -1): [0, 4], (-4, 2): [1, 2]}
    for out_indices, positions in cases.items():
        extractor = FeatureExtractor(model, out_indices).eval()
        assert extractor.feature_info.get("index") == positions
        assert extractor.feature_info.module_name() == [f"layer{p}" if p else "relu" for p in positions]
        with torch.no_grad():
            features = extractor(x)
        assert [f.shape for f in features] == [every[p].shape for p in positions]
        assert all(torch.equal(f, every[p]) for f, p in zip(features, positions))
    # Only what the deepest requested level needs is kept.
    shallow = FeatureExtractor(model, (1,))
    assert [n for n, _ in shallow.named_children()] == ["conv1", "bn1", "relu", "maxpool", "layer1"]


def test_return_dict_keys_by_module_name():
    extractor = build("cnn", features_only=True, out_indices=(1, -1), return_dict=True).eval()
    with torch.no_grad():
        features = extractor(torch.randn(2, 1, 28, 28))
    assert isinstance(extractor, FeatureExtractor)
    assert isinstance(features, OrderedDict) and list(features) == ["stages.0", "stages.2"]
    assert [f.shape[1] for f in features.values()] == extractor.feature_info.channels() == [32, 128]


@pytest.mark.parametrize(
    ("out_indices", "message"),
    [
        ((5,), r"level 5 does not exist\. 'resnet8_small' has 5 feature levels, 0\.\.4 \(or -5\.\.-1"),
        ((-6,), "level -6 does not exist"),
        ((1, -4), "names a level twice"),
        ((), "selects no level"),
        (2, r"not a sequence of levels: pass e\.g\. \(1,\)"),
        (("layer1",), "'layer1' is not an int"),
    ],
)
def test_invalid_out_indices_name_the_valid_levels(out_indices, message):
    with pytest.raises(ConfigError, match=message) as err:
        zoo.create_model("resnet8_small", features_only=True, out_indices=out_indices)
    assert "0: relu (16 ch, /1), 1: layer1 (16 ch, /1)" in str(err.value)
    assert "4: layer4 (128 ch, /8)" in str(err.value)


def test_out_indices_without_features_only_is_refused():
    with pytest.raises(ConfigError, match="pass them with features_only=True"):
        zoo.create_model("resnet8_small", out_indices=(1,))


@pytest.mark.parametrize("name", PLAIN_MODELS)
def test_models_without_levels_say_which_families_have_them(name):
    families = sorted({zoo.model_info(n)["family"] for n in FEATURE_MODELS})
    with pytest.raises(ConfigError, match=f"'{name}' declares no feature levels") as err:
        zoo.create_model(name, features_only=True)
    assert f"Families whose models declare them: {', '.join(families)}." in str(err.value)


@pytest.mark.parametrize("name", TORCHVISION_NAMES)
def test_torchvision_layouts_name_levels_as_torchvision(name):
    # On the meta device: shapes only, so even resnet152 costs nothing.
    with torch.device("meta"):
        ours = zoo.create_model(name, features_only=True, out_indices=(1, 2, 3, 4), return_dict=True).eval()
        theirs = getattr(torchvision.models, name)().eval()
        getter = IntermediateLayerGetter(theirs, {n: n for n in ["layer1", "layer2", "layer3", "layer4"]})
        x = torch.empty(1, 3, MAX_SIDE, MAX_SIDE)
        mine, reference = ours(x), getter(x)
    assert list(mine) == list(reference) == ours.feature_info.module_name()
    assert [f.shape for f in mine.values()] == [f.shape for f in reference.values()]


def test_levels_equal_torchvisions_intermediate_layers():
    ours = build("resnet18", features_only=True, out_indices=(1, 2, 3, 4), return_dict=True).eval()
    theirs = torchvision.models.resnet18().eval()
    theirs.load_state_dict(ours.state_dict(), strict=False)  # ours has no fc: the rest must all match
    getter = IntermediateLayerGetter(theirs, {n: n for n in ours.feature_info.module_name()})
    x = torch.randn(2, 3, MAX_SIDE, MAX_SIDE)
    with torch.no_grad():
        mine, reference = ours(x), getter(x)
    assert all(torch.equal(mine[k], reference[k]) for k in reference)


def test_feature_pyramid_network_over_zoo_features():
    extractor = build("resnet18", features_only=True, out_indices=(1, 2, 3, 4), return_dict=True).eval()
    fpn = FeaturePyramidNetwork(extractor.feature_info.channels(), out_channels=32).eval()
    x = torch.randn(2, 3, MAX_SIDE, MAX_SIDE)
    with torch.no_grad():
        features = extractor(x)
        pyramid = fpn(features)
    assert list(pyramid) == list(features)
    for level, out in pyramid.items():
        assert out.shape == (2, 32, *features[level].shape[-2:])


def test_torchvision_backbone_with_fpn_over_a_zoo_resnet():
    # torchvision's own wrapper takes the full zoo model: its modules are registered in forward order.
    model = build("resnet18", num_classes=10)
    levels = model.feature_info[1:]
    backbone = BackboneWithFPN(
        model,
        return_layers={name: str(i) for i, name in enumerate(levels.module_name())},
        in_channels_list=levels.channels(),
        out_channels=32,
    ).eval()
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, MAX_SIDE, MAX_SIDE))
    assert backbone.out_channels == 32
    assert list(out) == ["0", "1", "2", "3", "pool"]
    assert [o.shape[-1] for o in out.values()] == [16, 8, 4, 2, 1]


class _Nested(ZooModel):
    """A made-up backbone: a level two containers deep, and modules after the deepest level."""

    def __init__(self, sequential: bool = True):
        super().__init__()
        self.input_size = (3, 16, 16)
        stages = [nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.Conv2d(4, 8, 3, 2, 1)), nn.Conv2d(8, 8, 3, 2, 1)]
        # A ModuleList has no forward: its owner decides the order, which the wrapper cannot know.
        self.body = nn.Sequential(*stages) if sequential else nn.ModuleList(stages)
        self.head = nn.Linear(8, 2)
        self.feature_info = FeatureInfo(
            [
                {"module": "body.0.1", "num_chs": 8, "reduction": 2},
                {"module": "body.1", "num_chs": 8, "reduction": 4},
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean((2, 3)))


def test_the_wrapper_is_generic():
    model = _Nested().eval()
    extractor = FeatureExtractor(model, (0,))
    assert set(extractor.state_dict()) == {
        "body.0.0.weight",
        "body.0.0.bias",
        "body.0.1.weight",
        "body.0.1.bias",
    }
    x = torch.randn(2, 3, 16, 16)
    (level,) = extractor(x)
    assert torch.equal(level, model.body[0](x))
    _assert_sizes_match_reductions(FeatureExtractor(model)(x), model.feature_info, x, "_Nested")


def test_levels_inside_a_non_sequential_container_are_refused():
    with pytest.raises(ConfigError, match="inside 'body', a ModuleList, cannot be reached"):
        FeatureExtractor(_Nested(sequential=False))


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        ([{"module": "a", "num_chs": 4}], r"lacks \['reduction'\]"),
        (
            [{"module": "a", "num_chs": 4, "reduction": 4}, {"module": "b", "num_chs": 8, "reduction": 2}],
            "shallow to deep",
        ),
    ],
)
def test_feature_info_checks_its_levels(levels, message):
    with pytest.raises(ConfigError, match=message):
        FeatureInfo(levels)


def test_feature_info_accessors():
    info = FeatureInfo(
        [{"module": "a", "num_chs": 4, "reduction": 2}, {"module": "b", "num_chs": 8, "reduction": 4}]
    )
    assert info.channels() == [4, 8] and info.reduction(1) == 4 and info.module_name([1, 0]) == ["b", "a"]
    assert info[-1]["index"] == 1 and len(info[1:]) == 1 and info.select([1])[0]["module"] == "b"
