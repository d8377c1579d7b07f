"""Publishing and pulling through the real huggingface_hub client, against the test hub (tests/hub_server.py).

The maintainer's side: a weight folder in a hub folder (``ZOO_HUB_DIR``), pushed with `zoo.push_to_hub`,
which pins the commit in that folder's config.json. The user's side: a checkout whose hub folder holds only
that pinned config.json, so the weights come from the Hub (or the HF cache, or a bundle).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
import uuid
from pathlib import Path

import pytest
import torch
from PIL import Image

import zoo
from tests.conftest import HF_TOKEN
from zoo import hub as zoo_hub
from zoo.card import render_model_card
from zoo.cli import main
from zoo.errors import HubError
from zoo.registry import Weights, _load_hub_weights, get_entry
from zoo.weights import file_sha256

NAME = "resnet8_small.pub"
SHA = re.compile(r"^[0-9a-f]{40}$")
X = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def new_repo_id(label: str) -> str:
    return f"zoo-test/{label}-{uuid.uuid4().hex[:8]}"


def make_weight(folder: Path, seed: int, tag: str = "pub") -> Path:
    """A small MNIST-shaped weight, with metadata, a recipe config and a training-curve image."""
    torch.manual_seed(seed)
    model = zoo.create_model("resnet8_small", in_chans=1, num_classes=10, img_size=28)
    curves = folder.parent / f"curves-{seed}.png"
    curves.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 8), (seed * 40 % 256, 0, 0)).save(curves)
    meta = Weights(
        arch="resnet8_small",
        tag=tag,
        task="image-classification",
        labels=tuple(str(i) for i in range(10)),
        input_size=(1, 28, 28),
        mean=(0.1307,),
        std=(0.3081,),
        dataset="mnist_5k",
        split="last 100 of each digit",
        metrics={"top1": 0.9 + seed / 100},
        recipe="classification.mnist_resnet8",
        recipe_config={"epochs": 1, "lr": 0.1, "seed": seed},
        training={"seed": seed},
    )
    return zoo.save_pretrained(model, folder, meta, files={"curves": curves})


def outputs(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(X)


def reference(folder: Path) -> torch.Tensor:
    return outputs(zoo.create_model(str(folder)))


def config_of(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


@pytest.fixture
def published_tag(monkeypatch):
    """Declare resnet8_small.pub as a published weight, as a family file does with ``weights=("pub",)``."""
    entry = get_entry("resnet8_small")
    monkeypatch.setattr(entry, "tags", (*entry.tags, "pub"))
    _load_hub_weights.cache_clear()
    yield NAME
    _load_hub_weights.cache_clear()


@pytest.fixture
def maintainer(hub, hub_dir, published_tag):
    """The maintainer's hub folder holding weight v1 of resnet8_small.pub."""
    return make_weight(hub_dir / NAME, seed=1)


def user_checkout(tmp_path: Path, monkeypatch, config: dict, label: str = "user") -> Path:
    """A user's checkout of the zoo at some release: its hub folder holds only the weight's pinned config."""
    folder = tmp_path / label / NAME
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("ZOO_HUB_DIR", str(folder.parent))
    _load_hub_weights.cache_clear()
    return folder.parent


# -- round trip and pinning ---------------------------------------------------------------------------------


@pytest.mark.parametrize("client_path", ["xet-installed", "xet-disabled"])
def test_round_trip_push_pull_load(client_path, maintainer, hub, hf_cache, tmp_path, monkeypatch):
    """What was pushed is what a fresh cache pulls: same bytes, same outputs, pinned to the commit."""
    if client_path == "xet-disabled":  # the client's legacy single-commit path (create_commit)
        import huggingface_hub.constants as constants

        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    repo_id = new_repo_id("round-trip")
    expected = reference(maintainer)
    sha = zoo.push_to_hub(NAME, repo_id)

    assert SHA.match(sha) and sha == hub.head(repo_id)
    remote = hub.files(repo_id, sha)
    assert set(remote) == {".gitattributes", "config.json", "model.safetensors", "README.md", "curves-1.png"}
    assert remote["model.safetensors"] == (maintainer / "model.safetensors").read_bytes()
    assert remote["curves-1.png"] == (maintainer / "curves-1.png").read_bytes()
    # The pushed config names the repo; its own commit sha cannot be in it. The local copy holds the pin.
    pushed = json.loads(remote["config.json"])
    assert pushed["weights"]["hf_repo"] == repo_id and pushed["weights"]["revision"] is None
    local = config_of(maintainer)
    assert local["weights"]["hf_repo"] == repo_id and local["weights"]["revision"] == sha
    assert remote["README.md"].decode() == render_model_card(pushed)
    assert (maintainer / "README.md").read_text() == render_model_card(local)
    assert zoo.get_weights(NAME).revision == sha  # the registry reads the new pin at once

    user_checkout(tmp_path, monkeypatch, local)
    hf_cache()
    (snapshot,) = zoo.pull([NAME])
    assert snapshot.name == sha
    assert (snapshot / "model.safetensors").read_bytes() == (maintainer / "model.safetensors").read_bytes()
    assert (snapshot / "README.md").is_file() and (snapshot / "curves-1.png").is_file()
    model = zoo.create_model(NAME, pretrained=True)
    assert torch.equal(outputs(model), expected)
    assert model.pretrained_weights.revision == sha
    from_hub = zoo.create_model(f"hf-hub:{repo_id}@{sha}")
    assert torch.equal(outputs(from_hub), expected)
    assert (from_hub.pretrained_weights.hf_repo, from_hub.pretrained_weights.revision) == (repo_id, sha)


def test_pinned_revision_wins_over_a_newer_main(maintainer, hub, hf_cache, tmp_path, monkeypatch):
    repo_id = new_repo_id("pinning")
    v1 = reference(maintainer)
    sha1 = zoo.push_to_hub(NAME, repo_id)
    release_1 = config_of(maintainer)  # what a zoo release pinned
    make_weight(maintainer, seed=2)  # retrained in place
    v2 = reference(maintainer)
    sha2 = zoo.push_to_hub(NAME, repo_id)
    assert sha2 != sha1 and hub.head(repo_id) == sha2 and not torch.equal(v1, v2)
    assert config_of(maintainer)["weights"]["revision"] == sha2

    user_checkout(tmp_path, monkeypatch, release_1)
    assert torch.equal(outputs(zoo.create_model(NAME, pretrained=True)), v1)  # main moved on; the pin did not
    assert torch.equal(outputs(zoo.create_model(f"hf-hub:{repo_id}@{sha1}")), v1)
    assert torch.equal(outputs(zoo.create_model(f"hf-hub:{repo_id}@{sha2[:12]}")), v2)
    assert torch.equal(outputs(zoo.create_model(f"hf-hub:{repo_id}")), v2)  # unpinned: main
    user_checkout(tmp_path, monkeypatch, config_of(maintainer), label="user-release-2")
    assert torch.equal(outputs(zoo.create_model(NAME, pretrained=True)), v2)


def test_push_a_folder_to_a_branch_and_private_repo(hub, hf_cache, tmp_path, monkeypatch):
    """A user's own weight: any save_pretrained folder, pushed to a branch of a private repo."""
    torch.manual_seed(3)
    folder = zoo.save_pretrained(
        zoo.create_model("resnet8_small", in_chans=1, num_classes=4), tmp_path / "mine"
    )
    expected = reference(folder)
    repo_id = new_repo_id("private")
    sha = zoo.push_to_hub(folder, repo_id, revision="dev", private=True)
    assert hub.head(repo_id, "dev") == sha and hub.head(repo_id, "main") != sha
    assert config_of(folder)["weights"]["revision"] == sha
    assert torch.equal(outputs(zoo.create_model(f"hf-hub:{repo_id}@dev")), expected)
    hf_cache()
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError) as info:
        zoo.create_model(f"hf-hub:{repo_id}@{sha}")
    assert repo_id in str(info.value) and "private" in str(info.value) and "HF_TOKEN" in str(info.value)


def test_pushing_unchanged_weights_again_keeps_the_commit(maintainer, hub):
    repo_id = new_repo_id("again")
    sha = zoo.push_to_hub(NAME, repo_id)
    commits = hub.commits(repo_id)
    assert zoo.push_to_hub(NAME, repo_id) == sha
    assert hub.commits(repo_id) == commits


# -- offline and bundles ----------------------------------------------------------------------------------


def test_offline_warm_cache_loads_and_cold_cache_fails_clearly(
    maintainer, hub, hf_cache, tmp_path, monkeypatch
):
    repo_id = new_repo_id("offline")
    expected = reference(maintainer)
    sha = zoo.push_to_hub(NAME, repo_id)
    user_checkout(tmp_path, monkeypatch, config_of(maintainer))
    hf_cache()
    zoo.pull(NAME)
    zoo.pull(f"hf-hub:{repo_id}")  # caches main's ref as well

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    requests = len(hub.settled())
    assert torch.equal(outputs(zoo.create_model(NAME, pretrained=True)), expected)
    assert torch.equal(outputs(zoo.create_model(f"hf-hub:{repo_id}@{sha}")), expected)
    assert torch.equal(outputs(zoo.create_model(f"hf-hub:{repo_id}")), expected)
    assert len(hub.settled()) == requests, "offline loading sent requests"

    hf_cache()
    with pytest.raises(HubError) as info:
        zoo.create_model(NAME, pretrained=True)
    message = str(info.value)
    assert repo_id in message and sha in message and NAME in message
    assert "HF_HUB_OFFLINE is set" in message and "zoo pull" in message and "ZOO_HUB_DIR" in message
    assert len(hub.settled()) == requests


def test_bundle_loads_with_the_network_unreachable(maintainer, hub, hf_cache, tmp_path, monkeypatch, request):
    repo_id = new_repo_id("bundle")
    expected = reference(maintainer)
    sha = zoo.push_to_hub(NAME, repo_id)
    user_checkout(tmp_path, monkeypatch, config_of(maintainer))  # the connected machine: weights on the Hub
    hf_cache()
    out = tmp_path / "bundle"
    (folder,) = zoo.bundle([NAME], out)
    assert folder == out / NAME
    assert {p.name for p in folder.iterdir()} == {
        "config.json",
        "model.safetensors",
        "README.md",
        "curves-1.png",
    }
    bundled = config_of(folder)
    assert bundled["weights"]["hf_repo"] == repo_id and bundled["weights"]["revision"] == sha
    assert file_sha256(folder / "model.safetensors") == bundled["weights"]["sha256"]

    # The air-gapped machine: an empty HF cache, no route to any hub, only the bundle.
    hf_cache()
    request.getfixturevalue("hub_unreachable")
    monkeypatch.setenv("ZOO_HUB_DIR", str(out))
    _load_hub_weights.cache_clear()

    def no_network(*args, **kwargs):
        raise AssertionError("a bundled weight must load without the hub")

    monkeypatch.setattr(zoo_hub, "download_repo", no_network)
    requests = len(hub.settled())
    assert torch.equal(outputs(zoo.create_model(NAME, pretrained=True)), expected)
    assert len(hub.settled()) == requests


def test_bundle_refuses_a_local_copy_that_fails_its_check(maintainer, tmp_path):
    path = maintainer / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(HubError, match=r"sha256 check.*zoo pull resnet8_small\.pub"):
        zoo.bundle(NAME, tmp_path / "bundle")
    assert not (tmp_path / "bundle" / NAME).exists()


# -- faults: each is one HubError naming the repo and what to do ------------------------------------------


def hub_error(name: str) -> str:
    with pytest.raises(HubError) as info:
        zoo.create_model(name)
    return str(info.value)


def test_missing_repo(hub):
    message = hub_error("hf-hub:zoo-test/no-such-repo")
    assert "'zoo-test/no-such-repo'" in message and "was not found" in message and "HF_TOKEN" in message


def test_missing_files(hub):
    import huggingface_hub

    api = huggingface_hub.HfApi()
    repo_id = new_repo_id("not-zoo-layout")
    api.create_repo(repo_id)
    message = hub_error(f"hf-hub:{repo_id}")
    assert repo_id in message and "config.json is missing" in message and "zoo push" in message
    api.upload_file(
        path_or_fileobj=b'{"architecture": "resnet8_small"}', path_in_repo="config.json", repo_id=repo_id
    )
    message = hub_error(f"hf-hub:{repo_id}")
    assert repo_id in message and "model.safetensors is missing" in message


def test_missing_revision(maintainer, hub):
    repo_id = new_repo_id("revision")
    zoo.push_to_hub(NAME, repo_id)
    for revision in ("no-such-branch", "f" * 40):
        message = hub_error(f"hf-hub:{repo_id}@{revision}")
        assert f"revision '{revision}' does not exist" in message and repo_id in message
        assert "drop '@revision'" in message


def test_server_error_is_reported_with_its_status(maintainer, hub):
    repo_id = new_repo_id("server-500")
    zoo.push_to_hub(NAME, repo_id)
    hub.add_fault("*", "/resolve/", status=500)
    message = hub_error(f"hf-hub:{repo_id}")
    assert repo_id in message and "answered HTTP 500" in message and "Retry later" in message

    hub.add_fault("POST", "/api/repos/create", status=500)
    with pytest.raises(HubError) as info:
        zoo.push_to_hub(NAME, repo_id)
    assert (
        repo_id in str(info.value)
        and "HTTP 500" in str(info.value)
        and "re-run `zoo push`" in str(info.value)
    )


def test_connection_refused_fails_fast(maintainer, hub, hub_unreachable):
    start = time.monotonic()
    message = hub_error("hf-hub:zoo-test/anything@main")
    assert "zoo-test/anything" in message and hub_unreachable in message and "could not be reached" in message
    assert "zoo bundle" in message
    with pytest.raises(HubError, match="could not be reached.*local pin is unchanged"):
        zoo.push_to_hub(NAME, "zoo-test/anything")
    assert time.monotonic() - start < 10, "the client's retry waits were not skipped"


def test_tampered_cache_blob_is_refused_then_repaired_by_pull(
    maintainer, hub, hf_cache, tmp_path, monkeypatch
):
    repo_id = new_repo_id("tampered")
    expected = reference(maintainer)
    zoo.push_to_hub(NAME, repo_id)
    user_checkout(tmp_path, monkeypatch, config_of(maintainer))
    (snapshot,) = zoo.pull(NAME)
    blob = (snapshot / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))

    with pytest.raises(HubError) as info:
        zoo.create_model(NAME, pretrained=True)
    message = str(info.value)
    assert "sha256 check" in message and repo_id in message and f"zoo pull {NAME}" in message

    zoo.pull(NAME)  # downloads it again over the bad copy
    assert torch.equal(outputs(zoo.create_model(NAME, pretrained=True)), expected)


def test_interrupted_upload_publishes_nothing(maintainer, hub, hf_cache, tmp_path, monkeypatch):
    repo_id = new_repo_id("interrupted")
    v1 = reference(maintainer)
    sha1 = zoo.push_to_hub(NAME, repo_id)
    pinned_v1 = config_of(maintainer)
    v2_folder = make_weight(tmp_path / "retrained" / NAME, seed=2)

    hub.add_fault("POST", "/commit/", status=0)  # the connection drops while the commit is sent
    with pytest.raises(HubError) as info:
        zoo.push_to_hub(v2_folder, repo_id)
    assert repo_id in str(info.value) and "re-run `zoo push`" in str(info.value)
    hub.clear_faults()
    assert hub.head(repo_id) == sha1 and len(hub.commits(repo_id)) == 2  # initial commit + v1
    assert config_of(v2_folder)["weights"]["revision"] is None  # no pin to a commit that does not exist
    assert torch.equal(outputs(zoo.create_model(f"hf-hub:{repo_id}")), v1)

    # A push cut between two commits (the client commits large folders in parts): main holds new weights
    # beside the old config.json. Their sha256 disagree, so it is refused, and the pin still gives v1.
    hub.tamper(repo_id, "model.safetensors", (v2_folder / "model.safetensors").read_bytes())
    message = hub_error(f"hf-hub:{repo_id}")
    assert "sha256 check" in message and "half-published" in message and repo_id in message
    user_checkout(tmp_path, monkeypatch, pinned_v1)
    hf_cache()
    assert torch.equal(outputs(zoo.create_model(NAME, pretrained=True)), v1)


def test_push_without_or_with_a_bad_token(maintainer, hub, monkeypatch):
    repo_id = new_repo_id("auth")
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(HubError, match=r"needs a Hugging Face token.*HF_TOKEN"):
        zoo.push_to_hub(NAME, repo_id)
    bad = "hf_not_a_valid_token_0123456789"
    with pytest.raises(HubError) as info:
        zoo.push_to_hub(NAME, repo_id, token=bad)
    assert "refused" in str(info.value) and repo_id in str(info.value) and bad not in str(info.value)
    assert config_of(maintainer)["weights"]["revision"] is None


# -- the command line and token hygiene ---------------------------------------------------------------------


def test_cli_push_pull_bundle(maintainer, hub, hf_cache, tmp_path, monkeypatch, capsys):
    repo_id = new_repo_id("cli")
    assert main(["push", NAME, "--repo-id", repo_id]) == 0
    sha = capsys.readouterr().out.strip()
    assert SHA.match(sha) and sha == hub.head(repo_id)
    assert main(["push", NAME, "--repo-id", repo_id, "--revision", "dev", "--private"]) == 0
    assert capsys.readouterr().out.strip() == hub.head(repo_id, "dev")

    user_checkout(tmp_path, monkeypatch, config_of(maintainer))
    hf_cache()
    assert main(["pull", NAME, f"hf-hub:{repo_id}@{sha}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all("sha256 verified" in line for line in lines)
    assert lines[0].startswith(f"{NAME}: ")

    out = tmp_path / "bundle"
    assert main(["bundle", NAME, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out / NAME) in printed and f"ZOO_HUB_DIR={out.resolve()}" in printed

    assert main(["pull", "hf-hub:zoo-test/missing-repo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo pull: error:") and "zoo-test/missing-repo" in err
    assert main(["push", NAME, "--repo-id", "not-a-repo-id"]) == 2
    assert "org/name" in capsys.readouterr().err


def test_token_never_printed_logged_or_written(
    maintainer, hub, hf_cache, tmp_path, monkeypatch, capfd, caplog
):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_DEBUG", True)  # the client's own debug log, curl commands included
    hf_logger = logging.getLogger("huggingface_hub")
    hf_logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")
    try:
        repo_id = new_repo_id("hygiene")
        assert main(["push", NAME, "--repo-id", repo_id, "--private"]) == 0
        zoo.push_to_hub(NAME, repo_id, token=HF_TOKEN)  # an explicit token is treated the same
        user_checkout(tmp_path, monkeypatch, config_of(maintainer))
        assert main(["pull", NAME]) == 0
        assert main(["bundle", NAME, "--out", str(tmp_path / "bundle")]) == 0
        hub.add_fault("POST", "/preupload/", status=500)
        make_weight(maintainer, seed=5)
        assert main(["push", NAME, "--repo-id", repo_id]) == 2
    finally:
        hf_logger.removeHandler(caplog.handler)

    captured = capfd.readouterr()
    assert "authenticated: True" in caplog.text, "the client did not log its authenticated requests"
    assert "<TOKEN>" in caplog.text  # the curl log ran, with the header redacted
    texts = {"stdout": captured.out, "stderr": captured.err, "log": caplog.text}
    for where, text in texts.items():
        assert HF_TOKEN not in text, f"the token appears in {where}"
    written = [p for root in (maintainer, tmp_path, Path(constants.HF_HUB_CACHE)) for p in root.rglob("*")]
    for path in written:
        if path.is_file():
            assert HF_TOKEN.encode() not in path.read_bytes(), f"the token was written into {path}"
    for data in hub.state.blobs.values():
        assert HF_TOKEN.encode() not in data, "the token was published"


def test_tampered_local_weights_are_not_pushed(maintainer, hub):
    (maintainer / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(HubError, match="refusing to publish"):
        zoo.push_to_hub(NAME, new_repo_id("refused"))
    shutil.rmtree(maintainer)
    with pytest.raises(HubError, match="neither a weight folder nor a weight with a local copy"):
        zoo.push_to_hub(NAME, new_repo_id("refused"))


def test_a_download_brings_the_files_inference_needs(hub, hf_cache, tmp_path):
    """A CLIP weight needs its tokenizer.json (`Task.runtime_files`): a plain download fetches it beside the
    weights, so `zoo.get_tokenizer("hf-hub:...")` works from a fresh cache; pictures stay on request."""
    from zoo.registry import IN_TREE_HUB

    local = tmp_path / "clip_resnet_tiny.scenes"  # a copy: pushing records the revision in config.json
    shutil.copytree(IN_TREE_HUB / local.name, local)
    repo_id = "zoo-test/clip-tokenizer"
    sha = zoo.push_to_hub(local, repo_id)
    hf_cache()  # a fresh, empty cache: nothing from the push
    tokenizer = zoo.get_tokenizer(f"hf-hub:{repo_id}@{sha}")
    text = ["a 4 above a 9", "the number seven"]
    assert torch.equal(tokenizer(text), zoo.get_tokenizer(local)(text))
    snapshot = zoo.hub.download_repo(repo_id, sha)
    assert (snapshot / "tokenizer.json").is_file() and not (snapshot / "search.png").exists()
