"""Self-supervised encoders: the representation, the training heads, and the fine-tuning start."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.errors import ConfigError
from zoo.factory import model_task, save_pretrained

ARCHS = ["simclr_cnn", "moco_cnn", "byol_cnn", "rotnet_cnn"]


@pytest.mark.parametrize("arch", ARCHS)
def test_eval_forward_is_the_representation_and_train_forward_adds_the_heads(arch):
    model = zoo.create_model(arch)
    x = torch.randn(4, 1, 28, 28)
    out = model.train()(x)
    assert set(out) == {"embedding", "projection"} | ({"prediction"} if arch == "byol_cnn" else set())
    assert out["embedding"].shape == (4, model.num_features) == (4, 128)
    assert out["projection"].shape == (4, 4 if arch == "rotnet_cnn" else 128)  # rotnet: 4 quarter turns
    model.eval()
    torch.testing.assert_close(model(x), model.embed(x))
    assert model_task(model) == "feature-extraction" and model.embed_dim == 128


def test_predictor_only_where_built():
    with pytest.raises(ConfigError, match="pred_hidden"):
        zoo.create_model("simclr_cnn").predict(torch.randn(2, 128))
    assert zoo.create_model("byol_cnn").predict(torch.randn(2, 128)).shape == (2, 128)


def test_backbone_must_be_a_classifier():
    with pytest.raises(ConfigError, match="linear layer"):
        zoo.create_model("simclr_cnn", backbone="autoencoder")
    model = zoo.create_model("simclr_cnn", backbone="resnet8_small")
    assert model.eval()(torch.randn(2, 1, 28, 28)).shape == (2, 128)
    assert model.first_conv == "backbone.conv1"


def test_num_classes_makes_a_classifier_on_the_pretrained_encoder(tmp_path):
    """The fine-tuning start: every encoder and head weight loads strictly; only the classifier is new."""
    torch.manual_seed(0)
    encoder = zoo.create_model("simclr_cnn").eval()
    folder = save_pretrained(encoder, tmp_path / "w", weights={"input_size": [1, 28, 28]})
    classifier = zoo.create_model(str(folder), num_classes=10).eval()
    assert model_task(classifier) == "image-classification"
    assert classifier.pretrained_weights.task == "image-classification"
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(classifier.embed(x), encoder.embed(x))
    assert classifier(x).shape == (3, 10)
    # Saved again, it is recorded as what it now is.
    again = save_pretrained(classifier, tmp_path / "ft")
    assert zoo.create_model(str(again)).pretrained_weights.task == "image-classification"


def test_cpc_context_sees_only_rows_above():
    """Changing the bottom rows of patches never changes a prediction made from the rows above them."""
    model = zoo.create_model("cpc_cnn").train()
    z = torch.randn(2, 6, 6, 128)
    changed = z.clone()
    changed[:, 4:] += 1.0  # rows 4 and 5
    before, after = model.predictions(z), model.predictions(changed)
    torch.testing.assert_close(before[:, :4], after[:, :4])
    assert not torch.allclose(before[:, 4:], after[:, 4:])
    out = model(torch.randn(2, 1, 28, 28))
    assert out["patches"].shape == (2, 6, 6, 128) and out["predictions"].shape == (2, 6, 6, 2, 128)
    # The representation: patch embeddings averaged over each quadrant (2x2 of the 6x6 grid), concatenated.
    quadrant = out["patches"][:, :3, 3:].mean((1, 2))  # top rows, right columns
    torch.testing.assert_close(out["embedding"].view(2, 128, 2, 2)[:, :, 0, 1], quadrant)
    with pytest.raises(ConfigError, match="rows ahead"):
        zoo.create_model("cpc_cnn", steps=6)


def test_context_encoder_classifies_pairs_and_shares_the_patch_grid():
    model = zoo.create_model("context_cnn").train()
    centre, neighbour = torch.randn(5, 1, 8, 8), torch.randn(5, 1, 8, 8)
    assert model.classify_pair(centre, neighbour).shape == (5, 8)
    out = model(torch.randn(2, 1, 28, 28))
    assert out["grid_pair_logits"].shape == (2, 8, 8) and out["embedding"].shape == (2, 512)
    # The grid's pair logits are the pair head's on those patches (eval mode: batch norm's running stats).
    model.eval()
    z = model.patch_embeddings(torch.randn(1, 1, 28, 28))
    direct = model.pair_head(torch.cat([z[:, 3, 3], z[:, 1, 1]], dim=1))
    torch.testing.assert_close(model.training_outputs(z)["grid_pair_logits"][:, 0], direct)
