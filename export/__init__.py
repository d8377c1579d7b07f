"""ONNX export and torch-free inference for the zoo's models.

    import export
    result = export.to_onnx("resnet8_small", "resnet8_small.onnx")   # export.onnx: needs torch
    model = export.OnnxModel("resnet8_small.onnx")                     # export.runtime: no torch

This package is cheap to import and never imports torch itself: the runtime (`export.runtime`) must run
where only onnxruntime, numpy and pillow are installed. Names are resolved on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoo._lazy import lazy_exports

_EXPORTS = {
    "to_onnx": "export.onnx",
    "validate": "export.onnx",
    "verify_onnx": "export.verify",
    "quantize_int8": "export.onnx",
    "calibrate_batchnorm": "export.onnx",
    "graph_paths": "export.onnx",
    "ExportResult": "export.onnx",
    "ValidationReport": "export.onnx",
    "ExportError": "export.onnx",
    "ExportValidationError": "export.onnx",
    "DEFAULT_OPSET": "export.onnx",
    "OnnxModel": "export.runtime",
    "OnnxModelError": "export.runtime",
    "OnnxInputError": "export.runtime",
    "ZooMetadata": "export.runtime",
    "load": "export.runtime",
    "predict_files": "export.runtime",
    "read_metadata": "export.runtime",
    "Adapter": "export.adapters",
    "GraphSpec": "export.adapters",
    "register_adapter": "export.adapters",
    "get_adapter": "export.adapters",
}

__all__ = [
    "DEFAULT_OPSET",
    "Adapter",
    "ExportError",
    "ExportResult",
    "ExportValidationError",
    "GraphSpec",
    "OnnxInputError",
    "OnnxModel",
    "OnnxModelError",
    "ValidationReport",
    "ZooMetadata",
    "calibrate_batchnorm",
    "get_adapter",
    "graph_paths",
    "load",
    "predict_files",
    "quantize_int8",
    "read_metadata",
    "register_adapter",
    "to_onnx",
    "validate",
    "verify_onnx",
]


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)


if TYPE_CHECKING:
    from export.adapters import Adapter, GraphSpec, get_adapter, register_adapter
    from export.onnx import (
        DEFAULT_OPSET,
        ExportError,
        ExportResult,
        ExportValidationError,
        ValidationReport,
        calibrate_batchnorm,
        graph_paths,
        quantize_int8,
        to_onnx,
        validate,
    )
    from export.runtime import (
        OnnxInputError,
        OnnxModel,
        OnnxModelError,
        ZooMetadata,
        load,
        predict_files,
        read_metadata,
    )
    from export.verify import verify_onnx
