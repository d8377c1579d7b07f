"""Bring existing pretrained weights in: torchvision and timm checkpoints become zoo weight folders.

``zoo import SOURCE --arch ARCH --out DIR`` (and `import_weights`) reads a checkpoint for an architecture the
zoo has, maps its keys through the family's hook (``state_dict_from(library, state_dict)`` in the family's
module, e.g. `zoo.models.resnet`), loads it strictly (a key left over on either side is an error that lists
it, never a partial load) and writes a weight folder: ``model.safetensors``, ``config.json`` with the labels,
the preprocessing (resize, centre crop, mean, std, interpolation), the source, its sha256 and licence, and a
rendered card. The folder loads with ``zoo.create_model(DIR)``, serves ``zoo predict DIR image.jpg`` and is
an ``encoder_weights=`` for every encoder-based builder.

Sources:
  - a torchvision checkpoint, named as torchvision's cache under ``TORCH_HOME`` names it
    (``resnet50-11ad3fa6.pth``): the hex after the last ``-`` must prefix the file's sha256, as
    ``torch.hub.load_state_dict_from_url(check_hash=True)`` verifies;
  - a timm checkpoint: ``model.safetensors`` beside timm's ``config.json`` (a folder, the file itself, or a
    Hugging Face repo in timm's layout such as ``timm/resnet50.a1_in1k``, fetched through
    ``huggingface_hub``: from its cache when offline);
  - a folder holding one of the above.

Safety: ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt`` files are read with ``torch.load(weights_only=True)``
only; a file that needs any other unpickling is refused with the reason, and pickle-only formats
(``.pkl``, ``.pickle``, ``.joblib``) are refused outright. ImageNet class names and preprocessing come
from torchvision's bundled weight metadata: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, WeightsError

__all__ = ["Checkpoint", "add_commands", "imagenet_labels", "import_weights", "read_checkpoint"]

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".tar")
PICKLE_ONLY_SUFFIXES = (".pkl", ".pickle", ".joblib", ".npy", ".npz")
TIMM_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_HF_REPO = re.compile(r"^(hf-hub:)?[\w.-]+/[\w.-]+(@[\w./-]+)?$")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Checkpoint:
    """A checkpoint as read: its tensors and what its library says about them."""

    state_dict: dict[str, Any]
    library: str  # "torchvision" or "timm": which layout the family hook maps from
    source: dict[str, Any]  # file or repo, sha256 of what was read, licence, the publisher's name for it
    arch: str | None = None  # the architecture the checkpoint names (file name, timm config)
    tag: str | None = None  # a tag for the zoo weight: torchvision's enum name, timm's pretrained tag
    labels: tuple[str, ...] = ()
    input_size: tuple[int, int, int] | None = None
    resize_size: int | None = None
    interpolation: str = "bilinear"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    papers: tuple[str, ...] = ()
    # True when `arch` is read off a file name (a guess), False when a config states it.
    arch_from_file_name: bool = False
    dataset: str | None = None  # what the publisher trained on, where its metadata says


# -- reading ---------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_pin(path: Path, actual: str, expected: str | None) -> None:
    if expected and actual != expected.lower():
        raise WeightsError(
            f"sha256 of {path} is {actual}, not the expected {expected}: the file is corrupted, truncated or "
            "was modified. Download it again from its publisher."
        )


def torch_load_tensors(path: Path) -> dict[str, Any]:
    """A ``.pth``-style file's state dict through ``torch.load(weights_only=True)``, never plain unpickling.

    Training checkpoints that wrap the weights (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped;
    a ``module.`` prefix (DataParallel / DDP) is dropped.
    """
    import pickle

    import torch

    if path.suffix in PICKLE_ONLY_SUFFIXES:
        raise WeightsError(
            f"{path} is a {path.suffix} file: reading it means unpickling arbitrary Python objects, which can run "
            "code. The zoo imports safetensors and torch files that torch.load(weights_only=True) accepts; save "
            "the state dict with safetensors.torch.save_file where you trust the file."
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsError(
            f"{path} needs unpickling beyond tensors and plain containers, so it is refused (torch.load with "
            f"weights_only=True said: {reason}). Only a file you trust may be loaded with full unpickling: do "
            "that yourself and save its state_dict with safetensors.torch.save_file, then import that."
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise WeightsError(f"{path} is not a readable torch file ({err}); it may be truncated") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not data:
        raise WeightsError(
            f"{path} holds {type(data).__name__}, not a state dict (a mapping of names to tensors)"
        )
    return _tensors_only(data, path)


def _tensors_only(data: dict[str, Any], where: Any) -> dict[str, Any]:
    import torch

    bad = [k for k, v in data.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{where} has entries that are not tensors: {bad[:10]}; expected a state dict")
    prefix = "module."
    if all(k.startswith(prefix) for k in data):
        data = {k[len(prefix) :]: v for k, v in data.items()}
    return dict(data)


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return _tensors_only(load_file(path), path)
    except SafetensorError as err:
        raise WeightsError(
            f"{path} is not a readable safetensors file ({err}); it may be truncated"
        ) from None


def imagenet_labels() -> tuple[str, ...]:
    """ImageNet-1k class names in index order, from torchvision's bundled weight metadata (no download)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _torchvision_weight(arch: str, filename: str) -> Any:
    """torchvision's weight enum entry whose file this is, or None (an unknown or renamed file)."""
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(arch)
    except (ValueError, KeyError):
        return None
    return next((w for w in enum if Path(w.url).name == filename), None)


def read_torchvision(path: Path, sha256: str | None = None) -> Checkpoint:
    """A torchvision checkpoint file, its hash prefix verified as ``torch.hub`` does before it is read."""
    from torch.hub import HASH_REGEX

    match = HASH_REGEX.search(path.name)
    prefix = match.group(1) if match else ""
    if not prefix and not sha256:
        raise WeightsError(
            f"{path.name} carries no hash prefix, so it cannot be verified. torchvision's cache names files "
            "ARCH-<first hex digits of the sha256>.pth (e.g. resnet50-11ad3fa6.pth): keep that name, or pass "
            "sha256= (--sha256) with the file's full sha256."
        )
    actual = _sha256(path)
    if prefix and not actual.startswith(prefix):
        raise WeightsError(
            f"{path.name}: the sha256 of the file ({actual[: max(len(prefix), 8)]}...) does not start with the "
            f"hash prefix in its name ({prefix}), as torch.hub's check_hash requires: the file is corrupted, "
            "truncated or not the one published. Delete it and let torchvision download it again."
        )
    _check_pin(path, actual, sha256)
    arch = path.name[: match.start()] if match else path.stem
    checkpoint = Checkpoint(
        torch_load_tensors(path),
        "torchvision",
        {"library": "torchvision", "file": path.name, "sha256": actual, "license": "bsd-3-clause"},
        arch=arch,
        tag="torchvision",
        arch_from_file_name=True,
    )
    weight = _torchvision_weight(arch, path.name)
    if weight is not None:
        _describe_torchvision(checkpoint, weight)
    return checkpoint


def _describe_torchvision(checkpoint: Checkpoint, weight: Any) -> None:
    """Labels, preprocessing and reported metrics from torchvision's enum entry (bundled, no download)."""
    transform = weight.transforms()
    meta = weight.meta
    checkpoint.tag = weight.name.lower()
    checkpoint.labels = tuple(meta.get("categories") or ())
    checkpoint.dataset = "coco" if weight.name.startswith("COCO") else "imagenet-1k"
    resize = getattr(transform, "resize_size", None)
    if getattr(transform, "crop_size", None):  # classification: resize, then centre crop
        crop = int(transform.crop_size[0])
        checkpoint.input_size = (3, crop, crop)
        checkpoint.resize_size = int(transform.resize_size[0])
    elif resize:  # segmentation: torchvision resizes the shorter side; the zoo keeps the image's size
        side = int(resize[0] if isinstance(resize, (list, tuple)) else resize)
        checkpoint.input_size = (3, side, side)
    if hasattr(transform, "mean"):  # detectors normalise inside the model: no mean/std outside it
        checkpoint.interpolation = transform.interpolation.value
        checkpoint.mean, checkpoint.std = tuple(transform.mean), tuple(transform.std)
    checkpoint.source.update(
        {
            "weights": f"{type(weight).__name__}.{weight.name}",
            "url": weight.url,
            "recipe": meta.get("recipe"),
            "reported_metrics": {
                f"{dataset} {name}": value
                for dataset, values in (meta.get("_metrics") or {}).items()
                for name, value in values.items()
            },
        }
    )


def read_timm(folder: Path, weights_file: Path | None = None, sha256: str | None = None) -> Checkpoint:
    """timm's Hugging Face layout: ``config.json`` (architecture, pretrained_cfg, label names) beside the
    weights (``model.safetensors``, else ``pytorch_model.bin`` read with weights_only)."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise WeightsError(
            f"{folder} has no config.json: a timm checkpoint is model.safetensors beside timm's config.json "
            "(as timm.models.save_for_hf / push_to_hf_hub write it)"
        )
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise WeightsError(f"{config_path} is not valid JSON ({err})") from None
    if "weights" in config and "model_args" in config:
        raise ConfigError(
            f"{folder} is already a zoo weight folder: load it with zoo.create_model('{folder}')"
        )
    if "architecture" not in config:
        raise WeightsError(f"{config_path} has no 'architecture': it is not timm's config.json")
    if weights_file is None:
        weights_file = next((folder / n for n in TIMM_WEIGHT_FILES if (folder / n).is_file()), None)
        if weights_file is None:
            raise WeightsError(f"{folder} has config.json but no weights ({' or '.join(TIMM_WEIGHT_FILES)})")
    actual = _sha256(weights_file)
    _check_pin(weights_file, actual, sha256)
    tensors = (
        _read_safetensors(weights_file)
        if weights_file.suffix == ".safetensors"
        else torch_load_tensors(weights_file)
    )
    cfg = config.get("pretrained_cfg") or {}
    arch = config["architecture"]
    tag = cfg.get("tag")
    checkpoint = Checkpoint(
        tensors,
        "timm",
        {
            "library": "timm",
            "file": weights_file.name,
            "sha256": actual,
            "license": cfg.get("license") or config.get("license") or "unknown",
            "weights": f"{arch}.{tag}" if tag else arch,
        },
        arch=arch,
        tag=tag or "timm",
    )
    size = cfg.get("input_size")
    if size:
        checkpoint.input_size = tuple(int(v) for v in size)  # type: ignore[assignment]
        crop_pct = cfg.get("crop_pct") or 1.0
        # timm's evaluation transform: resize the shorter side to floor(crop / crop_pct), centre-crop.
        checkpoint.resize_size = int(checkpoint.input_size[-1] / crop_pct)
    checkpoint.interpolation = cfg.get("interpolation") or "bilinear"
    if cfg.get("mean") and cfg.get("std"):
        checkpoint.mean, checkpoint.std = tuple(cfg["mean"]), tuple(cfg["std"])
    if config.get("label_names"):
        checkpoint.labels = tuple(map(str, config["label_names"]))
    papers = cfg.get("paper_ids")
    if papers:
        checkpoint.papers = tuple(p.strip() for p in str(papers).split(",") if p.strip())
    return checkpoint


def _fetch_hf(repo: str, sha256: str | None) -> Checkpoint:
    """A timm repo through the Hugging Face cache (``HF_HUB_OFFLINE=1``: the cache only)."""
    from zoo.hub import FileUnavailable, fetch_file

    repo = repo.removeprefix("hf-hub:")
    repo_id, _, revision = repo.partition("@")
    config = fetch_file(repo_id, "config.json", revision or None)
    weights = None
    for name in TIMM_WEIGHT_FILES:
        try:
            weights = fetch_file(repo_id, name, revision or None)
            break
        except FileUnavailable:
            continue
    if weights is None:
        raise WeightsError(
            f"Hugging Face repo '{repo_id}' has none of {TIMM_WEIGHT_FILES}: not timm's layout"
        )
    checkpoint = read_timm(config.parent, weights, sha256)
    checkpoint.source["repo"] = repo_id
    checkpoint.source["revision"] = weights.parent.name  # the snapshot folder is named by its commit
    return checkpoint


def read_checkpoint(source: str | os.PathLike, sha256: str | None = None) -> Checkpoint:
    """Read any supported source (see the module docstring); ``sha256`` pins the weights file's hash."""
    path = Path(source)
    if path.is_dir():
        if (path / "config.json").is_file():
            return read_timm(path, sha256=sha256)
        candidates = sorted(p for p in path.iterdir() if p.suffix in (*TORCH_SUFFIXES, ".safetensors"))
        if len(candidates) != 1:
            raise WeightsError(
                f"{path} holds {len(candidates)} checkpoint files ({', '.join(p.name for p in candidates) or 'none'}); "
                "give the file itself, or a folder in timm's layout (config.json + model.safetensors)"
            )
        path = candidates[0]
    if path.is_file():
        if path.suffix == ".safetensors":
            return read_timm(path.parent, path, sha256)
        if path.suffix in (*TORCH_SUFFIXES, *PICKLE_ONLY_SUFFIXES):
            if path.suffix in PICKLE_ONLY_SUFFIXES:
                torch_load_tensors(path)  # raises with the reason
            return read_torchvision(path, sha256)
        raise WeightsError(
            f"{path}: unknown checkpoint format '{path.suffix}'; expected a torchvision file "
            f"({', '.join(TORCH_SUFFIXES)}) or timm's model.safetensors"
        )
    if _HF_REPO.match(str(source)) and not str(source).startswith((".", "/")):
        return _fetch_hf(str(source), sha256)
    raise WeightsError(
        f"'{source}' is neither a file, a folder nor a Hugging Face repo id (ORG/NAME, e.g. timm/resnet50.a1_in1k)"
    )


# -- converting ------------------------------------------------------------------------------------------


def _family_hook(entry: Any, library: str) -> Any:
    module = sys.modules[entry.builder.__module__]
    hook = getattr(module, "state_dict_from", None)
    libraries = getattr(module, "CHECKPOINT_LIBRARIES", ())
    if hook is None or library not in libraries:
        from zoo.registry import entries

        able = sorted(
            {
                e.family
                for e in entries()
                if library in getattr(sys.modules[e.builder.__module__], "CHECKPOINT_LIBRARIES", ())
            }
        )
        raise ConfigError(
            f"the '{entry.family}' family (architecture '{entry.arch}') declares no mapping from {library} "
            f"checkpoints; families that do: {', '.join(able) or 'none'}. A family adds one with "
            "CHECKPOINT_LIBRARIES and state_dict_from(library, state_dict) (see zoo.models.resnet)."
        )
    return hook


def import_weights(
    source: str | os.PathLike,
    arch: str | None = None,
    out: str | os.PathLike | None = None,
    *,
    tag: str | None = None,
    sha256: str | None = None,
    license: str | None = None,
    labels: tuple[str, ...] | list[str] | None = None,
    library: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Turn a torchvision or timm checkpoint into a zoo weight folder at ``out``; returns the folder.

    ``arch`` defaults to the architecture the checkpoint names (its file name or timm's config) and must be
    registered. ``sha256`` pins the checkpoint file; ``license`` and ``labels`` override what the source
    says; ``library`` names the layout of a ``.pth`` file that is not torchvision's (``"timm"`` for the
    ``.pth`` files of timm's GitHub releases). The folder is written beside ``out`` and renamed into place, so a failed import leaves nothing
    half-written; an existing ``out`` is replaced only with ``overwrite=True``.
    """
    import torch

    from zoo.factory import create_model, save_pretrained
    from zoo.registry import Weights, get_entry, list_models
    from zoo.weights import load_state_dict_strict

    if out is None:
        raise ConfigError("give the weight folder to write (out=, --out DIR)")
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; pick another --out or pass --overwrite to replace it")
    checkpoint = read_checkpoint(source, sha256)
    if library is not None:
        checkpoint.library = checkpoint.source["library"] = library
    named = checkpoint.arch
    if checkpoint.arch_from_file_name and named and arch and named not in list_models():
        named = (
            None  # a file name that is no zoo architecture (e.g. resnet50_a1_0-14fe96d1.pth): --arch rules
        )
    arch = arch or named
    if not arch:
        raise ConfigError(f"{source} names no architecture the zoo has: pass --arch (one of `zoo list`)")
    if named and named != arch:
        raise ConfigError(
            f"{source} is a {checkpoint.library} '{checkpoint.arch}' checkpoint, not '{arch}': pass --arch "
            f"{checkpoint.arch}, or a checkpoint of '{arch}'"
        )
    entry = get_entry(arch)
    hook = _family_hook(entry, checkpoint.library)
    try:
        state_dict = hook(checkpoint.library, checkpoint.state_dict)
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None

    with torch.device("meta"):  # which attributes name the head and the stem: no memory, no initialisation
        probe = entry.builder()
    kwargs: dict[str, Any] = {}
    head = getattr(probe, "classifier", None)
    if head and f"{head}.weight" in state_dict:
        kwargs["num_classes"] = int(state_dict[f"{head}.weight"].shape[0])
    stem = getattr(probe, "first_conv", None)
    if stem and f"{stem}.weight" in state_dict:
        kwargs["in_chans"] = int(state_dict[f"{stem}.weight"].shape[1])
    # A family whose builder arguments show in the tensors (classes, an auxiliary head) reads them itself.
    family_kwargs = getattr(sys.modules[entry.builder.__module__], "import_kwargs", None)
    if family_kwargs is not None:
        try:
            kwargs.update(family_kwargs(checkpoint.library, state_dict))
        except ValueError as err:
            raise ConfigError(f"{source} does not fit '{arch}': {err}") from None
    model = create_model(arch, **kwargs)
    # Checkpoints written before BatchNorm counted its batches (torchvision's 2017 ResNets) lack the
    # counter: torch fills it with 0 when loading them, and so does the import. Nothing else is filled in.
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state_dict:
            state_dict[key] = torch.zeros_like(value)
    load_state_dict_strict(model, state_dict, source=f"{checkpoint.library} checkpoint {source}")

    num_classes = kwargs.get("num_classes")
    chosen = tuple(labels) if labels else checkpoint.labels
    if not chosen and num_classes == 1000:
        chosen = imagenet_labels()
    if chosen and num_classes is not None and len(chosen) != num_classes:
        raise ConfigError(
            f"{len(chosen)} labels given for a {num_classes}-class checkpoint; give one per class"
        )
    imagenet = num_classes == 1000
    input_size = checkpoint.input_size or ((kwargs.get("in_chans", 3), 224, 224) if imagenet else None)
    resize = checkpoint.resize_size or (256 if imagenet and not checkpoint.input_size else None)
    mean = checkpoint.mean or (IMAGENET_MEAN if imagenet else None)
    std = checkpoint.std or (IMAGENET_STD if imagenet else None)
    source_info = {k: v for k, v in checkpoint.source.items() if v not in (None, {}, "")}
    if license:
        source_info["license"] = license
    task_fields: dict[str, Any] = {}
    if entry.task == "image-classification":
        task_fields = {"resize_size": resize, "interpolation": checkpoint.interpolation}
    elif entry.task == "semantic-segmentation":
        # Any image size: padded to the output stride's multiple and cropped back, so masks keep the image's
        # pixels (torchvision's own transform resizes the shorter side to input_size first).
        task_fields = {"size_multiple": 8}
    weights = Weights(
        arch=arch,
        tag=tag or checkpoint.tag or checkpoint.library,
        task=entry.task,
        labels=chosen,
        input_size=input_size,
        mean=mean,
        std=std,
        dataset=checkpoint.dataset or ("imagenet-1k" if imagenet else None),
        license=source_info.get("license", "unknown"),
        papers=checkpoint.papers,
        description=f"{source_info.get('weights') or source_info.get('file')} imported from {checkpoint.library}",
        source=source_info,
        task_fields=task_fields,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_pretrained(model, staging, weights=weights)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


# -- command line ----------------------------------------------------------------------------------------


def _cmd_import(args: argparse.Namespace) -> int:
    folder = import_weights(
        args.source,
        args.arch,
        args.out,
        tag=args.tag,
        sha256=args.sha256,
        library=args.library,
        license=args.license,
        overwrite=args.overwrite,
    )
    config = json.loads((folder / "config.json").read_text())
    w = config["weights"]
    print(f"{folder}: {config['architecture']}.{w['tag']} from {w['source'].get('library')}")
    print(f"  sha256 of model.safetensors: {w['sha256']}")
    print(f"  load with zoo.create_model('{folder}'), or `zoo predict {folder} IMAGE`")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import", help="turn a torchvision or timm checkpoint into a zoo weight folder (verified, strict)"
    )
    p.add_argument(
        "source",
        help="a torchvision cache file (resnet50-11ad3fa6.pth), timm's model.safetensors or its folder, "
        "or a Hugging Face repo in timm's layout (timm/resnet50.a1_in1k)",
    )
    p.add_argument("--arch", default=None, help="the zoo architecture (default: the one the source names)")
    p.add_argument("--out", type=Path, required=True, help="the weight folder to write")
    p.add_argument(
        "--tag", default=None, help="the weight's tag (default: torchvision's or timm's name for it)"
    )
    p.add_argument("--sha256", default=None, help="the checkpoint file's expected sha256")
    p.add_argument(
        "--library",
        choices=("torchvision", "timm"),
        default=None,
        help="the layout of a .pth file (default: torchvision; timm's GitHub release files need timm)",
    )
    p.add_argument("--license", default=None, help="the weights' licence, where the source does not say")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.set_defaults(func=_cmd_import)
