"""``zoo export``: write a model's ONNX graphs, checked and validated against PyTorch.

Registered in `zoo.cli.PLUGIN_MODULES`. Importing this module is cheap and torch-free (``zoo predict
--onnx`` builds the same parser on machines without torch); the export itself imports torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _size(text: str) -> tuple[int, ...]:
    try:
        size = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not CxHxW (e.g. 3x64x64)") from None
    if len(size) != 3 or any(v <= 0 for v in size):
        raise argparse.ArgumentTypeError(f"'{text}' must be three positive sizes CxHxW (e.g. 3x64x64)")
    return size


def default_out(name: str) -> Path:
    """``NAME.onnx`` in the current folder (the repo name for hf-hub:, the folder name for a path)."""
    stem = name.split(":", 1)[-1].split("@", 1)[0].rstrip("/\\")
    stem = stem.replace("\\", "/").rsplit("/", 1)[-1] or "model"
    return Path(f"{stem}.onnx")


def _cmd_export(args: argparse.Namespace) -> int:
    from export.onnx import DEFAULT_OPSET, to_onnx
    from export.verify import verify_onnx, weight_test_split

    out = args.out or default_out(args.name)
    if args.verify:
        if args.quantize or args.input or args.no_dynamic or args.exporter != "auto" or args.opset:
            from zoo.errors import ConfigError

            raise ConfigError("--verify checks the default export; drop the other export options")
        check = verify_onnx(args.name, out)
        print(check.summary())
        return 0 if check.ok else 1
    quantize_inputs = quantize_targets = None
    if args.quantize:
        split = weight_test_split(args.name)  # real images when the weight records its split
        if split is not None:
            quantize_inputs, quantize_targets = {"image": split[0]}, split[1]
    result = to_onnx(
        args.name,
        out,
        opset=args.opset or DEFAULT_OPSET,
        dynamic=not args.no_dynamic,
        input_size=args.input,
        exporter=args.exporter,
        quantize=args.quantize,
        quantize_inputs=quantize_inputs,
        quantize_targets=quantize_targets,
        rewrite=not args.no_rewrite,
    )
    reports = {g.graph: g for g in result.report.graphs} if result.report else {}
    for graph in result.graphs:
        line = f"{graph.name}: {graph.path} ({graph.exporter} exporter, opset {graph.metadata.opset}"
        axes = sorted({name for axes in graph.dynamic_axes.values() for name in axes.values()})
        line += f", dynamic: {', '.join(axes)})" if axes else ", static shapes)"
        report = reports.get(graph.name)
        if report is not None and report.checks:
            line += (
                f"; onnxruntime vs PyTorch on {len(report.checks)} checks: "
                f"max abs {report.max_abs:.2e}, max rel {report.max_rel:.2e}"
            )
        elif report is not None:  # detectors: variable-length outputs, compared at the task's level only
            agreed = sum(a.ok for a in report.agreements)
            line += f"; onnxruntime vs PyTorch: the task's answers agree on {agreed}/{len(report.agreements)} inputs"
        print(line)
        split = graph.metadata.extra.get("export_split")
        if split:
            print(f"  split: {split['name']}: graph = {split['graph']}; runtime = {split['runtime']}")
        if graph.fallback_reason:
            print(f"  dynamo exporter not used: {graph.fallback_reason}")
        for rewrite in graph.metadata.extra.get("rewrites", []):
            print(f"  rewritten for onnxruntime: {rewrite}")
        q = graph.quantized
        if q is not None:
            change = f"max abs change {q.max_abs_diff:.3g}"
            if q.top1_agreement is not None:
                change += f", top-1 agreement {q.top1_agreement:.4f}"
            if q.accuracy_int8 is not None:
                change += f", accuracy {q.accuracy_fp32:.4f} -> {q.accuracy_int8:.4f}"
            if q.mse_int8 is not None:
                change += f", reconstruction mse {q.mse_fp32:.3g} -> {q.mse_int8:.3g}"
            print(
                f"  int8: {q.path} ({q.size_int8 / q.size_fp32:.2f}x the size; {change} on {q.samples} {q.inputs})"
            )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a model to ONNX (dynamic batch and size), validated against PyTorch"
    )
    p.add_argument("name", help="arch, arch.tag, a weight folder, or hf-hub:org/repo")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="x.onnx (extra graphs: x.<graph>.onnx) or a folder (<graph>.onnx each); default NAME.onnx",
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 20)")
    p.add_argument("--no-dynamic", action="store_true", help="static shapes: batch 1 at the traced size")
    p.add_argument(
        "--quantize",
        action="store_true",
        help="also write <file>.int8.onnx (int8 dynamic quantisation), its accuracy change measured",
    )
    p.add_argument("--input", type=_size, default=None, help="trace at CxHxW (default: the weight's size)")
    p.add_argument(
        "--exporter",
        choices=("auto", "dynamo", "torchscript"),
        default="auto",
        help="auto: dynamo, and the TorchScript exporter where dynamo fails (default)",
    )
    p.add_argument(
        "--no-rewrite",
        action="store_true",
        help="export every layer as it is (default: exact, faster equivalents for onnxruntime; see "
        "export/rewrites.py)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="then run the weight's whole test split through onnxruntime and PyTorch: the task's agreement "
        "check, and the card's metrics re-measured from the ONNX outputs (exit 1 on a mismatch)",
    )
    p.set_defaults(func=_cmd_export)
