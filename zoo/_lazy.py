"""PEP 562 lazy re-exports for a package's ``__init__``: names resolve to their module on first use.

``zoo`` and ``export`` both use it, so that importing either stays cheap and torch-free.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    namespace: dict[str, Any], exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the package whose ``globals()`` is `namespace`.

    `exports` maps a public name to the module that defines it; a resolved name is cached in `namespace`.
    ``__dir__`` lists the package's ``__all__``.
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(namespace["__all__"])

    return __getattr__, __dir__
