"""CLIP export: two graphs validated by cosine, the torch-free runtime against PyTorch (zero-shot and search),
and the command line (predict --labels, embed --text, search-images) on a small weight folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import zoo
from zoo.text import train_tokenizer

pytest.importorskip("onnxruntime")

TEMPLATES = ("the number {}", "the {}")
CORPUS = [f"the number {d}" for d in range(10)] + ["a 7 to the left of a 3", "a 4 above a 9"]


@pytest.fixture(scope="module")
def weight(tmp_path_factory):
    """A small random CLIP saved as a weight folder with its tokenizer, and its ONNX export."""
    from export.onnx import to_onnx

    folder = tmp_path_factory.mktemp("clip")
    tokenizer = train_tokenizer(CORPUS, 12)
    tokenizer.save(folder / "src" / "tokenizer.json")
    torch.manual_seed(0)
    model = zoo.create_model(
        "clip_vit_tiny",
        vocab_size=tokenizer.vocab_size,
        context_length=12,
        embed_dim=16,
        vision={"width": 32, "layers": 1, "heads": 2, "patch_size": 16},
        text={"width": 32, "layers": 1, "heads": 2},
    ).eval()
    meta = {
        "task": "zero-shot-image-classification",
        "input_size": [3, 64, 64],
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "templates": list(TEMPLATES),
        "similarity_scale": float(model.logit_scale.detach().exp()),
    }
    zoo.save_pretrained(
        model, folder / "w", weights=meta, files={"tokenizer": folder / "src" / "tokenizer.json"}
    )
    model = zoo.create_model(str(folder / "w")).eval()
    result = to_onnx(model, folder / "onnx" / "clip.onnx")
    tokenizer.save(folder / "onnx" / "tokenizer.json")
    return model, tokenizer, folder, result


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from PIL import Image

    from zoo.data.images import mnist_5k_arrays, mnist_5k_rows

    images, labels = mnist_5k_arrays()
    rows = mnist_5k_rows()["test"][::100][:10]
    folder = tmp_path_factory.mktemp("digits")
    files = []
    for i, row in enumerate(rows):
        files.append(folder / f"{i}_{labels[row]}.png")
        Image.fromarray(images[row, 0]).save(files[-1])
    return files


def test_both_graphs_validate_by_cosine(weight):
    _, _, folder, result = weight
    assert [g.name for g in result.graphs] == ["model", "text"]
    assert (folder / "onnx" / "clip.text.onnx").is_file()
    assert result.report.ok
    cosines = [a.values["min_cosine"] for g in result.report.graphs for a in g.agreements]
    assert cosines and min(cosines) >= 0.9999


def test_runtime_zero_shot_and_search_match_pytorch(weight, digits):
    from export.clip_runtime import ClipRuntime
    from zoo.models.clip import zero_shot_classifier
    from zoo.preprocess import load_image

    model, tokenizer, folder, _ = weight
    runtime = ClipRuntime(folder / "onnx" / "clip.onnx")
    names = [str(d) for d in range(10)]
    probs = runtime.zero_shot(digits, names)
    x = np.concatenate(
        [
            model.pretrained_weights.task_object.preprocess(load_image(f, 3), model.pretrained_weights)
            for f in digits
        ]
    )
    with torch.no_grad():
        classes = zero_shot_classifier(model, tokenizer, names, TEMPLATES)
        logits = model.logit_scale.exp() * model.encode_image(torch.from_numpy(x), normalize=True) @ classes.T
    np.testing.assert_allclose(probs, logits.softmax(1).numpy(), atol=1e-4)
    assert (probs.argmax(1) == logits.argmax(1).numpy()).all()
    order, scores = runtime.search("the number 7", digits)
    with torch.no_grad():
        text = model.encode_text(tokenizer(["the number 7"]), normalize=True)[0]
        expected = (model.encode_image(torch.from_numpy(x), normalize=True) @ text).numpy()
    np.testing.assert_allclose(scores, np.sort(expected)[::-1], atol=1e-4)
    np.testing.assert_allclose(expected[order], scores, atol=1e-4)  # the order is PyTorch's ranking


def test_runtime_runs_without_torch(weight, digits):
    from tests.export.conftest import run_without_torch

    folder = weight[2]
    code = """
import json, sys
from export.clip_runtime import ClipRuntime
clip = ClipRuntime(sys.argv[1])
probs = clip.zero_shot(sys.argv[2:], [str(d) for d in range(10)])
order, _ = clip.search("the number 7", sys.argv[2:])
print(json.dumps({"probs": probs.tolist(), "order": order.tolist(), "torch": "torch" in sys.modules}))
"""
    out = json.loads(run_without_torch(code, str(folder / "onnx" / "clip.onnx"), *map(str, digits)))
    assert out["torch"] is False
    from export.clip_runtime import ClipRuntime

    runtime = ClipRuntime(folder / "onnx" / "clip.onnx")  # the same numbers as in a process with torch
    np.testing.assert_allclose(
        out["probs"], runtime.zero_shot(digits, [str(d) for d in range(10)]), atol=1e-6
    )
    assert out["order"] == runtime.search("the number 7", digits)[0].tolist()


def test_command_line(weight, digits, capsys, tmp_path):
    from zoo.cli import main

    _, _, folder, _ = weight
    w = str(folder / "w")
    assert main(["predict", w, str(digits[0]), "--labels", "0,1,2,3,4,5,6,7,8,9"]) == 0
    torch_line = capsys.readouterr().out.strip()
    assert torch_line.startswith(str(digits[0]))
    assert (
        main(
            [
                "predict",
                str(digits[0]),
                "--onnx",
                str(folder / "onnx" / "clip.onnx"),
                "--labels",
                "0,1,2,3,4,5,6,7,8,9",
            ]
        )
        == 0
    )
    onnx_line = capsys.readouterr().out.strip()
    assert torch_line == onnx_line  # same task code prints both; probabilities agree to the printed digits
    assert main(["embed", w, "--text", "a 7", "--text", "a zebra", "--out", str(tmp_path / "t.npy")]) == 0
    assert np.load(tmp_path / "t.npy").shape == (2, 16)
    assert main(["embed", w, *map(str, digits[:3]), "--out", str(tmp_path / "i.npy")]) == 0
    assert np.load(tmp_path / "i.npy").shape == (3, 16)
    capsys.readouterr()
    assert main(["search-images", w, "the number 7", str(digits[0].parent), "--top", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert (
        main(
            [
                "search-images",
                w,
                "the number 7",
                str(digits[0].parent),
                "--top",
                "3",
                "--onnx",
                str(folder / "onnx" / "clip.onnx"),
            ]
        )
        == 0
    )
    assert [line.split()[1] for line in capsys.readouterr().out.strip().splitlines()] == [
        line.split()[1] for line in lines
    ]
