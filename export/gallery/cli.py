"""``zoo gallery``: build the static site (`export.gallery`). Registered in `zoo.cli.PLUGIN_MODULES`;
importing this module is cheap (the build imports torch only to export ONNX files)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_gallery(args: argparse.Namespace) -> int:
    from export.gallery import build_gallery

    result = build_gallery(
        args.out,
        weights=args.weights or "*",
        onnx=not args.no_onnx,
        cache_dir=args.cache,
        node_modules=args.node_modules,
        log=print if args.verbose else None,
    )
    print(result.summary())
    print(
        f"open {args.out / 'index.html'} (no server needed), or serve it: python -m http.server -d {args.out}"
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gallery",
        help="build a static site of every architecture and weight, with in-browser ONNX inference",
    )
    p.add_argument("--out", type=Path, default=Path("site"), help="output folder (default: site)")
    p.add_argument(
        "--weights",
        nargs="+",
        default=None,
        metavar="PATTERN",
        help="only these weights (shell patterns on arch.tag, e.g. 'resnet8_small.*'); default all",
    )
    p.add_argument(
        "--no-onnx",
        action="store_true",
        help="no ONNX export and no in-browser inference (fast; needs no node_modules)",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="where exported ONNX files are kept between builds (default ~/.cache/zoo/gallery)",
    )
    p.add_argument(
        "--node-modules",
        type=Path,
        default=None,
        help="the node_modules folder holding onnxruntime-web (default: the repo root's, after `npm ci`)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="print each step")
    p.set_defaults(func=_cmd_gallery)
