"""Resolve weight folders: in-tree / ``ZOO_HUB_DIR`` copy, then the HF cache, then a pinned HF download.

``huggingface_hub`` is imported lazily, at call time: it reads ``HF_ENDPOINT`` and friends when imported,
so a process (or a test) can set them before the first weight is fetched.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from zoo.errors import HubError
from zoo.registry import Weights, hub_dirs
from zoo.weights import CONFIG_NAME, WEIGHTS_NAME

__all__ = ["download_repo", "is_offline", "local_weight_folder", "resolve_weight_folder"]

_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
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
    return download_repo(weights.hf_repo, weights.revision, name=weights.name)


def download_repo(repo_id: str, revision: str | None = None, name: str | None = None) -> Path:
    """Fetch config.json and model.safetensors of a repo in zoo layout; returns the snapshot folder.

    A pinned commit sha is served from the HF cache without touching the network. Every client exception
    becomes one `HubError` that names the repo, the revision and what to do.
    """
    import huggingface_hub
    from huggingface_hub import errors

    what = f"'{repo_id}' at revision '{revision or 'main'}'" + (f" (weight '{name}')" if name else "")
    offline = is_offline()
    paths = []
    for filename in REQUIRED_FILES:
        try:
            path = None
            if offline or (revision and _COMMIT_SHA.match(revision)):
                try:
                    path = huggingface_hub.hf_hub_download(
                        repo_id, filename, revision=revision, local_files_only=True, library_name="zoo"
                    )
                except errors.LocalEntryNotFoundError:
                    if offline:
                        raise
            if path is None:
                path = huggingface_hub.hf_hub_download(
                    repo_id, filename, revision=revision, library_name="zoo"
                )
        except errors.LocalEntryNotFoundError:  # (a subclass of EntryNotFoundError: test it first)
            raise HubError(_offline_message(what, filename, offline)) from None
        except errors.RepositoryNotFoundError:
            raise HubError(
                f"Hugging Face repo {what} was not found, or it is private and no token was given. Check the "
                "repo id, or log in (`hf auth login`) / set HF_TOKEN."
            ) from None
        except errors.RevisionNotFoundError:
            raise HubError(
                f"revision '{revision}' does not exist in Hugging Face repo '{repo_id}'. Use a branch, tag or "
                "commit sha that the repo has (see its commit history), or drop '@revision' for main."
            ) from None
        except errors.EntryNotFoundError:
            raise HubError(
                f"{filename} is missing from Hugging Face repo {what}: it is not in zoo layout "
                f"({', '.join(REQUIRED_FILES)}). Publish it with `zoo push` or zoo.save_pretrained."
            ) from None
        except errors.HfHubHTTPError as err:
            status = getattr(getattr(err, "response", None), "status_code", "?")
            raise HubError(
                f"the Hugging Face Hub answered HTTP {status} for {filename} of {what}. Retry later; to work "
                "without the hub, use `zoo bundle` on a connected machine and point ZOO_HUB_DIR at it."
            ) from None
        paths.append(Path(path))
    folder = paths[0].parent
    if any(p.parent != folder for p in paths):
        raise HubError(f"files of {what} resolved to different snapshots: {paths}; clear the HF cache entry")
    return folder


def _offline_message(what: str, filename: str, offline: bool) -> str:
    reason = "HF_HUB_OFFLINE is set" if offline else "the hub could not be reached"
    return (
        f"{filename} of {what} is not in the Hugging Face cache and {reason}. Download it on a connected "
        "machine (`zoo pull NAME`), or copy a bundle (`zoo bundle NAME --out DIR`) and set ZOO_HUB_DIR=DIR."
    )
