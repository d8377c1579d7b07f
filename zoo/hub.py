"""Weights on the Hugging Face Hub: resolve, download, verify, push, pull and bundle.

Resolution order for a weight ``arch.tag``: a folder of that name in a hub folder (``ZOO_HUB_DIR`` entries,
then the in-tree ``hub/``), then the Hugging Face cache at the weight's pinned revision, then a download of
that revision. Every download is checked against the sha256 of ``model.safetensors`` before it is used.

Publishing: `push_to_hub` uploads a weight folder as one commit and records the commit sha as the weight's
pinned ``revision`` in the *local* folder's ``config.json`` (a file cannot hold the sha of its own commit, so
the pushed ``config.json`` names the repo but no revision; the pin lives in the local copy, e.g. the zoo's
in-tree ``hub/`` that ships with the code). `pull` fills the HF cache for offline use, and `bundle` writes a
folder that ``ZOO_HUB_DIR`` can point at on a machine with no network at all.

``huggingface_hub`` is imported lazily, at call time: it reads ``HF_ENDPOINT`` and friends when imported,
so a process (or a test) can set them before the first weight is fetched.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zoo.errors import HubError, UnknownModelError, WeightsError
from zoo.registry import Weights, get_weights, hub_dirs
from zoo.weights import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, atomic_write_bytes, file_sha256, write_json

__all__ = [
    "ChecksumError",
    "FileUnavailable",
    "bundle",
    "download_repo",
    "fetch_file",
    "is_offline",
    "local_weight_folder",
    "pull",
    "push_to_hub",
    "resolve_weight_folder",
]

_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
HF_PREFIX = "hf-hub:"
REQUIRED_FILES = (CONFIG_NAME, WEIGHTS_NAME)


def is_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set, read now (not at import) so it can be toggled at run time."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "on", "yes", "true"}


def local_weight_folder(name: str) -> Path | None:
    """The first hub folder (``ZOO_HUB_DIR`` entries, then the in-tree ``hub/``) holding weight `name`."""
    for hub in hub_dirs():
        folder = hub / name
        if all((folder / f).is_file() for f in REQUIRED_FILES):
            return folder
    return None


def resolve_weight_folder(weights: Weights) -> Path:
    """A folder holding the weight's config.json and model.safetensors, fetched only if not found locally."""
    folder = local_weight_folder(weights.name)
    if folder is not None:
        return folder
    if not weights.hf_repo:
        raise HubError(
            f"weight '{weights.name}' has no local copy in {[str(d) for d in hub_dirs()]} and no Hugging Face "
            "repo to download from. Re-train it with its recipe (`zoo train`) or point ZOO_HUB_DIR at a bundle."
        )
    return download_repo(weights.hf_repo, weights.revision, name=weights.name, sha256=weights.sha256)


def parse_hf_name(name: str) -> tuple[str, str | None]:
    """``hf-hub:org/repo[@revision]`` -> (repo_id, revision or None)."""
    repo_id, _, revision = (
        name[len(HF_PREFIX) :].partition("@") if name.startswith(HF_PREFIX) else ("", "", "")
    )
    if not _REPO_ID.match(repo_id):
        raise HubError(f"'{name}' is not 'hf-hub:org/repo[@revision]'")
    return repo_id, revision or None


# -- downloading ------------------------------------------------------------------------------------------


def download_repo(
    repo_id: str,
    revision: str | None = None,
    name: str | None = None,
    sha256: str | None = None,
    all_files: bool = False,
    force_weights: bool = False,
) -> Path:
    """Fetch a repo in zoo layout into the HF cache and verify it; returns its snapshot folder.

    config.json is fetched first and fixes the commit: every other file comes from that same commit, even if
    the branch moves meanwhile. A commit sha is served from the cache without touching the network. The
    weights file must match `sha256` (the pin of a registered weight) or else the sha256 recorded in the
    repo's own config.json; ``all_files`` also fetches the model card and the extra files config.json names,
    and ``force_weights`` downloads the weights file again over the cached copy.
    Every client exception becomes one `HubError` that names the repo, the revision and what to do.
    """
    what = _describe(repo_id, revision, name)
    config_path = _fetch(repo_id, CONFIG_NAME, revision, what)
    folder = config_path.parent
    commit = folder.name if _COMMIT_SHA.match(folder.name) else revision
    weights_path = _fetch(repo_id, WEIGHTS_NAME, commit, what, force=force_weights)
    if weights_path.parent != folder:
        raise HubError(f"files of {what} resolved to different snapshots ({folder}, {weights_path.parent})")
    config = _read_repo_config(config_path, what)
    expected = sha256 or (config.get("weights") or {}).get("sha256")
    if not expected:
        raise HubError(
            f"{CONFIG_NAME} of {what} records no sha256 of {WEIGHTS_NAME}, so the download cannot be verified. "
            "Publish weights with zoo.save_pretrained + `zoo push`, which record it."
        )
    _check_sha256(weights_path, expected, what, name or f"{HF_PREFIX}{repo_id}@{commit}")
    files = config.get("files") or {}
    needed = [files[role] for role in _runtime_roles(config) if role in files]
    for filename in needed:  # what inference needs besides the weights: not optional
        _fetch(repo_id, filename, commit, what)
    if all_files:
        for filename in (CARD_NAME, *files.values()):
            if filename in needed:
                continue
            with contextlib.suppress(FileUnavailable):  # the card and extras are welcome, not required
                _fetch(repo_id, filename, commit, what)
    return folder


def _runtime_roles(config: dict[str, Any]) -> tuple[str, ...]:
    """The ``files`` roles the weight's task needs at inference (`zoo.tasks.Task.runtime_files`)."""
    from zoo.tasks import UnknownTaskError, get_task

    task = (config.get("weights") or {}).get("task")
    try:
        return tuple(get_task(task).runtime_files) if task else ()
    except UnknownTaskError:  # a task this version of the zoo does not know: nothing more to fetch
        return ()


def fetch_file(repo_id: str, filename: str, revision: str | None = None) -> Path:
    """One file of any Hugging Face repo through the HF cache (offline: the cache only), with the zoo's
    error messages; for repos not in zoo layout, such as timm's (``zoo.importing``)."""
    return _fetch(repo_id, filename, revision, _describe(repo_id, revision, None))


def _describe(repo_id: str, revision: str | None, name: str | None) -> str:
    return f"'{repo_id}' at revision '{revision or 'main'}'" + (f" (weight '{name}')" if name else "")


class FileUnavailable(HubError):
    """A file that the repo does not have, or that is not cached while the hub cannot be asked."""


def _fetch(repo_id: str, filename: str, revision: str | None, what: str, force: bool = False) -> Path:
    """One file through the HF cache (a commit sha is looked up locally first), errors made clear."""
    import huggingface_hub
    from huggingface_hub import errors

    offline = is_offline()
    try:
        if force and not offline:
            return Path(
                huggingface_hub.hf_hub_download(
                    repo_id, filename, revision=revision, force_download=True, library_name="zoo"
                )
            )
        if offline or (revision and _COMMIT_SHA.match(revision)):
            try:
                return Path(
                    huggingface_hub.hf_hub_download(
                        repo_id, filename, revision=revision, local_files_only=True, library_name="zoo"
                    )
                )
            except errors.LocalEntryNotFoundError:
                if offline:
                    raise
        return Path(huggingface_hub.hf_hub_download(repo_id, filename, revision=revision, library_name="zoo"))
    except errors.LocalEntryNotFoundError as err:  # (a subclass of EntryNotFoundError: test it first)
        raise FileUnavailable(_unreachable_message(what, filename, offline, err.__cause__)) from None
    except errors.RepositoryNotFoundError:
        raise HubError(
            f"Hugging Face repo {what} was not found, or it is private and no token that can read it was "
            "given. Check the repo id, and log in (`hf auth login`) or set HF_TOKEN."
        ) from None
    except errors.RevisionNotFoundError:
        raise HubError(
            f"revision '{revision}' does not exist in Hugging Face repo '{repo_id}'. Use a branch, tag or commit "
            "sha that the repo has (see its commit history), or drop '@revision' for main."
        ) from None
    except errors.EntryNotFoundError:
        raise FileUnavailable(
            f"{filename} is missing from Hugging Face repo {what}: it is not in zoo layout "
            f"({', '.join(REQUIRED_FILES)}). Publish it with zoo.save_pretrained and `zoo push`."
        ) from None
    except errors.HfHubHTTPError as err:
        raise HubError(f"{_http_status_text(err)} for {filename} of {what}. {_RETRY_HINT}") from None
    except ValueError as err:  # force_download=True reports a failed request this way
        if not force:
            raise
        raise HubError(_unreachable_message(what, filename, offline, err.__cause__)) from None


_RETRY_HINT = (
    "Retry later; to work without the hub, run `zoo bundle NAME --out DIR` on a connected machine and "
    "point ZOO_HUB_DIR at DIR."
)


def _http_status_text(err: BaseException) -> str:
    status = getattr(getattr(err, "response", None), "status_code", "?")
    return f"the Hugging Face Hub ({_endpoint()}) answered HTTP {status}"


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _unreachable_message(what: str, filename: str, offline: bool, cause: BaseException | None) -> str:
    if not offline and cause is not None and getattr(cause, "response", None) is not None:
        return f"{_http_status_text(cause)} for {filename} of {what}, which is not in the Hugging Face cache. {_RETRY_HINT}"
    reason = (
        "HF_HUB_OFFLINE is set" if offline else f"the Hugging Face Hub ({_endpoint()}) could not be reached"
    )
    return (
        f"{filename} of {what} is not in the Hugging Face cache and {reason}. Download it on a connected "
        "machine (`zoo pull NAME`), or copy a bundle (`zoo bundle NAME --out DIR`) and set ZOO_HUB_DIR=DIR."
    )


def _read_repo_config(path: Path, what: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise HubError(
            f"{CONFIG_NAME} of {what} is not valid JSON ({err}); it is not in zoo layout"
        ) from None
    if not isinstance(config, dict) or "architecture" not in config:
        raise HubError(f"{CONFIG_NAME} of {what} has no 'architecture': it is not in zoo layout")
    return config


class ChecksumError(HubError):
    """A weights file whose sha256 differs from its pin: never loaded."""


def _check_sha256(path: Path, expected: str, what: str, pull_name: str) -> None:
    actual = file_sha256(path)
    if actual != expected:
        raise ChecksumError(
            f"{WEIGHTS_NAME} of {what} failed its sha256 check (expected {expected}, got {actual}); it was "
            f"not loaded. The copy in the HF cache ({path}) was modified or corrupted, or the repo holds a "
            f"half-published or different weight at that revision. Run `zoo pull {pull_name}` to download it "
            "again; if that fails too, load a pinned revision that `zoo push` reported."
        )


# -- publishing -------------------------------------------------------------------------------------------


def push_to_hub(
    name_or_folder: str | os.PathLike,
    repo_id: str,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Publish a weight folder to the Hugging Face Hub as one commit; returns the commit sha.

    ``name_or_folder`` is a weight ``arch.tag`` found in a hub folder, or a folder written by
    zoo.save_pretrained. The repo is created if needed (``private`` applies only then) and ``revision`` (a
    branch, created from main if missing) becomes an exact copy of the weight: config.json (naming
    ``repo_id``), model.safetensors, the re-rendered model card and the extra files config.json lists; other
    files on that branch are deleted in the same commit. Then the local folder's config.json is pinned to
    the new commit (atomically), so ``zoo.create_model(name)`` loads exactly what was pushed; a weight
    declared in code (`register_weights`) keeps the pin written there: update it with the returned sha.
    The token (``token=``, else HF_TOKEN or `hf auth login`) is only ever sent to the hub.
    """
    import huggingface_hub
    from huggingface_hub import errors

    from zoo.card import render_model_card

    if not _REPO_ID.match(repo_id):
        raise HubError(f"repo id '{repo_id}' is not 'org/name'")
    if revision and _COMMIT_SHA.match(revision):
        raise HubError(f"--revision must name a branch to push to, not a commit sha ({revision})")
    folder = _folder_to_push(name_or_folder)
    config = _read_repo_config(folder / CONFIG_NAME, f"folder {folder}")
    weights = dict(config.get("weights") or {})
    weight_name = f"{config['architecture']}.{weights.get('tag', 'local')}"
    label = f"{weight_name} ({folder})"
    if not weights.get("sha256"):
        raise HubError(
            f"{folder / CONFIG_NAME} records no sha256: re-save the weight with zoo.save_pretrained"
        )
    actual = file_sha256(folder / WEIGHTS_NAME)
    if actual != weights["sha256"]:
        raise HubError(
            f"{folder / WEIGHTS_NAME} does not match the sha256 in its config.json (expected {weights['sha256']}, "
            f"got {actual}); refusing to publish it. Re-save the weight with zoo.save_pretrained."
        )
    target = f"'{repo_id}' (branch '{revision or 'main'}')"
    if is_offline():
        raise HubError(
            f"cannot push {label} to {target}: HF_HUB_OFFLINE is set. Unset it on a connected machine."
        )
    if token is None and huggingface_hub.get_token() is None:
        raise HubError(
            f"pushing {label} to {target} needs a Hugging Face token with write access: log in "
            "(`hf auth login`), set HF_TOKEN, or pass token=."
        )

    pushed = {**config, "weights": {**weights, "hf_repo": repo_id, "revision": None}}
    api = huggingface_hub.HfApi(library_name="zoo")
    with tempfile.TemporaryDirectory(prefix="zoo-push-") as tmp:
        staging = Path(
            tmp
        )  # the folder as published: its config names the repo, its card says how to load it
        for filename in (WEIGHTS_NAME, *(config.get("files") or {}).values()):
            if not (folder / filename).is_file():
                raise HubError(f"{label} lacks {filename}, which its config.json lists; re-save the weight")
            shutil.copyfile(folder / filename, staging / filename)
        write_json(staging / CONFIG_NAME, pushed)
        atomic_write_bytes(staging / CARD_NAME, render_model_card(pushed).encode())
        try:
            api.create_repo(repo_id, token=token, private=private, exist_ok=True)
            if revision and revision != "main":
                api.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=staging,
                revision=revision,
                token=token,
                commit_message=commit_message or f"Upload {weight_name} with zoo",
                delete_patterns="*",
            )
        except errors.HfHubHTTPError as err:
            raise HubError(_push_failure(label, target, err)) from None
        except _network_errors() as err:
            raise HubError(
                f"pushing {label} to {target} failed: the Hugging Face Hub ({_endpoint()}) could not be reached "
                f"or the connection broke ({type(err).__name__}). {_PIN_UNCHANGED}"
            ) from None

    sha = commit.oid
    pinned = {**config, "weights": {**weights, "hf_repo": repo_id, "revision": sha}}
    write_json(folder / CONFIG_NAME, pinned)
    atomic_write_bytes(folder / CARD_NAME, render_model_card(pinned).encode())
    from zoo.registry import _load_hub_weights

    _load_hub_weights.cache_clear()  # the registry reads the new pin from now on
    return sha


def _folder_to_push(name_or_folder: str | os.PathLike) -> Path:
    text = os.fspath(name_or_folder)
    path = Path(text)
    if path.is_dir():
        if not all((path / f).is_file() for f in REQUIRED_FILES):
            raise HubError(
                f"{path} is not a weight folder ({', '.join(REQUIRED_FILES)}); write one with zoo.save_pretrained"
            )
        return path
    folder = local_weight_folder(text)
    if folder is None:
        raise HubError(
            f"'{text}' is neither a weight folder nor a weight with a local copy in "
            f"{[str(d) for d in hub_dirs()]}. Pass the folder zoo.save_pretrained wrote, or set ZOO_HUB_DIR."
        )
    return folder


def _push_failure(label: str, target: str, err: Any) -> str:
    from huggingface_hub import errors

    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, errors.RepositoryNotFoundError) or status in (401, 403):
        return (
            f"the Hugging Face Hub refused to push {label} to {target} (HTTP {status}): the token is missing, "
            "invalid or lacks write access to that namespace. Log in (`hf auth login`) or set HF_TOKEN."
        )
    return f"pushing {label} to {target} failed: {_http_status_text(err)}. {_PIN_UNCHANGED}"


_PIN_UNCHANGED = (
    "The local pin is unchanged, so users keep loading the last pushed commit; re-run `zoo push` once the "
    "hub is reachable (files it already has are not committed again)."
)


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport errors of the HTTP library the installed huggingface_hub uses (it changed over versions)."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, attr in (
        ("httpx2", "TransportError"),
        ("httpx", "TransportError"),
        ("requests", "ConnectionError"),
    ):
        with contextlib.suppress(ImportError, AttributeError):
            found.append(getattr(importlib.import_module(module), attr))
    return tuple(found)


# -- pulling and bundling ---------------------------------------------------------------------------------


def _as_list(names: str | Iterable[str]) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


def pull(names: str | Iterable[str]) -> list[Path]:
    """Download weights into the HF cache at their pinned revisions and verify their sha256.

    ``names`` are registered weights (``arch.tag``) or ``hf-hub:org/repo[@revision]``. A cached copy that
    fails its check is downloaded again once; the snapshot folders are returned. Afterwards the weights load
    with ``HF_HUB_OFFLINE=1``.
    """
    folders = []
    for name in _as_list(names):
        if name.startswith(HF_PREFIX):
            repo_id, revision = parse_hf_name(name)
            sha256 = None
        else:
            meta = get_weights(name)
            if not meta.hf_repo:
                raise HubError(
                    f"weight '{name}' names no Hugging Face repo, so there is nothing to pull; it loads from "
                    f"{local_weight_folder(name) or 'its hub folder'}. Publish it first with `zoo push`."
                )
            repo_id, revision, sha256 = meta.hf_repo, meta.revision, meta.sha256
        try:
            folder = download_repo(repo_id, revision, name=name, sha256=sha256, all_files=True)
        except ChecksumError:
            if is_offline():
                raise
            folder = download_repo(
                repo_id, revision, name=name, sha256=sha256, all_files=True, force_weights=True
            )
        folders.append(folder)
    return folders


def bundle(names: str | Iterable[str], out_dir: str | os.PathLike) -> list[Path]:
    """Copy verified weights into `out_dir`, one ``arch.tag`` folder each, for ``ZOO_HUB_DIR=out_dir``.

    Each weight comes from its hub folder, else the HF cache or a download at its pinned revision; its
    sha256 is checked before and after copying. On the air-gapped machine, ``ZOO_HUB_DIR=out_dir`` makes
    ``zoo.create_model(name, pretrained=True)`` load it without touching the network.
    """
    out_dir = Path(out_dir)
    written = []
    for name in _as_list(names):
        if name.startswith(HF_PREFIX):
            raise HubError(
                f"bundle takes registered weight names (arch.tag), not '{name}'. For a repo of your own, "
                "`zoo pull` it and load the snapshot folder it prints with zoo.create_model(path)."
            )
        try:
            meta = get_weights(name)
        except (UnknownModelError, WeightsError) as err:
            raise HubError(f"cannot bundle '{name}': {err}") from None
        source = local_weight_folder(name)
        if source is None:
            if not meta.hf_repo:
                raise HubError(
                    f"weight '{name}' has no local copy and no Hugging Face repo to bundle it from"
                )
            source = download_repo(meta.hf_repo, meta.revision, name=name, sha256=meta.sha256, all_files=True)
        config = _read_repo_config(source / CONFIG_NAME, f"'{name}' ({source})")
        expected = meta.sha256 or (config.get("weights") or {}).get("sha256")
        if not expected:
            raise HubError(f"weight '{name}' ({source}) records no sha256, so it cannot be bundled verified")
        _check_sha256(source / WEIGHTS_NAME, expected, f"'{name}' ({source})", name)
        # The bundle carries the pin, so its config.json says where the weight came from.
        config["weights"] = {
            **(config.get("weights") or {}),
            "hf_repo": meta.hf_repo or (config.get("weights") or {}).get("hf_repo"),
            "revision": meta.revision or (config.get("weights") or {}).get("revision"),
        }
        written.append(_write_bundle_folder(source, config, out_dir / name, expected))
    return written


def _write_bundle_folder(source: Path, config: dict[str, Any], target: Path, sha256: str) -> Path:
    """Build the folder beside `target`, verify it, then swap it in: a reader never sees half a folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for filename in (WEIGHTS_NAME, CARD_NAME, *(config.get("files") or {}).values()):
            if (source / filename).is_file():
                shutil.copyfile(source / filename, staging / filename)
        write_json(staging / CONFIG_NAME, config)
        if file_sha256(staging / WEIGHTS_NAME) != sha256:
            raise HubError(f"copying {source / WEIGHTS_NAME} to {target} changed its bytes; check the disk")
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
