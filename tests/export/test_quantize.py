"""int8 dynamic quantisation: a smaller file whose accuracy change is measured and stored in it."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from export.onnx import calibrate_batchnorm, quantize_int8, to_onnx
from export.runtime import OnnxModel
from tests.helpers import build


@pytest.mark.parametrize("name", ["cnn", "lstm"])
def test_quantised_copy_records_its_accuracy_change(name, tmp_path):
    model = calibrate_batchnorm(build(name))
    images = torch.rand(64, *model.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        targets = model(images).argmax(1).numpy()  # the fp32 answers: fp32 accuracy is 1 by construction
    result = to_onnx(
        model,
        tmp_path / f"{name}.onnx",
        quantize=True,
        quantize_inputs={"image": images.numpy()},
        quantize_targets=targets,
    )
    report = result.graphs[0].quantized
    assert report is not None and report.path == tmp_path / f"{name}.int8.onnx"
    assert report.samples == 64 and report.inputs == "given inputs"
    assert report.accuracy_fp32 == 1.0 and report.accuracy_int8 == report.top1_agreement
    assert 0.0 < report.max_abs_diff < 1.0  # int8 changed the outputs, a little
    assert report.size_int8 < 0.5 * report.size_fp32

    proto = onnx.load(str(report.path))
    ops = {n.op_type for n in proto.graph.node}
    assert ops & {"MatMulInteger", "ConvInteger", "DynamicQuantizeLSTM"}, ops
    props = {p.key: p.value for p in proto.metadata_props}
    stored = json.loads(props["zoo.quantization"])
    assert stored["top1_agreement"] == report.top1_agreement and stored["samples"] == 64
    assert stored["accuracy_int8"] == report.accuracy_int8
    int8 = OnnxModel(report.path)
    assert (
        int8.meta.precision == "int8-dynamic" and int8.meta.name == name and int8.meta.extra["quantization"]
    )
    agree = int8.run(images.numpy())["logits"].argmax(1) == targets
    assert agree.mean() == pytest.approx(report.top1_agreement)


def test_autoencoder_quantisation_measures_reconstruction_error(exports):
    exported = exports.get("autoencoder")
    x = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)
    paths = exported.result.paths
    report = quantize_int8(paths["model"], x, out=paths["model"].with_suffix(".q.onnx"))
    assert report.top1_agreement is None and report.samples == 8  # not a classifier
    assert report.mse_fp32 is not None and report.mse_int8 is not None and report.mse_int8 > 0
    encoder = quantize_int8(paths["encoder"], x, out=paths["encoder"].with_suffix(".q.onnx"))
    assert encoder.mse_int8 is None and encoder.max_abs_diff > 0  # latents: the output change only
    stored = OnnxModel(report.path).meta
    assert stored.graph == "model" and stored.extra["quantization"]["mse_int8"] == report.mse_int8
