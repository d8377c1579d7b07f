"""Backbone features: any model that declares its feature levels becomes a feature-pyramid extractor.

``zoo.create_model(name, features_only=True, out_indices=(1, 2, 3, 4))`` builds the model (loading its
weight strictly when ``pretrained=True``), then wraps it in a `FeatureExtractor`: a module that returns one
feature map per requested level, shallow to deep, and drops everything after the deepest one (pooling and
classifier). This is the input U-Net encoders, DeepLab, FPNs and torchvision's detectors build on; the API
follows timm's ``features_only`` (``feature_info.channels()``, ``.reduction()``, ``.module_name()``).

A family opts in by setting, in its model's ``__init__``, ``self.feature_info = FeatureInfo([...])``: one
dict per level naming the module whose output is that level, its channels (``num_chs``) and its
``reduction`` (the stride of the level relative to the input). Nothing else is per model. The extractor
runs the model's top-level modules in the order they were registered, entering ``nn.Sequential``
containers that hold a requested level, so ``forward_features`` must be that composition (the test suite
checks every registered model against hooks on the full model). Parameter names are kept, so the
extractor's ``state_dict`` is the model's minus the modules it dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, overload

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.models.base import ZooModel

__all__ = ["FeatureExtractor", "FeatureInfo", "families_with_feature_levels"]

_REQUIRED = ("module", "num_chs", "reduction")


class FeatureInfo(Sequence[dict[str, Any]]):
    """The feature levels of a model, shallow to deep: one dict per level.

    Each dict has ``module`` (dotted path of the module whose output is the level), ``num_chs``,
    ``reduction`` (input size / level size, nominal: pooling floors odd sizes, padded strided convs round
    up) and ``index`` (the level's position among all of the model's levels, kept when a subset is
    selected). The accessors take an optional level position (an int or a list of them) as in timm.
    """

    def __init__(self, levels: Iterable[Mapping[str, Any]] = ()):
        checked: list[dict[str, Any]] = []
        for position, level in enumerate(levels):
            level = dict(level)
            missing = [key for key in _REQUIRED if key not in level]
            if missing:
                raise ConfigError(
                    f"feature level {position} ({level}) lacks {missing}; each needs {_REQUIRED}"
                )
            if checked and level["reduction"] < checked[-1]["reduction"]:
                raise ConfigError(
                    f"feature levels must go shallow to deep, but '{level['module']}' (reduction "
                    f"{level['reduction']}) follows '{checked[-1]['module']}' ({checked[-1]['reduction']})"
                )
            level.setdefault("index", position)
            checked.append(level)
        self._levels = tuple(checked)

    @overload
    def __getitem__(self, item: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, item: slice) -> FeatureInfo: ...
    def __getitem__(self, item: int | slice) -> dict[str, Any] | FeatureInfo:
        if isinstance(item, slice):
            return FeatureInfo(self._levels[item])
        return self._levels[item]

    def __len__(self) -> int:
        return len(self._levels)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureInfo) and self._levels == other._levels

    __hash__ = None  # type: ignore[assignment]  # mutable dicts inside: equality only

    def __repr__(self) -> str:
        return f"FeatureInfo({list(self._levels)!r})"

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        """``key`` of every level (``idx=None``), of the levels at the positions ``idx``, or of one level."""
        if idx is None:
            return [level[key] for level in self._levels]
        if isinstance(idx, int):
            return self._levels[idx][key]
        return [self._levels[i][key] for i in idx]

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        """Channels of the levels (timm's ``feature_info.channels()``)."""
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        """Reduction (output stride) of the levels."""
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        """Dotted module path of the levels: the names torchvision's ``IntermediateLayerGetter`` takes."""
        return self.get("module", idx)

    def describe(self) -> str:
        """One line per level, for error messages and `repr`-like summaries."""
        return ", ".join(
            f"{i}: {lv['module']} ({lv['num_chs']} ch, /{lv['reduction']})"
            for i, lv in enumerate(self._levels)
        )

    def resolve(self, out_indices: Sequence[int] | None, owner: str = "the model") -> tuple[int, ...]:
        """Positions of the requested levels, negatives counted from the deepest, sorted shallow to deep.

        ``None`` selects every level. Anything else that does not name distinct existing levels is a
        `ConfigError` that lists the valid ones.
        """
        count = len(self._levels)
        valid = (
            f"{owner} has {count} feature levels, 0..{count - 1} (or -{count}..-1 counting from the deepest): "
            f"{self.describe()}"
        )
        if out_indices is None:
            return tuple(range(count))
        if isinstance(out_indices, (int, str, bytes)) or not isinstance(out_indices, Iterable):
            # timm reads an int as "the last n"; a plain int is too easily read as "level n", so refuse it.
            raise ConfigError(
                f"out_indices={out_indices!r} is not a sequence of levels: pass e.g. (1,) for one level or "
                f"(-2, -1) for the deepest two. {valid}"
            )
        requested = list(out_indices)
        if not requested:
            raise ConfigError(f"out_indices=() selects no level. {valid}")
        resolved: list[int] = []
        for index in requested:
            if isinstance(index, bool) or not isinstance(index, int):
                raise ConfigError(f"out_indices={out_indices!r}: {index!r} is not an int. {valid}")
            if not -count <= index < count:
                raise ConfigError(f"out_indices={out_indices!r}: level {index} does not exist. {valid}")
            resolved.append(index % count)
        if len(set(resolved)) != len(resolved):
            raise ConfigError(f"out_indices={out_indices!r} names a level twice. {valid}")
        return tuple(sorted(resolved))

    def select(self, positions: Iterable[int]) -> FeatureInfo:
        """The levels at ``positions`` (their ``index`` still counts among all levels)."""
        return FeatureInfo(self._levels[i] for i in positions)


class FeatureExtractor(ZooModel):
    """The feature pyramid of a model that declares `FeatureInfo` levels: a list of maps, shallow to deep.

    ``model`` is consumed: its modules up to the deepest requested level move here under their own names
    (``layer1.0.conv1.weight`` stays ``layer1.0.conv1.weight``), the rest (pooling, classifier) is
    dropped. ``return_dict=True`` returns an ``OrderedDict`` keyed by module name instead, the form
    torchvision's ``FeaturePyramidNetwork`` and detectors take; ``out_channels`` is the deepest selected
    level's channels, which torchvision's detectors read from a single-map backbone.
    """

    classifier = None

    def __init__(self, model: nn.Module, out_indices: Sequence[int] | None = None, return_dict: bool = False):
        super().__init__()
        name = _model_name(model)
        info = getattr(model, "feature_info", None)
        if not info:
            raise ConfigError(
                f"'{name}' declares no feature levels, so it has no feature pyramid to extract "
                "(features_only=True). Families whose models declare them: "
                f"{', '.join(families_with_feature_levels()) or 'none'}. A family declares them by setting "
                "`feature_info` in its model's __init__ (see zoo.models.features)."
            )
        positions = info.resolve(out_indices, owner=f"'{name}'")
        selected = info.select(positions)
        wanted = set(selected.module_name())
        deepest = selected.module_name(-1)
        for path in sorted(wanted):
            if not _has_module(model, path):
                raise ConfigError(f"'{name}' declares feature level '{path}' but has no module of that name")
        kept, steps, _ = _trunk(model, "", wanted, deepest, name)
        missing = wanted - set(steps)
        if missing:
            raise ConfigError(
                f"'{name}': feature levels {sorted(missing)} are not reached before '{deepest}' in the order "
                "the modules were registered, or sit inside another level's module; declare levels in the "
                "order forward runs them, each a module that runs as one step"
            )
        for child_name, child in kept.items():
            self.add_module(child_name, child)
        # Plain Python (not modules): the order to run and which outputs to keep, by path, so that a module
        # swapped in later (e.g. a dilated stage) is the one that runs.
        self._steps = tuple(steps)
        self._levels = frozenset(wanted)
        self.feature_info = selected
        self.return_dict = return_dict
        self.out_channels: int = selected.channels(-1)
        self.input_size = tuple(getattr(model, "input_size", self.input_size))
        self.dynamic_size = getattr(model, "dynamic_size", True)
        first_conv = getattr(model, "first_conv", None)
        self.first_conv = first_conv if first_conv and _has_module(self, first_conv) else None
        if hasattr(model, "encoder_weights_info"):  # where an encoder's weight came from (save_pretrained)
            self.encoder_weights_info = model.encoder_weights_info
        meta = getattr(model, "pretrained_weights", None)
        if meta is not None:
            # Preprocessing (mean, std, input size) still applies; the head's labels and metrics do not.
            self.pretrained_weights = meta.replace(
                labels=(), metrics={}, sha256=None, description=f"feature levels of {meta.name}"
            )
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | OrderedDict[str, torch.Tensor]:
        features: OrderedDict[str, torch.Tensor] = OrderedDict()
        for path in self._steps:
            x = self.get_submodule(path)(x)
            if path in self._levels:
                features[path] = x
        return features if self.return_dict else list(features.values())


def _model_name(model: nn.Module) -> str:
    config = getattr(model, "zoo_config", None)
    return config["architecture"] if config else type(model).__name__


def _has_module(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True


def _trunk(
    parent: nn.Module, prefix: str, wanted: set[str], deepest: str, name: str
) -> tuple[OrderedDict[str, nn.Module], list[str], bool]:
    """The children of ``parent`` that run up to ``deepest``, the dotted paths to run, and whether it was reached.

    A child that holds a wanted level deeper down is entered, which is only sound for an ``nn.Sequential``
    (its forward is its children in order); it is replaced by a ``Sequential`` of the children kept, under
    their own names, so parameter names do not change.
    """
    kept: OrderedDict[str, nn.Module] = OrderedDict()
    steps: list[str] = []
    for child_name, child in parent.named_children():
        path = prefix + child_name
        if path in wanted or not any(level.startswith(path + ".") for level in wanted):
            kept[child_name] = child
            steps.append(path)
            reached = path == deepest
        else:
            if not isinstance(child, nn.Sequential):
                raise ConfigError(
                    f"'{name}': feature levels inside '{path}', a {type(child).__name__}, cannot be reached: "
                    "only nn.Sequential containers are entered (their forward runs their children in order)"
                )
            sub_kept, sub_steps, reached = _trunk(child, path + ".", wanted, deepest, name)
            kept[child_name] = nn.Sequential(sub_kept)
            steps += sub_steps
        if reached:
            return kept, steps, True
    return kept, steps, False


def families_with_feature_levels() -> list[str]:
    """The registered families whose models declare feature levels (checked on each family's first model).

    Each model is built on the meta device (no memory, no initialisation cost), so the answer derives
    from the registry and the code rather than from a hand-kept list.
    """
    from zoo.registry import entries

    supported: list[str] = []
    seen: set[str] = set()
    for entry in entries():
        if entry.family in seen:
            continue
        seen.add(entry.family)
        try:
            with torch.device("meta"):
                model = entry.builder()
        except Exception:  # a builder that cannot run on the meta device tells nothing either way
            continue
        if getattr(model, "feature_info", None):
            supported.append(entry.family)
    return sorted(supported)
