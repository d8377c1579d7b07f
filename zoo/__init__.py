"""zoo: a PyTorch model zoo with a pretrained-weight hub.

The public API is re-exported here and imported lazily (PEP 562), so ``import zoo`` is cheap and
torch-free pieces (``zoo.preprocess``) can be used where torch is not installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoo._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "create_model": "zoo.factory",
    "load_pretrained": "zoo.factory",
    "save_pretrained": "zoo.factory",
    "import_weights": "zoo.importing",
    "list_models": "zoo.registry",
    "model_info": "zoo.registry",
    "register_model": "zoo.registry",
    "register_weights": "zoo.registry",
    "get_weights": "zoo.registry",
    "Weights": "zoo.registry",
    "ZooError": "zoo.errors",
    "UnknownModelError": "zoo.errors",
    "ConfigError": "zoo.errors",
    "WeightsError": "zoo.errors",
    "IncompatibleKeysError": "zoo.errors",
    "HubError": "zoo.errors",
    "summary": "zoo.analysis",
    "push_to_hub": "zoo.hub",
    "pull": "zoo.hub",
    "bundle": "zoo.hub",
    "get_tokenizer": "zoo.text",
}

__all__ = [
    "ConfigError",
    "HubError",
    "IncompatibleKeysError",
    "UnknownModelError",
    "Weights",
    "WeightsError",
    "ZooError",
    "__version__",
    "bundle",
    "create_model",
    "get_tokenizer",
    "get_weights",
    "import_weights",
    "list_models",
    "load_pretrained",
    "model_info",
    "pull",
    "push_to_hub",
    "register_model",
    "register_weights",
    "save_pretrained",
    "summary",
]


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)


if TYPE_CHECKING:
    from zoo.analysis import summary
    from zoo.errors import (
        ConfigError,
        HubError,
        IncompatibleKeysError,
        UnknownModelError,
        WeightsError,
        ZooError,
    )
    from zoo.factory import create_model, load_pretrained, save_pretrained
    from zoo.hub import bundle, pull, push_to_hub
    from zoo.importing import import_weights
    from zoo.registry import Weights, get_weights, list_models, model_info, register_model, register_weights
    from zoo.text import get_tokenizer
