"""The export suite: every registered model exports to ONNX, passes the checker and matches PyTorch.

Parametrised over `zoo.list_models()`, so a family added later is covered without touching this file.
"""

from __future__ import annotations

import json
import re

import onnx
import pytest
import torch
from torch import nn

import zoo
from export.adapters import DEFAULT_ATOL, GraphSpec
from export.onnx import ExportValidationError, calibrate_batchnorm, graph_paths, to_onnx, validate
from export.runtime import OnnxModel, ZooMetadata
from tests.helpers import build, suite_models
from zoo.errors import ConfigError

# Up to tests.helpers.MAX_SUITE_PARAMS. One test per model runs every check on its export: under
# pytest-xdist each worker caches its own exports, and the export is the slow part, so a model's checks
# belong to one test (pytest-xdist 3.8's `xdist_group` is lost under pytest 9.2: pytest-xdist#1386).
ALL_MODELS = suite_models()

# What an exporter names a value it was not given a name for: '1801', 'input.1', 'onnx::Gemm_12', 'output_0'.
AUTO_NAME = re.compile(r"^(\d+|.*\.\d+|onnx::.*|(input|output)_?\d*|x|getitem.*|l_.*_)$")


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_export(exports, name):
    """The export passes the checker and matches PyTorch, has meaningful names and dynamic axes, and its
    metadata describes the model."""
    exported = exports.get(name)
    _passes_checker_and_matches_pytorch(exported, name)
    _has_meaningful_names_and_dynamic_axes(exported, name)
    _metadata_describes_the_model(exported, name)


def _passes_checker_and_matches_pytorch(exported, name):
    report = exported.result.report
    assert report is not None and report.ok, report.summary()
    for graph in report.graphs:
        assert graph.checker_error is None, graph.checker_error
        batches = {c.batch for c in graph.checks}
        variants = {c.variant for c in graph.checks}
        assert batches == {1, 2}, f"{name}/{graph.graph}: validated at batches {batches}"
        expects_two_sizes = any(
            axis >= 2 for axes in exported.result.graph(graph.graph).dynamic_axes.values() for axis in axes
        )
        assert len(variants) == (2 if expects_two_sizes else 1), f"{name}/{graph.graph}: sizes {variants}"
        for check in graph.checks:
            assert check.max_abs <= check.atol, f"{name}/{graph.graph}: {check}"
            assert check.atol == DEFAULT_ATOL or graph.tolerance_note, "a looser tolerance needs its reason"


def _has_meaningful_names_and_dynamic_axes(exported, name):
    for graph in exported.result.graphs:
        proto = onnx.load(str(graph.path), load_external_data=False)
        inputs = [i.name for i in proto.graph.input]
        outputs = [o.name for o in proto.graph.output]
        assert inputs == list(graph.input_names) and outputs == list(graph.output_names)
        for value in [*inputs, *outputs]:
            assert not AUTO_NAME.match(value), f"{name}/{graph.name}: auto-generated name {value!r}"
        for value in [*proto.graph.input, *proto.graph.output]:
            assert _dims(value)[0] == "batch", f"{name}/{graph.name}: {value.name} has no dynamic batch axis"
        if graph.input_names == ("image",):
            (image,) = proto.graph.input
            spatial = _dims(image)[2:]
            family = zoo.model_info(name)["family"]
            if family == "rnn":  # image rows are time steps: T varies, the row width does not
                assert spatial == ["time", exported.input_size[2]]
            elif exported.model.dynamic_size:
                assert spatial == ["height", "width"]
            else:
                assert spatial == list(exported.input_size[1:])
        assert not graph.path.with_name(graph.path.name + ".data").exists(), "one self-contained file"


def _metadata_describes_the_model(exported, name):
    info = zoo.model_info(name)
    for graph in exported.result.graphs:
        proto = onnx.load(str(graph.path), load_external_data=False)
        props = {p.key: p.value for p in proto.metadata_props}
        assert props["zoo.name"] == name and props["zoo.arch"] == name
        assert props["zoo.task"] == info["task"] and props["zoo.family"] == info["family"]
        assert props["zoo.graph"] == graph.name
        assert json.loads(props["zoo.input_size"]) == list(exported.input_size)
        assert props["zoo.layout"] == "NCHW"
        assert json.loads(props["zoo.opset"]) == 20
        assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {20}
        assert props["zoo.exporter"] == graph.exporter in ("dynamo", "torchscript")
        assert props["zoo.version"] == zoo.__version__ and props["zoo.torch_version"] == torch.__version__
        assert json.loads(props["zoo.pretrained"]) is False
        # Read back by the torch-free runtime: the same fields, decoded.
        meta = OnnxModel(graph.path).meta
        assert meta == ZooMetadata.from_props(meta.to_props())
        assert (meta.name, meta.task, meta.graph, meta.exporter) == (
            name,
            info["task"],
            graph.name,
            graph.exporter,
        )
        if graph.exporter == "torchscript":  # the reason dynamo was not used travels with the file
            assert meta.extra["exporter_note"].startswith("dynamo: ")


def test_exporters_used_per_family(exports):
    # torch 2.14's dynamo exporter refuses a dynamic sequence length for the Elman RNN (it unrolls the
    # loop over the traced T); the TorchScript exporter writes an ONNX RNN op that loops over any T.
    assert exports.get("rnn").result.exporters == {"model": "torchscript"}
    assert exports.get("lstm").result.exporters == {"model": "dynamo"}
    assert exports.get("resnet8_small").result.exporters == {"model": "dynamo"}
    note = exports.get("rnn").result.graphs[0].fallback_reason
    assert note and "dynamo" in note and "static" in note


def test_pretrained_weight_metadata_round_trip(demo_export):
    meta, weights = OnnxModel(demo_export.result.path).meta, demo_export.meta
    assert meta.name == "resnet8_small.onnxdemo" and (meta.arch, meta.tag) == ("resnet8_small", "onnxdemo")
    assert meta.labels == weights.labels and len(meta.labels) == 10
    assert meta.mean == (0.5,) and meta.std == (0.25,) and meta.input_size == (1, 28, 28)
    assert meta.weights_sha256 == weights.sha256 and len(meta.weights_sha256) == 64
    assert meta.weights_revision == "0123456789abcdef0123456789abcdef01234567"
    assert meta.pretrained is True and meta.precision == "fp32"
    assert meta.model_args == {"in_chans": 1, "num_classes": 10, "img_size": 28}
    props = {p.key: p.value for p in onnx.load(str(demo_export.result.path)).metadata_props}
    assert json.loads(props["zoo.labels"]) == list(weights.labels)  # lists are JSON-encoded
    assert json.loads(props["zoo.mean"]) == [0.5]


def test_validate_rereads_the_export_and_catches_a_different_model(exports):
    exported = exports.get("mlp_small")
    again = validate(exported.model, exported.result.path)
    assert again.ok and again.max_abs <= DEFAULT_ATOL
    torch.manual_seed(123)
    other = zoo.create_model("mlp_small").eval()  # same architecture, other parameters
    with pytest.raises(ExportValidationError, match=r"max abs .* > atol 1e-04") as info:
        validate(other, exported.result.path)
    assert not info.value.report.ok and info.value.report.max_abs > 1e-3


def test_parity_scales_with_the_outputs_magnitude(tmp_path):
    """A deep random-init network's logits reach 1e2..1e5 (ResNet-152 by name: up to 72 off in absolute
    terms at a relative 1e-6): the bound is atol + rtol * max|output|, so such a graph passes, while the
    same absolute error on unit-scale outputs still fails (the test above)."""
    model = build("mlp_small").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(40.0)  # logits of magnitude ~1e3, as an uncalibrated deep net gives
    result = to_onnx(model, tmp_path / "big.onnx")
    checks = result.report.graphs[0].checks
    assert result.report.ok and max(c.scale for c in checks) > 100
    assert all(c.max_abs <= c.atol + c.rtol * c.scale for c in checks)
    assert all(a.ok for a in result.report.graphs[0].agreements)  # and the same top-1 for every sample


def test_static_export_fixes_batch_and_size(tmp_path):
    model = calibrate_batchnorm(build("cnn_dws"))
    result = to_onnx(model, tmp_path / "static.onnx", dynamic=False)
    proto = onnx.load(str(result.path))
    assert _dims(proto.graph.input[0]) == [1, 1, 28, 28] and _dims(proto.graph.output[0]) == [1, 10]
    assert {(c.batch, c.variant) for c in result.report.graphs[0].checks} == {(1, (28, 28))}
    assert OnnxModel(result.path).meta.dynamic is False


def test_torchscript_exporter_on_request(tmp_path):
    model = calibrate_batchnorm(build("cnn"))
    result = to_onnx(model, tmp_path / "ts.onnx", exporter="torchscript", input_size=(1, 32, 32))
    assert result.exporters == {"model": "torchscript"} and result.report.ok
    meta = OnnxModel(result.path).meta
    assert (
        meta.exporter == "torchscript"
        and meta.extra["exporter_note"] == "the torchscript exporter was requested"
    )
    proto = onnx.load(str(result.path))
    assert _dims(proto.graph.input[0]) == ["batch", 1, "height", "width"]
    assert meta.input_size == (1, 32, 32)


def test_graph_paths_for_files_and_folders(tmp_path):
    assert graph_paths(tmp_path / "ae.onnx", ["model", "encoder"]) == {
        "model": tmp_path / "ae.onnx",
        "encoder": tmp_path / "ae.encoder.onnx",
    }
    assert graph_paths(tmp_path / "out", ["model", "decoder"]) == {
        "model": tmp_path / "out" / "model.onnx",
        "decoder": tmp_path / "out" / "decoder.onnx",
    }


def test_bad_export_arguments(tmp_path):
    with pytest.raises(ConfigError, match="keep the model's channels"):
        to_onnx(build("cnn"), tmp_path / "a.onnx", input_size=(3, 28, 28))
    with pytest.raises(ConfigError, match="fixed input size"):
        to_onnx(build("mlp_small"), tmp_path / "b.onnx", input_size=(1, 32, 32))
    with pytest.raises(ConfigError, match="not built by the zoo"):
        to_onnx(nn.Linear(3, 2), tmp_path / "c.onnx")
    with pytest.raises(ConfigError, match="exporter must be"):
        to_onnx("mlp_small", tmp_path / "d.onnx", exporter="tf")


def test_a_looser_tolerance_must_say_why():
    common = dict(
        module=nn.Identity(), input_names=("x_in",), output_names=("y",), make_inputs=None, variants=(1,)
    )
    with pytest.raises(ValueError, match="set tolerance_note"):
        GraphSpec(name="model", atol=1e-3, **common)
    assert GraphSpec(name="model", atol=1e-3, tolerance_note="fp16 weights", **common).atol == 1e-3
