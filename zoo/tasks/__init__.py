"""The zoo's tasks: one module per task, each a `Task` registered under its name.

    from zoo.tasks import get_task
    task = get_task("semantic-segmentation")
    task.pipeline_tag, [f.name for f in task.weight_fields]
    results = task.postprocess({"masks_logits": logits}, weights)   # numpy in, one result per sample

Adding a task is one module in this package (or anywhere, for a user's own task)::

    from zoo.tasks import Task, WeightField, register_task

    @register_task
    class Counting(Task):
        name = "object-counting"
        pipeline_tag = "object-counting"
        weight_fields = (WeightField("max_count", 10, "largest count the head predicts", (int,)),)
        def postprocess(self, outputs, meta, **options): ...

The modules of this package are discovered (no list to edit) and are imported by the torch-free runtime,
so at import time they use numpy and the standard library only.
"""

from __future__ import annotations

import importlib
import pkgutil

from zoo.errors import UnknownModelError
from zoo.tasks.base import Agreement, Task, WeightField, parity

__all__ = [
    "Agreement",
    "Task",
    "UnknownTaskError",
    "WeightField",
    "get_task",
    "list_tasks",
    "parity",
    "register_task",
    "unregister_task",
]


class UnknownTaskError(UnknownModelError):
    """A task name that no registered task (nor alias) answers to."""


_TASKS: dict[str, Task] = {}
_discovered = False


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a `Task` subclass known by its ``name`` (and ``aliases``).

    A second task under a taken name raises, unless it is the same class re-imported (importlib.reload).
    """
    if not cls.name or not cls.pipeline_tag:
        raise ValueError(f"{cls.__name__} must set `name` and `pipeline_tag`")
    for key in (cls.name, *cls.aliases):
        other = _TASKS.get(key)
        if other is not None and type(other).__qualname__ != cls.__qualname__:
            raise ValueError(f"task name '{key}' is already taken by {type(other).__name__}")
    task = cls()
    for key in (cls.name, *cls.aliases):
        _TASKS[key] = task
    return cls


def unregister_task(cls: type[Task]) -> None:
    """Remove a task registered with `register_task` (tests and notebooks)."""
    for key in [k for k, t in _TASKS.items() if type(t) is cls]:
        del _TASKS[key]


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in pkgutil.iter_modules(__path__):
        if info.name not in ("base", "draw"):
            importlib.import_module(f"{__name__}.{info.name}")


def get_task(name: str) -> Task:
    """The task registered under `name` or one of its aliases; an unknown name lists the known ones."""
    _discover()
    try:
        return _TASKS[name]
    except KeyError:
        raise UnknownTaskError(
            f"unknown task '{name}'; the zoo's tasks are: {', '.join(t.name for t in list_tasks())}"
        ) from None


def list_tasks() -> list[Task]:
    """Every registered task, once each (aliases folded), sorted by name."""
    _discover()
    unique = {id(t): t for t in _TASKS.values()}
    return sorted(unique.values(), key=lambda t: t.name)
