"""Typed, serialisable recipe configs: dataclasses in, JSON out, ``--set key=value`` overrides checked.

A recipe's config is a (nested) dataclass whose field annotations are the contract: ``int``, ``float``,
``bool``, ``str``, ``Literal[...]`` (the allowed values), ``tuple[...]``, ``dict[str, Any]``, ``X | None``
and nested config dataclasses (addressed with dots: ``optim.lr``). A wrong key or value raises
`zoo.errors.ConfigError` naming the key and what it accepts, so a typo never trains the wrong thing.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from zoo.errors import ConfigError

__all__ = ["apply_overrides", "config_from_dict", "config_to_dict", "extend_config", "parse_override"]

C = TypeVar("C")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config as plain JSON data (tuples become lists), nested dataclasses as nested dicts."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        out[f.name] = _to_plain(getattr(config, f.name))
    return out


def extend_config(cls: type[C], base: Any, **changes: Any) -> C:
    """``base``'s values (a config whose class ``cls`` extends) as a ``cls``, with ``changes``: a recipe with
    keys of its own starts from a shared preset, whose published weights keep their class and keys."""
    values = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    return cls(**{**values, **changes})


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _suggestion(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f" Did you mean {', '.join(close)}?" if close else ""


def _unknown_key(path: str, cls: type) -> ConfigError:
    known = [f.name for f in dataclasses.fields(cls)]
    name = path.rsplit(".", 1)[-1]
    return ConfigError(
        f"unknown config key '{path}'.{_suggestion(name, known)} Known keys"
        f"{' of ' + path.rsplit('.', 1)[0] if '.' in path else ''}: {', '.join(known)}"
    )


def config_from_dict(cls: type[C], data: dict[str, Any], path: str = "") -> C:
    """Build config `cls` from plain data, checking every key and value (strict: unknown keys fail)."""
    if not isinstance(data, dict):
        raise ConfigError(f"config '{path or cls.__name__}' must be a mapping, got {type(data).__name__}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{path}.{key}" if path else key
        if key not in names:
            raise _unknown_key(full, cls)
        kwargs[key] = coerce(value, hints[key], full)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"config {path or cls.__name__}: {err}") from None


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if tp is type(None):
        return "none"
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} values ({', '.join(_describe(a) for a in args)})"
    if origin is dict or tp is dict:
        return "a JSON object"
    if dataclasses.is_dataclass(tp):
        return f"a {tp.__name__} (set its keys with dots)"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, path: str) -> Any:
    """`value` converted to annotation `tp`, or a ConfigError naming `path` and the allowed values."""
    origin = get_origin(tp)

    def fail() -> ConfigError:
        return ConfigError(f"config key '{path}': {value!r} is not valid; expected {_describe(tp)}")

    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, path)
            except ConfigError:
                continue
        raise fail()
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise fail()
    if dataclasses.is_dataclass(tp):
        if dataclasses.is_dataclass(value):
            return value
        return config_from_dict(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise fail()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise fail()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise fail()
    if tp is str:
        if isinstance(value, str):
            return value
        raise fail()
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise fail()
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise fail()
        return tuple(coerce(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise fail()
        return dict(value)
    raise ConfigError(f"config key '{path}' has an unsupported annotation {tp!r}")


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` -> (key, value); the value is read as JSON when it parses, else as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{text}' is not key=value (e.g. --set optim.lr=0.05)")
    raw = raw.strip()
    lowered = raw.lower()
    if lowered in ("none", "null"):
        return key, None
    if lowered in ("true", "false"):
        return key, lowered == "true"
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        if "," in raw:  # 0.9,1.1 -> a list
            parts = [parse_override(f"x={p}")[1] for p in raw.split(",")]
            return key, parts
        return key, raw


def apply_overrides(config: C, overrides: list[str] | dict[str, Any]) -> C:
    """A copy of `config` with ``key=value`` overrides applied; dots reach into nested configs and dicts."""
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides)
    data = config_to_dict(config)
    for key, value in items:
        parts = key.split(".")
        node, cls, where = data, type(config), ""
        for i, part in enumerate(parts):
            where = ".".join(parts[: i + 1])
            last = i == len(parts) - 1
            if cls is None:  # inside a free-form dict field
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
                continue
            names = {f.name for f in dataclasses.fields(cls)}
            if part not in names:
                raise _unknown_key(where, cls)
            tp = _hints(cls)[part]
            if last:
                if dataclasses.is_dataclass(tp) and not isinstance(value, dict):
                    sub = ", ".join(f.name for f in dataclasses.fields(tp))
                    raise ConfigError(f"config key '{where}' is a group: set one of its keys ({sub})")
                node[part] = value
            elif dataclasses.is_dataclass(tp):
                node, cls = node[part], tp
            elif get_origin(tp) is dict or tp is dict:
                node[part] = dict(node[part] or {})
                node, cls = node[part], None
            else:
                raise ConfigError(f"config key '{where}' is a value, it has no key '{parts[i + 1]}'")
    result = config_from_dict(type(config), data)
    validate = getattr(result, "validate", None)
    if validate is not None:
        validate()
    return result
