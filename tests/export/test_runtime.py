"""The torch-free runtime: preprocessing from metadata, post-processing, clear errors, `zoo predict --onnx`."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from export.runtime import OnnxInputError, OnnxModel, OnnxModelError, read_metadata
from tests.export.conftest import run_without_torch, write_png
from zoo.cli import main
from zoo.preprocess import ImageInputError, load_image, preprocess_image, softmax


def _torch_probs(demo, path) -> np.ndarray:
    meta = demo.meta
    x = preprocess_image(load_image(path, 1), meta.input_size, meta.mean, meta.std)
    with torch.no_grad():
        return softmax(demo.model(torch.from_numpy(x)).numpy())[0]


def test_runtime_classifies_a_png_without_torch(demo_export, tmp_path):
    png = write_png(tmp_path / "digit.png", (40, 30, 3))  # RGB and another size: converted and resized
    code = """
import json, sys
import export.runtime as rt
model = rt.OnnxModel(sys.argv[1])
(result,) = model.predict([sys.argv[2]])
print(json.dumps({"probs": result.probs.tolist(), "top": result.topk(3), "torch": "torch" in sys.modules,
                  "labels": list(model.meta.labels)}))
"""
    out = json.loads(run_without_torch(code, str(demo_export.result.path), str(png)))
    assert out["torch"] is False
    expected = _torch_probs(demo_export, png)
    np.testing.assert_allclose(out["probs"], expected, atol=1e-5)
    ranked = [demo_export.meta.labels[i] for i in np.argsort(-expected)[:3]]
    assert [label for label, _ in out["top"]] == ranked and out["labels"] == list(demo_export.meta.labels)


def test_zoo_predict_onnx_runs_without_torch(demo_export, tmp_path):
    pngs = [write_png(tmp_path / f"d{i}.png", (28, 28), seed=i) for i in range(2)]
    code = "import runpy; runpy.run_module('zoo', run_name='__main__')"
    out = run_without_torch(
        "import sys; sys.argv = ['zoo', *sys.argv[1:]]\n" + code,
        "predict",
        "--onnx",
        str(demo_export.result.path),
        *map(str, pngs),
        "--topk",
        "2",
    )
    lines = out.strip().splitlines()
    assert len(lines) == 2
    for line, png in zip(lines, pngs):
        source, ranked = line.split(": ", 1)
        assert source == str(png)
        expected = _torch_probs(demo_export, png)
        best = np.argsort(-expected)[:2]
        items = [item.rsplit(" ", 1) for item in ranked.split(", ")]
        assert [label for label, _ in items] == [demo_export.meta.labels[i] for i in best]
        np.testing.assert_allclose([float(p) for _, p in items], expected[best], atol=1e-3)


def test_export_package_and_adapters_import_without_torch():
    code = """
import sys
import export, export.cli, export.runtime, export.adapters, zoo, zoo.preprocess, zoo.errors
found = export.adapters.adapters()
assert "torch" not in sys.modules
print(sorted(type(a).__name__ for a in found))
"""
    names = run_without_torch(code).strip()
    assert "AutoencoderAdapter" in names and "RecurrentAdapter" in names


def test_wrong_channel_count(demo_export):
    model = OnnxModel(demo_export.result.path)  # one grey channel
    with pytest.raises(OnnxInputError, match="image has 3 channels but the model expects 1"):
        model.preprocess(np.zeros((28, 28, 3), np.uint8))
    with pytest.raises(OnnxInputError, match=r"expects 1 channel\(s\) on axis 1 \(NCHW\) but got 3"):
        model.run(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(OnnxInputError, match=r"is it NHWC\? transpose to NCHW"):
        model.run(np.zeros((2, 28, 28, 1), np.float32))


def test_wrong_rank(demo_export):
    model = OnnxModel(demo_export.result.path)
    with pytest.raises(OnnxInputError, match=r"must be a 4-d array \(batch, 1, height, width\), got a 3-d"):
        model.run(np.zeros((1, 28, 28), np.float32))
    with pytest.raises(
        OnnxInputError, match=r"must be 3-d \(H, W, C\), got a 2-d array .* x\[\.\.\., None\]"
    ):
        model.preprocess(np.zeros((28, 28), np.uint8))
    with pytest.raises(OnnxInputError, match="must hold uint8 pixels"):
        model.preprocess(np.zeros((28, 28, 1), np.float32))


def test_a_file_that_is_not_an_image(demo_export, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("this is text, not pixels")
    model = OnnxModel(demo_export.result.path)
    with pytest.raises(OnnxInputError, match="notes.png is not an image file PIL can read") as info:
        model.predict([fake])
    assert isinstance(info.value, ImageInputError)  # callers of zoo.preprocess catch it as before
    with pytest.raises(OnnxInputError, match="no such file"):
        model.predict([tmp_path / "missing.png"])


def test_a_model_file_that_is_not_onnx(tmp_path):
    bad = tmp_path / "weights.onnx"
    bad.write_bytes(b"\x00\x01 definitely not a protobuf" * 10)
    with pytest.raises(OnnxModelError, match="is not an ONNX model onnxruntime can load"):
        OnnxModel(bad)
    with pytest.raises(OnnxModelError, match="no such model file"):
        OnnxModel(tmp_path / "absent.onnx")


def test_an_onnx_file_without_zoo_metadata(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10), path)
    with pytest.raises(OnnxModelError, match=r"has no zoo metadata \(zoo.name, zoo.arch, zoo.task missing"):
        read_metadata(path)


def test_cli_reports_bad_inputs_as_errors(demo_export, tmp_path, capsys):
    fake = tmp_path / "notes.png"
    fake.write_text("text")
    assert main(["predict", "--onnx", str(demo_export.result.path), str(fake)]) == 2
    assert "zoo predict: error: " in capsys.readouterr().err
    not_onnx = write_png(tmp_path / "img.png", (8, 8))
    assert main(["predict", "--onnx", str(not_onnx), str(not_onnx)]) == 2
    assert "is not an ONNX model" in capsys.readouterr().err


def test_cli_export_then_predict(tmp_path, capsys):
    out = tmp_path / "mlp.onnx"
    assert main(["export", "mlp_small", "--out", str(out), "--opset", "18", "--no-dynamic"]) == 0
    printed = capsys.readouterr().out
    assert f"model: {out} (dynamo exporter, opset 18, static shapes)" in printed
    assert "onnxruntime vs PyTorch on 1 checks: max abs" in printed
    model = OnnxModel(out)
    assert model.meta.opset == 18 and model.meta.dynamic is False and model.inputs[0].shape == (1, 1, 28, 28)
    png = write_png(tmp_path / "x.png", (28, 28))
    assert main(["predict", "--onnx", str(out), str(png), "--topk", "1"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith(f"{png}: ") and len(line.split(", ")) == 1


def test_predict_without_files_is_an_error(capsys):
    assert main(["predict", "resnet8_small"]) == 2
    assert "give one or more image files" in capsys.readouterr().err
