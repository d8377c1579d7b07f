"""`create_model` and `save_pretrained`: names, folders and hub repos in; strict, verified models out."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from zoo.errors import ConfigError, WeightsError
from zoo.registry import Weights, get_entry, get_weights, parse_model_name
from zoo.weights import (
    CARD_NAME,
    CONFIG_NAME,
    WEIGHTS_NAME,
    adapt_input_conv,
    atomic_write_bytes,
    check_json_serialisable,
    load_state_dict,
    load_state_dict_strict,
    read_config,
    save_state_dict,
    write_json,
)

__all__ = ["create_encoder", "create_model", "init_from_weights", "load_pretrained", "save_pretrained"]

HF_PREFIX = "hf-hub:"
# The two adaptations that work with pretrained weights; every other kwarg must agree with the weight.
ADAPTABLE_KWARGS = ("num_classes", "in_chans")
# Keyword arguments that change how a trained network is run, never its parameters (the restoration models'
# `self_ensemble`): any weight whose builder takes them accepts them.
INFERENCE_KWARGS = ("self_ensemble",)


def create_model(
    name: str,
    pretrained: bool = False,
    *,
    weights: str | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    return_dict: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, optionally with its published weights.

    ``name`` is one of:
      - ``arch``: a fresh model (``pretrained=True`` loads the architecture's default weight);
      - ``arch.tag``: that weight's configuration, loaded when ``pretrained=True`` (as in timm);
      - ``hf-hub:org/repo[@revision]``: a Hugging Face repo in zoo layout, always loaded;
      - a local folder in weight layout (``config.json`` + ``model.safetensors``), always loaded.

    ``num_classes=`` re-initialises the classifier and ``in_chans=`` adapts the first convolution; every
    other kwarg that contradicts the weight is refused. ``weights="tag"`` is the torch.hub spelling of
    ``pretrained=True`` with a tag.

    ``features_only=True`` builds (and loads) the whole model, then returns its feature pyramid, a
    `zoo.models.features.FeatureExtractor`: a list of maps, shallow to deep, one per level in
    ``out_indices`` (default: all; negative counts from the deepest), described by its ``feature_info``;
    ``return_dict=True`` keys them by module name. The classifier is dropped.
    """
    if features_only:
        from zoo.models.features import FeatureExtractor

        # Not builder kwargs: the weight's model_args never see them, so pretrained loading is unchanged.
        model = create_model(name, pretrained, weights=weights, **kwargs)
        return FeatureExtractor(model, out_indices, return_dict=return_dict)
    if out_indices is not None or return_dict:
        raise ConfigError(
            "out_indices= and return_dict= select feature levels: pass them with features_only=True"
        )
    if name.startswith(HF_PREFIX):
        from zoo.hub import download_repo

        repo_id, _, revision = name[len(HF_PREFIX) :].partition("@")
        if repo_id.count("/") != 1:
            raise ConfigError(f"'{name}' is not 'hf-hub:org/repo[@revision]'")
        folder = download_repo(repo_id, revision or None)
        model = load_pretrained(folder, **kwargs)
        # The snapshot folder is named by its commit: record exactly which one was loaded.
        model.pretrained_weights = model.pretrained_weights.replace(hf_repo=repo_id, revision=folder.name)
        return model
    if looks_like_path(name):
        return load_pretrained(name, **kwargs)

    arch, tag = parse_model_name(name)
    entry = get_entry(arch)
    if weights is not None:
        if tag is not None and tag != weights:
            raise ConfigError(f"'{name}' names tag '{tag}' but weights='{weights}' names another; give one")
        tag, pretrained = weights, True
    if tag is None and pretrained:
        tag = entry.default_tag
        if tag is None:
            raise WeightsError(
                f"'{arch}' has no published weights; build it with pretrained=False, or pick one of "
                "zoo.list_models(pretrained=True)."
            )
    if tag is None:
        return entry.builder(**kwargs)
    meta = get_weights(f"{arch}.{tag}")
    if not pretrained:
        return entry.builder(**_merge_args(meta, kwargs))
    from zoo.hub import resolve_weight_folder

    return load_pretrained(resolve_weight_folder(meta), expected=meta, **kwargs)


def looks_like_path(name: str) -> bool:
    return os.sep in name or name.startswith(".") or Path(name).is_dir()


def _merge_args(meta: Weights, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The weight's builder kwargs updated by the user's, refusing any that contradict the weight."""
    trained = dict(meta.model_args)
    for key, value in kwargs.items():
        if key in ADAPTABLE_KWARGS + INFERENCE_KWARGS or trained.get(key, _MISSING) == _normalise(value):
            continue
        was = f"was trained with {key}={trained[key]!r}" if key in trained else f"was trained without '{key}'"
        raise ConfigError(
            f"{key}={value!r} contradicts weight '{meta.name}', which {was}. Drop the argument, or build a "
            f"fresh model with pretrained=False. Only {' and '.join(ADAPTABLE_KWARGS)} can be changed with "
            f"pretrained weights (and {', '.join(INFERENCE_KWARGS)}, which change how a weight runs, not what it is)."
        )
    return {**trained, **kwargs}


_MISSING = object()


def _normalise(value: Any) -> Any:
    # config.json stores tuples as lists; compare in that form.
    if isinstance(value, tuple):
        return [_normalise(v) for v in value]
    return value


def load_pretrained(
    folder: str | os.PathLike, *, expected: Weights | None = None, **kwargs: Any
) -> nn.Module:
    """Build the model a weight folder describes and load it strictly, after checking its sha256."""
    folder = Path(folder)
    config = read_config(folder)
    meta = Weights.from_dict(config["weights"]) if config.get("weights") else None
    arch = config["architecture"]
    entry = get_entry(arch)
    trained_args = config.get("model_args", {})
    if meta is None:
        meta = Weights(arch=arch, tag="local", task=entry.task, model_args=trained_args)
    meta = meta.replace(model_args=trained_args)
    if expected is not None and expected.revision and not meta.revision:
        # A pushed config.json cannot hold its own commit sha: the registry's pin names it.
        meta = meta.replace(hf_repo=expected.hf_repo, revision=expected.revision)
    # A pin declared in code (the registry) wins over the one stored beside the file.
    sha256 = (expected.sha256 if expected and expected.sha256 else None) or meta.sha256
    state_dict = load_state_dict(folder / WEIGHTS_NAME, expected_sha256=sha256)

    args = _merge_args(meta, kwargs)
    with _rebuilding():
        model = entry.builder(**args)
    source = f"{folder / WEIGHTS_NAME}"
    allow_missing: tuple[str, ...] = ()
    if "num_classes" in kwargs and kwargs["num_classes"] != trained_args.get("num_classes", _MISSING):
        head = _require_attr(model, "classifier", "num_classes", arch)
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(head + ".")}
        allow_missing = (head + ".",)
    if "in_chans" in kwargs and kwargs["in_chans"] != trained_args.get("in_chans", _MISSING):
        stem = _require_attr(model, "first_conv", "in_chans", arch) + ".weight"
        state_dict = dict(state_dict)
        state_dict[stem] = adapt_input_conv(state_dict[stem], kwargs["in_chans"])
    load_state_dict_strict(model, state_dict, source=source, allow_missing=allow_missing)
    if allow_missing:  # a new head: the weight's labels and metrics no longer describe this model
        task = model_task(model)
        # A new task (an encoder become a classifier) has its own fields: the old ones describe nothing now.
        fields = meta.task_fields if task == meta.task else {}
        meta = meta.replace(
            task=task,
            task_fields=fields,
            labels=(),
            metrics={},
            sha256=None,
            description=f"adapted from {meta.name}",
        )
    model.pretrained_weights = meta
    return model


# Set while a builder runs only to receive a full state dict (`load_pretrained`): its encoder's own weights
# would be overwritten at once, and an encoder_weights folder recorded on another machine may not exist here.
_REBUILDING: contextvars.ContextVar[bool] = contextvars.ContextVar("zoo_rebuilding", default=False)


@contextlib.contextmanager
def _rebuilding() -> Iterator[None]:
    token = _REBUILDING.set(True)
    try:
        yield
    finally:
        _REBUILDING.reset(token)


def create_encoder(
    encoder: str,
    weights: str | None = None,
    *,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    return_dict: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """The backbone of an encoder-based model (U-Net, FCN, DeepLab, detectors), optionally pretrained.

    ``weights`` is what segmentation_models_pytorch calls ``encoder_weights``: a tag of ``encoder``
    (``"mnist"`` -> ``resnet8_small.mnist``), a weight name ``arch.tag`` (registered, or a folder of that
    name in a ``ZOO_HUB_DIR`` entry, e.g. one written by ``zoo import``), a weight folder, or
    ``hf-hub:org/repo``. The weight must be of architecture ``encoder``; it loads strictly, and
    ``in_chans=`` adapts its first conv as for classifiers. The model carries ``encoder_weights_info``
    (name, sha256, source), which `save_pretrained` records as the new weight's ``encoder``.

    While `load_pretrained` rebuilds a saved model, the weight is not loaded (the saved state dict holds
    the trained encoder): the architecture is built from the weight's arguments when it is at hand.
    """
    if weights is None:
        model = create_model(encoder, **kwargs)
    elif _REBUILDING.get():
        model = _encoder_for_rebuild(encoder, weights, kwargs)
    else:
        model = create_model(_encoder_weight_name(encoder, weights), pretrained=True, **kwargs)
        arch = model.zoo_config["architecture"]
        if arch != encoder:
            raise ConfigError(
                f"encoder_weights={weights!r} is a '{arch}' weight but the encoder is '{encoder}': pass "
                f"encoder='{arch}' (or a weight of '{encoder}')"
            )
        model.encoder_weights_info = _init_record(weights, model)
    if features_only:
        from zoo.models.features import FeatureExtractor

        return FeatureExtractor(model, out_indices, return_dict=return_dict)
    return model


def init_from_weights(
    module: nn.Module,
    weights: str,
    architecture: str,
    part: str,
    new_parts: Sequence[str] = (),
    source_part: str | None = None,
) -> dict[str, Any] | None:
    """Load a published weight of ``architecture`` strictly into `module` (a part of a larger model built
    as that architecture, e.g. the U-Net inside the proposal-free instance segmenter, or a whole model
    that extends it, as Mask R-CNN extends Faster R-CNN) and return what `save_pretrained` records as the
    new weight's ``encoder``: where the `part` started from.

    ``new_parts`` names the submodules of `module` (state-dict prefixes, e.g. ``"roi_heads.mask_head"``)
    that the weight does not have: they keep their initialisation; every other key must match.
    ``source_part`` loads only that submodule of the weight's model (e.g. ``"backbone"``: a RetinaNet's
    backbone and FPN from a Faster R-CNN weight, whose heads it does not share). ``weights``
    is a weight name ``arch.tag``, a weight folder or ``hf-hub:org/repo``. While `load_pretrained` rebuilds
    a saved model nothing is loaded (its state dict holds the trained part) and None is returned.
    """
    if _REBUILDING.get():
        return None
    source = create_model(weights, pretrained=True)
    arch = source.zoo_config["architecture"]
    if arch != architecture:
        raise ConfigError(
            f"{part} weights {weights!r} are a '{arch}' weight; the {part} is a '{architecture}': pass a "
            f"weight of '{architecture}'"
        )
    prefixes = tuple(f"{p}." for p in new_parts)
    state = (source.get_submodule(source_part) if source_part else source).state_dict()
    stray = [k for k in state if k.startswith(prefixes)]
    try:
        if stray:
            raise RuntimeError(f"the weight has keys under new_parts {list(new_parts)}: {stray[:3]}")
        # Not strict: the new parts are missing by design; every other key is checked here (shape mismatches
        # raise in load_state_dict either way).
        result = module.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith(prefixes)]
        if missing or result.unexpected_keys:
            raise RuntimeError(f"missing keys {missing[:5]}, unexpected keys {result.unexpected_keys[:5]}")
    except RuntimeError as err:
        raise ConfigError(
            f"{part} weights {weights!r} do not fit this {part} (built with other arguments?): {err}"
        ) from err
    return {**_init_record(weights, source), "part": part}


def _init_record(weights: str, model: nn.Module) -> dict[str, Any]:
    """What a new weight records of the published `model` it started from (``weights``, as the user named it):
    its name, architecture, sha256 and, for an imported weight, its source."""
    meta, arch = model.pretrained_weights, model.zoo_config["architecture"]
    info = {"weights": weights, "name": meta.name, "architecture": arch, "sha256": meta.sha256}
    if meta.source:
        info["source"] = {
            k: meta.source[k] for k in ("library", "file", "repo", "weights") if k in meta.source
        }
    return info


def _encoder_weight_name(encoder: str, weights: str) -> str:
    """What `create_model` loads for ``encoder_weights``: a tag or name, or the folder found for it."""
    if weights.startswith(HF_PREFIX) or looks_like_path(weights):
        return weights
    name = weights if "." in weights else f"{encoder}.{weights}"
    arch, tag = parse_model_name(name)
    if tag in get_entry(arch).all_tags:
        return name
    from zoo.hub import local_weight_folder

    folder = local_weight_folder(name)
    if folder is None:
        from zoo.registry import hub_dirs

        raise WeightsError(
            f"encoder_weights={weights!r}: '{name}' is neither a published weight of '{arch}' "
            f"({', '.join(get_entry(arch).all_tags) or 'none'}) nor a folder in a hub folder "
            f"({', '.join(map(str, hub_dirs()))}). Pass a weight folder (e.g. one `zoo import` wrote), or "
            "point ZOO_HUB_DIR at the folder that holds it."
        )
    return str(folder)


def _encoder_for_rebuild(encoder: str, weights: str, kwargs: dict[str, Any]) -> nn.Module:
    """The encoder's architecture without its weights, built with the weight's arguments where known."""
    try:
        name = _encoder_weight_name(encoder, weights)
    except WeightsError:  # recorded on another machine: the architecture alone is enough to load into
        return create_model(encoder, **kwargs)
    if name.startswith(HF_PREFIX):
        return create_model(encoder, **kwargs)
    if looks_like_path(name):
        if not (Path(name) / CONFIG_NAME).is_file():
            return create_model(encoder, **kwargs)
        trained = dict(read_config(name).get("model_args") or {})
        trained.pop("num_classes", None)  # the head is dropped by every encoder-based model
        return create_model(encoder, **{**trained, **kwargs})
    return create_model(name, pretrained=False, **kwargs)


def _require_attr(model: nn.Module, attr: str, kwarg: str, arch: str) -> str:
    path = getattr(model, attr, None)
    if not path:
        raise ConfigError(
            f"'{arch}' has no {attr.replace('_', ' ')} to adapt, so {kwarg}= cannot change "
            "with pretrained weights; use pretrained=False"
        )
    return path


def save_pretrained(
    model: nn.Module,
    folder: str | os.PathLike,
    weights: Weights | dict[str, Any] | None = None,
    files: dict[str, str | os.PathLike] | None = None,
) -> Path:
    """Write a weight folder: ``model.safetensors``, ``config.json`` and a model card ``README.md``.

    The model must come from a registered builder (it carries ``zoo_config``: architecture and builder
    kwargs). ``weights`` carries the metadata (task, labels, metrics, recipe...); its sha256 and parameter
    count are filled in from what is written. A kwarg that JSON cannot hold is an error, never dropped.
    ``files`` maps roles to extra files copied into the folder and named in config.json (e.g.
    ``{"curves": "run/curves.png"}``, which the model card shows).
    """
    zoo_config = getattr(model, "zoo_config", None)
    if not zoo_config:
        raise ConfigError(
            f"{type(model).__name__} was not built by the zoo (no zoo_config): save_pretrained needs the "
            "architecture name and builder kwargs to rebuild it. Build it with zoo.create_model."
        )
    arch, model_args = zoo_config["architecture"], zoo_config["model_args"]
    check_json_serialisable(model_args, "model_args")
    task = model_task(model)
    if isinstance(weights, dict):
        weights = Weights.from_dict({"arch": arch, "tag": "local", "task": task, **weights})
    if weights is None:
        weights = _descriptive_only(getattr(model, "pretrained_weights", None), arch, task)
    if not weights.encoder:
        found = next(
            (m.encoder_weights_info for m in model.modules() if hasattr(m, "encoder_weights_info")), None
        )
        if found:
            weights = weights.replace(encoder=dict(found))
    check_json_serialisable(weights.to_dict(), "weights")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sha256 = save_state_dict(model.state_dict(), folder / WEIGHTS_NAME)
    num_params = sum(p.numel() for p in model.parameters())
    weights = weights.replace(
        arch=arch,
        model_args=_normalise_args(model_args),
        sha256=sha256,
        num_params=num_params,
        input_size=weights.input_size or tuple(getattr(model, "input_size", ()) or ()) or None,
        task_fields={**model_task_fields(model, weights.task_object), **weights.task_fields},
    )
    from zoo import __version__

    config = {
        "zoo_version": __version__,
        "architecture": arch,
        "model_args": weights.model_args,
        "weights": weights.to_dict(),
    }
    if getattr(model, "output_names", None):  # the model's own names for its outputs (cards, export)
        config["output_names"] = list(model.output_names)
    if files:
        config["files"] = {}
        for role, source in files.items():
            source = Path(source)
            if not source.is_file():
                raise ConfigError(f"extra file for '{role}' does not exist: {source}")
            atomic_write_bytes(folder / source.name, source.read_bytes())
            config["files"][role] = source.name
    write_json(folder / CONFIG_NAME, config)
    from zoo.card import render_model_card

    atomic_write_bytes(folder / CARD_NAME, render_model_card(config).encode())
    return folder


def model_task(model: nn.Module) -> str:
    """The task of a built model: its own (`ZooModel.task`) where it states one, else its architecture's."""
    own = getattr(model, "task", None)
    return own if isinstance(own, str) else get_entry(model.zoo_config["architecture"]).task


def model_task_fields(model: nn.Module, task: Any) -> dict[str, Any]:
    """The task fields a model states about itself: a declared field that the model has as an attribute
    (e.g. ``size_multiple``), so a weight records it without the recipe repeating it."""
    found = {}
    for f in task.weight_fields:
        value = getattr(model, f.name, None)
        if value is not None and not callable(value):
            found[f.name] = f.coerce(value, type(model).__name__)
    return found


def _descriptive_only(meta: Weights | None, arch: str, task: str) -> Weights:
    # A model saved without new metadata keeps what describes its inputs and outputs, but not the
    # metrics, recipe or pins of the weight it started from: those were measured on other parameters.
    fresh = Weights(arch=arch, tag="local", task=task)
    if meta is None:
        return fresh
    return fresh.replace(
        labels=meta.labels,
        input_size=meta.input_size,
        mean=meta.mean,
        std=meta.std,
        dataset=meta.dataset,
        license=meta.license,
        papers=meta.papers,
        description=meta.description or f"derived from {meta.name}",
    )


def _normalise_args(args: dict[str, Any]) -> dict[str, Any]:
    return {k: _normalise(v) for k, v in args.items()}
