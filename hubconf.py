"""torch.hub entrypoints, derived from the zoo's registry (no hand-kept list).

    torch.hub.list("path/to/zoo", source="local")
    torch.hub.load("path/to/zoo", "resnet18", source="local", pretrained=True)
    torch.hub.load("path/to/zoo", "resnet8_small", source="local", weights="mnist")

Only entrypoints may be public names here: torch.hub lists every public callable of this module.
"""

import os as _os
import sys as _sys

dependencies = ["torch", "safetensors", "huggingface_hub"]

_here = _os.path.dirname(_os.path.abspath(__file__))
if _here not in _sys.path:
    _sys.path.insert(0, _here)

from zoo.factory import create_model as _create_model  # noqa: E402
from zoo.registry import entries as _entries  # noqa: E402


def _make_entrypoint(arch: str, summary: str, tags: tuple):
    def entrypoint(pretrained: bool = False, weights: str | None = None, **kwargs):
        return _create_model(arch, pretrained=pretrained, weights=weights, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = arch
    published = ", ".join(tags) or "none yet"
    entrypoint.__doc__ = (
        f"{summary}\n\nArgs:\n    pretrained: load the default published weight.\n"
        f"    weights: the tag of a published weight ({published}).\n    **kwargs: builder arguments."
    )
    return entrypoint


for _entry in _entries():
    globals()[_entry.arch] = _make_entrypoint(_entry.arch, _entry.summary, _entry.all_tags)
