"""The frozen-feature protocol (`zoo.probing`) and its command line: ``zoo embed`` and ``zoo probe``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
from zoo.cli import main
from zoo.errors import ConfigError
from zoo.factory import save_pretrained
from zoo.probing import encode_split, probe, strip_classifier

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "recipes" / "samples").glob("*.png"))


def _clusters(per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(3).repeat_interleave(per_class)
    centres = torch.eye(3) * 10
    return centres[labels] + torch.randn(len(labels), 3, generator=g), labels


def test_probe_separates_clusters_and_reports_draws():
    train_x, train_y = _clusters(50, 0)
    test_x, test_y = _clusters(20, 1)
    every = probe(train_x, train_y, test_x, test_y, labels_per_class=0)
    assert every.labels == 150 and every.draws == 1 and every.linear == (1.0, 0.0) and every.knn == (1.0, 0.0)
    few = probe(train_x, train_y, test_x, test_y, labels_per_class=2, draws=3)
    assert few.labels == 6 and few.draws == 3 and few.linear[0] > 0.9
    # A noise feature: chance level, whatever the budget.
    noise = probe(torch.randn(150, 4), train_y, torch.randn(60, 4), test_y, labels_per_class=10)
    assert noise.linear[0] < 0.6
    with pytest.raises(ConfigError, match="fewer than 60"):
        probe(train_x, train_y, test_x, test_y, labels_per_class=60)


def test_encode_split_standardises_and_strip_classifier_gives_pooled_features():
    cnn = zoo.create_model("cnn").eval()
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    x = (images.float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        expected = cnn.pool(cnn.forward_features(x)).flatten(1)
    features = encode_split(strip_classifier(cnn), images, [0.5], [0.25], batch_size=2)
    torch.testing.assert_close(features, expected)
    with pytest.raises(ConfigError, match="no linear classifier"):
        strip_classifier(cnn)  # already stripped


@pytest.fixture
def encoder_folder(tmp_path):
    torch.manual_seed(0)
    model = zoo.create_model("simclr_cnn").eval()
    weights = {"input_size": [1, 28, 28], "mean": [0.1309], "std": [0.308], "dataset": "mnist_5k"}
    return save_pretrained(model, tmp_path / "encoder", weights=weights), model


def test_zoo_embed_writes_npy_and_safetensors(encoder_folder, tmp_path, capsys):
    folder, model = encoder_folder
    files = [str(p) for p in SAMPLES[:3]]
    assert main(["embed", str(folder), *files, "--out", str(tmp_path / "f.npy")]) == 0
    features = np.load(tmp_path / "f.npy")
    assert features.shape == (3, 128)
    # The weight's preprocessing, the encoder, then unit length (the task's ``normalize``).
    from zoo.preprocess import load_image, preprocess_image

    x = preprocess_image(load_image(files[0], 1), (1, 28, 28), [0.1309], [0.308])
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()[0]
    np.testing.assert_allclose(features[0], want / np.linalg.norm(want), rtol=1e-4, atol=1e-6)
    assert main(["embed", str(folder), *files, "--out", str(tmp_path / "f.safetensors")]) == 0
    from safetensors import safe_open

    with safe_open(str(tmp_path / "f.safetensors"), "np") as f:
        np.testing.assert_array_equal(f.get_tensor("features"), features)
        assert json.loads(f.metadata()["files"]) == files
    assert main(["embed", str(folder), *files, "--out", str(tmp_path / "f.csv")]) == 2
    assert main(["embed", "cnn.mnist", *files, "--out", str(tmp_path / "g.npy")]) == 2
    assert "feature extractors" in capsys.readouterr().err


def test_zoo_probe_prints_the_table(encoder_folder, capsys):
    folder, _ = encoder_folder
    assert main(["probe", str(folder), "--labels-per-class", "1", "--draws", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| encoder | labels | linear probe") and len(lines) == 3
    assert f"| {folder} | 10 |" in lines[2]
