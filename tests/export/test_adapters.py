"""Export adapters: the registry, the autoencoder's three graphs, the RNN's dynamic sequence length."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from export.adapters import Adapter, get_adapter, register_adapter, resize_example, unregister_adapter
from export.adapters.autoencoder import AutoencoderAdapter
from export.adapters.resnet import ATOL_PER_BOTTLENECK
from export.adapters.rnn import RecurrentAdapter
from export.onnx import _session
from export.runtime import OnnxInputError, OnnxModel, predict_files
from tests.export.conftest import write_png
from tests.helpers import build
from zoo.preprocess import load_image, preprocess_image


def test_lookup_by_family_then_default():
    assert isinstance(get_adapter("rnn"), RecurrentAdapter)
    assert isinstance(get_adapter("autoencoder"), AutoencoderAdapter)
    assert (
        type(get_adapter("some_new_family")) is Adapter
    )  # what outputs mean is the task's, not an adapter's
    assert type(get_adapter("cnn")) is Adapter  # tensor-in, tensor-out


def test_a_new_family_is_one_class():
    @register_adapter
    class StepAdapter(Adapter):
        families = ("diffusion_test_family",)

    try:
        assert isinstance(get_adapter("diffusion_test_family"), StepAdapter)
        with pytest.raises(ValueError, match="already adapted: diffusion_test_family"):

            @register_adapter
            class Again(Adapter):
                families = ("diffusion_test_family",)

        with pytest.raises(ValueError, match="names no families"):
            register_adapter(type("Nothing", (Adapter,), {}))
    finally:
        unregister_adapter(StepAdapter)
    assert type(get_adapter("diffusion_test_family")) is Adapter


def test_autoencoder_exports_model_encoder_and_decoder(exports):
    exported = exports.get("autoencoder")
    paths = exported.result.paths
    assert set(paths) == {"model", "encoder", "decoder"}
    assert (
        paths["encoder"].name == "autoencoder.encoder.onnx"
        and paths["decoder"].name == "autoencoder.decoder.onnx"
    )
    io = {g.name: (g.input_names, g.output_names) for g in exported.result.graphs}
    assert io == {
        "model": (("image",), ("reconstruction",)),
        "encoder": (("image",), ("latent",)),
        "decoder": (("latent",), ("reconstruction",)),
    }
    model = exported.model
    x = torch.rand(3, *exported.input_size, generator=torch.Generator().manual_seed(5))
    encoder, decoder, full = (_session(paths[g]) for g in ("encoder", "decoder", "model"))
    (latent,) = encoder.run(["latent"], {"image": x.numpy()})
    (chained,) = decoder.run(["reconstruction"], {"latent": latent})
    (direct,) = full.run(["reconstruction"], {"image": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(latent, model.encode(x).numpy(), atol=1e-5)
        np.testing.assert_allclose(chained, model(x).numpy(), atol=1e-5)
    np.testing.assert_allclose(direct, chained, atol=1e-5)
    assert latent.shape == (3, model.latent_dim)


def test_autoencoder_runtime_reconstructs_images(exports, tmp_path):
    exported = exports.get("autoencoder")
    png = write_png(tmp_path / "digit.png", (28, 28))
    full = OnnxModel(exported.result.paths["model"])
    (image,) = full.predict([png])
    assert image.dtype == np.uint8 and image.shape == (28, 28, 1)
    x = preprocess_image(load_image(png, 1), (1, 28, 28))
    with torch.no_grad():
        expected = exported.model(torch.from_numpy(x))[0].numpy().transpose(1, 2, 0)
    assert np.abs(image.astype(int) - np.round(expected * 255)).max() <= 1
    (latent,) = OnnxModel(exported.result.paths["encoder"]).predict([png])
    decoder = OnnxModel(exported.result.paths["decoder"])
    (decoded,) = decoder.predict(latent[None])
    np.testing.assert_array_equal(decoded, image)
    with pytest.raises(OnnxInputError, match=r"takes latent\(batch, 32\), not image files"):
        decoder.predict([png])
    (line,) = predict_files(exported.result.paths["model"], [png], out_dir=tmp_path / "out")
    assert line == f"{png}: reconstruction -> {tmp_path / 'out' / 'digit_reconstruction.png'}"
    np.testing.assert_array_equal(load_image(tmp_path / "out" / "digit_reconstruction.png", 1), image)


@pytest.mark.parametrize("name", ["rnn", "lstm"])
def test_recurrent_models_take_any_sequence_length(exports, name):
    exported = exports.get(name)
    session = _session(exported.result.path)
    assert session.get_inputs()[0].shape == ["batch", 1, "time", 28]
    for steps in (1, 9, 100):
        x = torch.randn(2, 1, steps, 28, generator=torch.Generator().manual_seed(steps))
        (got,) = session.run(["logits"], {"image": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(got, exported.model(x).numpy(), atol=1e-5)


def test_deep_resnet_tolerance_reason_holds(exports):
    # The ResNet adapter loosens the bound for bottleneck nets because eager fp32 itself drifts from the
    # exact result at that depth; check the reason, not only the bound: onnxruntime is no further from
    # a float64 evaluation than eager PyTorch is.
    exported = exports.get("resnet152")
    (graph,) = exported.result.report.graphs
    assert graph.tolerance_note
    assert all(c.atol == pytest.approx(50 * ATOL_PER_BOTTLENECK) for c in graph.checks)
    (x,) = exported.model.example_inputs(batch_size=2, generator=torch.Generator().manual_seed(7))
    x = resize_example(x, exported.input_size[1:])
    (ort,) = _session(exported.result.path).run(["logits"], {"image": x.numpy()})
    with torch.no_grad():
        eager = exported.model(x).numpy()
        exact = copy.deepcopy(exported.model).double()(x.double()).numpy()
    eager_error, ort_error = np.abs(eager - exact).max(), np.abs(ort - exact).max()
    assert eager_error > 1e-4, "eager fp32 no longer drifts: tighten the ResNet tolerance"
    assert ort_error <= 1.5 * eager_error


def test_default_adapter_names_outputs_without_auto_names(monkeypatch):
    import export.adapters as adapters

    model = build("cnn").eval()
    default = Adapter()
    assert default.graphs(model, input_size=(1, 28, 28), dynamic=True)[0].output_names == ("logits",)
    model.output_names = ("scores",)  # a family may name its outputs on the model class
    assert default.graphs(model, input_size=(1, 28, 28), dynamic=True)[0].output_names == ("scores",)
    del model.output_names
    monkeypatch.setattr(adapters, "task_of", lambda _model: "semantic-segmentation")  # the task names them
    (spec,) = default.graphs(model, input_size=(1, 28, 28), dynamic=True)
    assert spec.input_names == ("image",) and spec.output_names == ("logits",)
    assert spec.dynamic_axes == {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}}
    monkeypatch.setattr(adapters, "task_of", lambda _model: "object-detection")  # 1 output, 3 names: first
    assert default.graphs(model, input_size=(1, 28, 28), dynamic=True)[0].output_names == ("boxes",)
