"""Named configs (``zoo train NAME``): each objective module registers its presets on import.

A preset that reproduces a published weight is named like it (``resnet8_small.mnist``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recipes.config import apply_overrides
from recipes.engine.config import TrainConfig
from recipes.engine.objective import Objective
from zoo.errors import UnknownModelError

__all__ = [
    "RECIPE_MODULES",
    "Preset",
    "find_preset",
    "get_preset",
    "list_presets",
    "register_preset",
    "resolve_config",
]


@dataclass(frozen=True)
class Preset:
    name: str
    objective: type[Objective]
    config: TrainConfig
    description: str = ""


_PRESETS: dict[str, Preset] = {}
# Objective modules register their presets on import; a new objective adds its module here.
RECIPE_MODULES = (
    "recipes.classification",
    "recipes.clip",
    "recipes.autoencoding",
    "recipes.segmentation",
    "recipes.restoration",
    "recipes.instance",
    "recipes.detection",
    "recipes.vae",
    "recipes.pixelcnn",
    "recipes.diffusion",
    "recipes.gan",
    "recipes.contrastive",
    "recipes.video_colorization",
    "recipes.semi_supervised",
    "recipes.noisy_labels",
    "recipes.robust_classification",
    "recipes.pseudo_label",
    "recipes.fine_tune",
    "recipes.localization",
)


def register_preset(
    name: str, objective: type[Objective], config: TrainConfig, description: str = ""
) -> None:
    """Register preset `name`: `config` (validated now) trained by `objective`."""
    if name in _PRESETS:
        raise ValueError(f"recipe preset '{name}' is already registered")
    if not isinstance(config, objective.Config):
        raise TypeError(f"preset '{name}': config must be a {objective.Config.__name__}")
    config.validate()
    _PRESETS[name] = Preset(name, objective, config, description)


def _import_recipes() -> None:
    import importlib

    for module in RECIPE_MODULES:
        importlib.import_module(module)


def list_presets() -> list[Preset]:
    """Every registered preset, by name."""
    _import_recipes()
    return sorted(_PRESETS.values(), key=lambda p: p.name)


def find_preset(name: str) -> Preset | None:
    """The preset registered as `name`, or None (without importing the objective modules)."""
    return _PRESETS.get(name)


def get_preset(name: str) -> Preset:
    """The preset `name`; an unknown name raises `UnknownModelError` with the closest matches."""
    _import_recipes()
    try:
        return _PRESETS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(_PRESETS), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown recipe '{name}'.{hint} Known recipes: {', '.join(sorted(_PRESETS))}"
        ) from None


def resolve_config(recipe: str, overrides: list[str] | dict[str, Any] = ()) -> tuple[Preset, TrainConfig]:
    """A preset's config with ``key=value`` overrides applied and validated."""
    preset = get_preset(recipe)
    return preset, apply_overrides(preset.config, overrides or [])
