"""Model cards: rendered from config.json, valid Hugging Face metadata, and usage snippets that run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.card import render_model_card
from zoo.registry import IN_TREE_HUB, Weights, _load_hub_weights, get_entry

REPO_ROOT = Path(__file__).resolve().parent.parent
NAME = "resnet8_small.card"
METRICS = {"top1": 0.9871, "nll": 0.0412}
RECIPE_CONFIG = {"epochs": 3, "lr": 0.05, "batch_size": 128, "augment": {"degrees": 8}}


@pytest.fixture
def weight(hub_dir, tmp_path, monkeypatch):
    """resnet8_small.card: a published weight (as declared by a family file) with full metadata."""
    entry = get_entry("resnet8_small")
    monkeypatch.setattr(entry, "tags", (*entry.tags, "card"))
    _load_hub_weights.cache_clear()
    torch.manual_seed(0)
    model = zoo.create_model("resnet8_small", in_chans=1, num_classes=10, img_size=28)
    curves = tmp_path / "curves.png"
    Image.new("RGB", (32, 16), (0, 128, 255)).save(curves)
    meta = Weights(
        arch="resnet8_small",
        tag="card",
        task="image-classification",
        labels=tuple(f"digit {i}" for i in range(10)),
        mean=(0.1307,),
        std=(0.3081,),
        dataset="mnist_5k",
        split="last 100 of each digit",
        metrics=METRICS,
        recipe="classification.mnist_resnet8",
        recipe_config=RECIPE_CONFIG,
        training={"seed": 0, "commit": "0123abc"},
        papers=("Deep Residual Learning for Image Recognition, https://arxiv.org/abs/1512.03385",),
        license="mit",
    )
    folder = zoo.save_pretrained(model, hub_dir / NAME, meta, files={"curves": curves})
    yield folder
    _load_hub_weights.cache_clear()


def config_of(folder: Path) -> dict:
    return json.loads((folder / "config.json").read_text())


def code_blocks(card: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", card, flags=re.S)


def section(card: str, title: str) -> str:
    match = re.search(rf"^## {title}\n(.*?)(?=^## |\Z)", card, flags=re.S | re.M)
    assert match, f"the card has no '{title}' section"
    return match.group(1)


def test_card_is_rendered_from_config(weight):
    config = config_of(weight)
    card = (weight / "README.md").read_text()
    assert card == render_model_card(config)
    changed = {**config, "weights": {**config["weights"], "metrics": {"top1": 0.5}}}
    assert "| top1 | 0.5 |" in render_model_card(changed) and "| top1 | 0.5 |" not in card


def test_front_matter_is_hub_metadata_with_the_measured_metrics(weight):
    from huggingface_hub import ModelCard

    card = ModelCard.load(weight / "README.md")  # the client's own parser and model-index reader
    data = card.data
    assert (
        data.library_name == "zoo" and data.license == "mit" and data.pipeline_tag == "image-classification"
    )
    assert {"zoo", "pytorch", "safetensors", "resnet8_small", "image-classification"} <= set(data.tags)
    assert data.datasets == ["mnist_5k"]
    assert data.model_name == NAME
    results = {r.metric_type: r for r in data.eval_results}
    assert {k: r.metric_value for k, r in results.items()} == METRICS
    for result in results.values():
        assert result.task_type == "image-classification"
        assert result.dataset_name == "mnist_5k" and result.dataset_split == "last 100 of each digit"


def test_metrics_curves_recipe_and_provenance_sections(weight):
    config = config_of(weight)
    card = (weight / "README.md").read_text()
    table = section(card, "Metrics")
    assert "| top1 | 0.9871 |" in table and "| nll | 0.0412 |" in table and "last 100 of each digit" in table
    image = re.search(r"!\[training curves\]\((.+?)\)", section(card, "Training curves")).group(1)
    assert (weight / image).is_file() and config["files"]["curves"] == image
    (recipe_json,) = code_blocks(section(card, "Recipe config"), "json")
    assert json.loads(recipe_json) == RECIPE_CONFIG
    (args_json,) = code_blocks(section(card, "Architecture arguments"), "json")
    assert json.loads(args_json) == config["model_args"]
    provenance = section(card, "Training and provenance")
    assert (
        config["weights"]["sha256"] in provenance and "zoo train classification.mnist_resnet8" in provenance
    )
    assert "digit 9" in provenance and "0123abc" in provenance
    assert "arxiv.org/abs/1512.03385" in section(card, "Papers")


def test_a_weight_without_metrics_or_curves_has_no_such_sections(tmp_path):
    folder = zoo.save_pretrained(zoo.create_model("resnet8_small"), tmp_path / "plain")
    card = (folder / "README.md").read_text()
    front = card.split("---\n")[1]
    assert "model-index" not in front and "datasets" not in front
    assert "## Metrics" not in card and "## Training curves" not in card and "## Recipe config" not in card


def test_hub_usage_names_the_pinned_commit_or_says_how_to_pin(weight):
    config = config_of(weight)
    pinned = {**config, "weights": {**config["weights"], "hf_repo": "org/card", "revision": "a" * 40}}
    assert f'zoo.create_model("hf-hub:org/card@{"a" * 40}")' in render_model_card(pinned)
    unpinned = {**config, "weights": {**config["weights"], "hf_repo": "org/card", "revision": None}}
    text = render_model_card(unpinned)
    assert 'zoo.create_model("hf-hub:org/card")' in text and "hf-hub:org/card@<commit sha>" in text


def _run(code: str, replacements: dict[str, str]) -> dict:
    for placeholder, value in replacements.items():
        code = code.replace(placeholder, value)
    namespace: dict = {}
    exec(compile(code, "<model card snippet>", "exec"), namespace)
    return namespace


def test_zoo_and_torch_hub_snippets_run(weight):
    card = (weight / "README.md").read_text()
    zoo_block, hub_block, *_ = code_blocks(card, "python")
    model = _run(zoo_block, {"path/to/this/folder": str(weight)})["model"]
    reference = zoo.create_model(str(weight)).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
        assert torch.equal(_run(hub_block, {"path/to/zoo": str(REPO_ROOT)})["model"].eval()(x), reference(x))


def test_torch_hub_snippet_of_a_weight_saved_outside_the_registry(tmp_path):
    torch.manual_seed(1)
    source = zoo.create_model("resnet8_small", in_chans=1, num_classes=3, img_size=28).eval()
    folder = zoo.save_pretrained(source, tmp_path / "mine")
    card = (folder / "README.md").read_text()
    assert "pretrained=True" not in card  # a folder outside the registry has no arch.tag to name
    hub_block = code_blocks(card, "python")[1]
    model = _run(hub_block, {"path/to/zoo": str(REPO_ROOT), "path/to/this/folder": str(folder)})["model"]
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), source(x))


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
def test_onnxruntime_snippet_runs_with_the_weights_preprocessing(weight, tmp_path, capsys):
    card = (weight / "README.md").read_text()
    assert f"zoo export {NAME} --out {NAME}.onnx" in card
    ort_block = code_blocks(card, "python")[-1]
    assert "import onnxruntime" in ort_block
    model = zoo.create_model(NAME, pretrained=True).eval()
    onnx_path = tmp_path / f"{NAME}.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(onnx_path), dynamo=False, input_names=["x"])
    namespace = _run(ort_block, {f'"{NAME}.onnx"': repr(str(onnx_path))})
    image = np.zeros((1, 1, 28, 28), np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy((image / 255 - 0.1307) / 0.3081).float())
    np.testing.assert_allclose(namespace["outputs"][0], expected.numpy(), atol=1e-4)
    assert capsys.readouterr().out.strip() == f"digit {int(expected.argmax())}"


def test_baselines_are_a_table_beside_the_weights_own_numbers(tmp_path):
    meta = Weights(
        arch="resnet8_small",
        tag="local",
        task="image-classification",
        metrics={"acc": 0.99, "loss": 0.03},
        baselines={"nearest neighbour": {"acc": 0.95}, "logistic regression": {"acc": 0.91, "loss": 0.3}},
    )
    folder = zoo.save_pretrained(zoo.create_model("resnet8_small"), tmp_path / "b", meta)
    table = section((folder / "README.md").read_text(), "Baselines")
    assert "| method | acc | loss |" in table
    assert "| **resnet8_small.local** | 0.99 | 0.03 |" in table
    assert "| nearest neighbour | 0.95 |  |" in table and "| logistic regression | 0.91 | 0.3 |" in table
    assert config_of(folder)["weights"]["baselines"]["nearest neighbour"] == {"acc": 0.95}
    plain = zoo.save_pretrained(zoo.create_model("resnet8_small"), tmp_path / "p")
    assert "## Baselines" not in (plain / "README.md").read_text()


def test_ablations_are_a_table_of_one_change_runs(tmp_path):
    meta = Weights(
        arch="resnet8_small",
        tag="local",
        task="image-classification",
        metrics={"acc": 0.99},
        ablations={"no augmentation": {"acc": 0.97}},
    )
    folder = zoo.save_pretrained(zoo.create_model("resnet8_small"), tmp_path / "a", meta)
    table = section((folder / "README.md").read_text(), "Ablations")
    assert "| change | acc |" in table and "| no augmentation | 0.97 |" in table
    assert "| **resnet8_small.local** | 0.99 |" in table
    assert config_of(folder)["weights"]["ablations"] == {"no augmentation": {"acc": 0.97}}


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in IN_TREE_HUB.glob("*/config.json")))
def test_published_cards_are_rendered_from_their_config(folder):
    """A card edited by hand (or left behind by a renderer change) would drift from its config.json."""
    config = json.loads((IN_TREE_HUB / folder / "config.json").read_text())
    assert (IN_TREE_HUB / folder / "README.md").read_text() == render_model_card(config)


def test_generative_cards_read_as_tables():
    config = json.loads((IN_TREE_HUB / "vae.mnist" / "config.json").read_text())
    card = render_model_card(config)
    metrics = config["weights"]["metrics"]
    assert f"| this weight (IWAE bound, k = 1000) | {metrics['nll_nats']:.2f} |" in card
    assert f"| independent Bernoulli per pixel | {metrics['bernoulli_nll_nats']:.2f} |" in card
    assert f"| {metrics['fid']:.2f} | {metrics['fid_floor']:.2f} |" in card
    assert "| `nll_bits_per_dim` | (N,) negative log-likelihood" in card


def test_recorded_tables_are_card_sections(weight):
    config = config_of(weight)
    assert "tables" not in config["weights"]  # a weight without tables keeps its config.json as it was
    rows = [{"round": 0, "test accuracy": "89.7%"}, {"round": 1, "test accuracy": "95.1%"}]
    table = {"title": "Pseudo-labelling rounds", "intro": "Each round's model.", "rows": rows}
    card = render_model_card({**config, "weights": {**config["weights"], "tables": [table]}})
    body = section(card, "Pseudo-labelling rounds")
    assert body.strip().splitlines() == [
        "Each round's model.",
        "",
        "| round | test accuracy |",
        "|---|---|",
        "| 0 | 89.7% |",
        "| 1 | 95.1% |",
    ]
    assert Weights.from_dict({**config["weights"], "tables": [table]}).tables == [table]


def test_a_weight_trained_under_torchrun_says_so_in_its_reproduce_command():
    weights = {"arch": "cnn", "tag": "x", "task": "image-classification", "recipe": "cnn.mnist"}
    ddp = {**weights, "training": {"processes": 2}}
    card = render_model_card({"architecture": "cnn", "model_args": {}, "weights": ddp})
    assert "`torchrun --standalone --nproc_per_node=2 -m zoo train cnn.mnist`" in card
    card = render_model_card({"architecture": "cnn", "model_args": {}, "weights": weights})
    assert "reproduce with `zoo train cnn.mnist`" in card
