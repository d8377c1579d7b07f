"""RNN / LSTM / GRU: cells, stacking, bidirectional many-to-one, images read as row sequences."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import zoo
from tests.helpers import build
from zoo.errors import ConfigError
from zoo.models.rnn import RNNClassifier

BUILDERS = {
    "rnn": (nn.RNN, 1, False),
    "lstm": (nn.LSTM, 2, False),
    "gru": (nn.GRU, 2, False),
    "bilstm": (nn.LSTM, 2, True),
}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_builders_pick_cell_depth_and_directions(name):
    cell, layers, bidirectional = BUILDERS[name]
    model = build(name, hidden_size=16)
    assert type(model.rnn) is cell
    assert model.rnn.num_layers == layers and model.rnn.bidirectional == bidirectional
    assert model.rnn.batch_first and model.rnn.input_size == 28
    assert model.input_size == (1, 28, 28) and not model.dynamic_size


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_many_to_one_reads_the_final_states_of_both_directions(cell, num_layers):
    model = RNNClassifier(cell=cell, hidden_size=12, num_layers=num_layers, bidirectional=True).eval()
    x = torch.randn(3, 9, 28)
    with torch.no_grad():
        outputs, _ = model.rnn(x)  # (B, T, 2 * hidden): the top layer's states at every step
        features = model.forward_features(x)
    assert features.shape == (3, 24) and model.num_features == 24
    # Forward direction: its state after the last step; backward direction: after the first step.
    expected = torch.cat([outputs[:, -1, :12], outputs[:, 0, 12:]], dim=1)
    torch.testing.assert_close(features, expected)
    assert model.head.in_features == 24


def test_unidirectional_output_size_and_last_step():
    model = build("gru", hidden_size=20).eval()
    x = torch.randn(2, 5, 28)
    with torch.no_grad():
        outputs, _ = model.rnn(x)
        torch.testing.assert_close(model.forward_features(x), outputs[:, -1])
        assert model(x).shape == (2, 10)


@pytest.mark.parametrize("in_chans", [1, 3])
def test_images_are_read_as_sequences_of_rows(in_chans):
    model = build("bilstm", hidden_size=8, num_layers=1, in_chans=in_chans, img_size=12).eval()
    images = torch.randn(2, in_chans, 12, 12)
    # Row t of every channel, side by side: the features of time step t.
    sequence = torch.stack(
        [torch.cat([images[:, c, t] for c in range(in_chans)], dim=1) for t in range(12)], dim=1
    )
    assert sequence.shape == (2, 12, in_chans * 12)
    with torch.no_grad():
        torch.testing.assert_close(model(images), model(sequence))
        # The same rows in another order are another sequence: the reading order matters.
        assert not torch.allclose(model(images), model(images.transpose(2, 3)))


def test_sequence_length_may_vary_but_features_may_not():
    model = build("lstm", hidden_size=8).eval()
    with torch.no_grad():
        for steps in (1, 7, 50):
            assert model(torch.randn(2, steps, 28)).shape == (2, 10)
            assert model(torch.randn(2, 1, steps, 28)).shape == (2, 10)
    with pytest.raises(RuntimeError, match="28"):
        model(torch.randn(2, 1, 28, 32))
    with pytest.raises(ValueError, match=r"\(B, T, F\) sequences or \(B, C, H, W\) images"):
        model(torch.randn(28, 28))


def test_plain_sequences_through_img_size(tmp_path):
    # A (T, F) sequence model is a one-channel "image" of T rows and F columns.
    model = build("gru", img_size=(50, 40), hidden_size=8, num_classes=3).eval()
    assert model.input_size == (1, 50, 40) and model.rnn.input_size == 40
    (example,) = model.example_inputs()
    assert example.shape == (2, 1, 50, 40)
    x = torch.randn(4, 50, 40)
    assert model(x).shape == (4, 3)
    # config.json stores the pair as a list; the rebuilt model must read it the same way.
    loaded = zoo.create_model(str(zoo.save_pretrained(model, tmp_path / "gru"))).eval()
    assert loaded.input_size == (1, 50, 40)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_dropout_between_stacked_layers_only():
    assert build("lstm", dropout=0.3).rnn.dropout == 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns about dropout on a single layer; we must not pass it
        single = build("rnn", dropout=0.3)
    assert single.rnn.dropout == 0.0 and single.head_drop.p == 0.3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell": "transformer"}, "unknown cell 'transformer'; expected one of rnn, lstm, gru"),
        ({"num_layers": 0}, "num_layers must be at least 1"),
    ],
)
def test_bad_options_name_what_is_allowed(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        RNNClassifier(**kwargs)


def test_builder_refuses_to_change_what_its_name_promises():
    with pytest.raises(ConfigError, match=r"fixes cell='lstm'.*rnn, lstm, gru, bilstm"):
        build("lstm", cell="gru")
    with pytest.raises(ConfigError, match="fixes bidirectional=True"):
        build("bilstm", bidirectional=False)
    assert build("lstm", cell="lstm").rnn.mode == "LSTM"  # agreeing is fine (a saved config may repeat it)


def test_pretrained_head_adaptation_and_no_input_channel_adaptation(tmp_path):
    model = build("bilstm", hidden_size=8).eval()
    folder = zoo.save_pretrained(model, tmp_path / "bilstm")
    five = zoo.create_model(str(folder), num_classes=5).eval()
    assert five.head.weight.shape == (5, 16)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(five.forward_features(x), model.forward_features(x))
    # The input weights read C * W features a step: there is no conv kernel to adapt.
    with pytest.raises(ConfigError, match="no first conv to adapt"):
        zoo.create_model(str(folder), in_chans=3)
