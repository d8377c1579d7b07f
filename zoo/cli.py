"""The `zoo` command line: list, info, summary, predict, plus the verbs other packages add.

Each package owns its verbs: a module in `PLUGIN_MODULES` exposes ``add_commands(subparsers)``, and each
verb sets ``func`` to a function taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from zoo.errors import ZooError

# Verbs defined outside this file (training and its toolbox in recipes/, export in export/).
PLUGIN_MODULES: tuple[str, ...] = (
    "recipes.cli",
    "recipes.tools",
    "export.cli",
    "export.gallery.cli",
    "zoo.data.cli",
    "zoo.sampling",
    "zoo.probing",
    "zoo.tracking",
    "zoo.importing",
    "zoo.search",
    "zoo.results",
)


def _cmd_list(args: argparse.Namespace) -> int:
    from zoo.registry import list_models

    for name in list_models(args.pattern or "*", pretrained=args.pretrained, task=args.task):
        print(name)
    return 0


def _cmd_tasks(args: argparse.Namespace) -> int:
    from zoo.tasks import list_tasks

    for task in list_tasks():
        aliases = f" (also: {', '.join(task.aliases)})" if task.aliases else ""
        print(f"{task.name}{aliases}  [pipeline_tag: {task.pipeline_tag}]  {task.summary}")
        for f in task.weight_fields:
            print(f"    {f.name} = {f.default!r}: {f.doc}")
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from zoo.evaluation import verify

    failed = 0
    for name in args.names:
        report = verify(name, limit=args.limit)
        print(report.summary())
        failed += not report.ok
    return 1 if failed else 0


def _cmd_robustness(args: argparse.Namespace) -> int:
    from zoo.errors import ConfigError
    from zoo.registry import IN_TREE_HUB
    from zoo.reliability import assess, record_assessment

    failed = 0
    for name in args.names:
        if args.record:
            folder = IN_TREE_HUB / name
            if not (folder / "config.json").is_file():
                raise ConfigError(f"--record writes into the in-tree hub folder, and {folder} has no weight")
            report = record_assessment(name, folder)
        else:
            report = assess(name, step=args.step, calibration=not args.no_calibration)
        print(report.summary())
        failed += not report.ok
    return 1 if failed else 0


def _cmd_info(args: argparse.Namespace) -> int:
    from zoo.registry import model_info

    print(json.dumps(model_info(args.name), indent=2))
    return 0


def _parse_input_size(text: str) -> tuple[int, ...]:
    try:
        size = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not CxHxW (e.g. 1x28x28)") from None
    if not size or any(v <= 0 for v in size):
        raise argparse.ArgumentTypeError(f"'{text}' must be positive sizes like 1x28x28")
    return size


def _cmd_summary(args: argparse.Namespace) -> int:
    from zoo.analysis import summary
    from zoo.factory import create_model

    model = create_model(args.name)
    size, expected = args.input, getattr(model, "input_size", None)
    # 1x28x28 asks for a one-channel model: rebuild it with the in_chans= adaptation (first conv).
    adapt = size and expected and len(size) == len(expected) and size[0] != expected[0]
    if adapt and getattr(model, "first_conv", None):
        model = create_model(args.name, in_chans=size[0])
    print(summary(model, input_size=size))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    if args.onnx is not None:  # an exported file: onnxruntime, numpy and pillow only (no torch)
        from export.runtime import predict_files as predict_onnx

        files = [Path(args.name), *args.files]
        if args.labels:
            from export.clip_runtime import zero_shot_lines

            for line in zero_shot_lines(args.onnx, files, args.labels.split(","), k=args.topk):
                print(line)
            return 0
        for line in predict_onnx(
            args.onnx,
            files,
            k=args.topk,
            invert=args.invert,
            out_dir=args.out,
            tile=args.tile,
            **_thresh(args),
        ):
            print(line)
        return 0
    if not args.files:
        raise ZooError("give one or more image files after NAME (or --onnx PATH, then image files)")
    from zoo.predict import predict_files

    for line in predict_files(
        args.name,
        args.files,
        k=args.topk,
        invert=args.invert,
        out_dir=args.out,
        tile=args.tile,
        labels=args.labels.split(",") if args.labels else None,
        **_thresh(args),
    ):
        print(line)
    return 0


def _thresh(args: argparse.Namespace) -> dict[str, float]:
    # Only when given: a task's postprocess falls back to the weight's own score_thresh.
    return {} if args.score_thresh is None else {"score_thresh": args.score_thresh}


def _cmd_push(args: argparse.Namespace) -> int:
    from zoo.hub import push_to_hub

    print(push_to_hub(args.name, args.repo_id, revision=args.revision, private=args.private))
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    from zoo.hub import pull

    for name, folder in zip(args.names, pull(args.names)):
        print(f"{name}: {folder} (sha256 verified)")
    return 0


def _cmd_bundle(args: argparse.Namespace) -> int:
    from zoo.hub import bundle

    for folder in bundle(args.names, args.out):
        print(f"{folder} (sha256 verified)")
    print(f"on the offline machine: ZOO_HUB_DIR={args.out.resolve()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from zoo import __version__

    parser = argparse.ArgumentParser(
        prog="zoo", description="A PyTorch model zoo with a pretrained-weight hub."
    )
    parser.add_argument("--version", action="version", version=f"zoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list registered models, or published weights with --pretrained")
    p.add_argument("pattern", nargs="?", help="shell wildcard, e.g. 'resnet*'")
    p.add_argument("--pretrained", action="store_true", help="list arch.tag weights instead of architectures")
    p.add_argument(
        "--task", help="only this task (a zoo task name, e.g. semantic-segmentation; see `zoo tasks`)"
    )
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("tasks", help="the zoo's tasks: names, Hugging Face pipeline tags, weight fields")
    p.set_defaults(func=_cmd_tasks)

    p = sub.add_parser("info", help="what the registry knows about a model or a weight (JSON)")
    p.add_argument("name", help="arch or arch.tag")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("summary", help="per-layer output shape, receptive field, parameters and FLOPs")
    p.add_argument("name", help="arch or arch.tag")
    p.add_argument("--input", type=_parse_input_size, default=None, help="input size CxHxW, e.g. 1x28x28")
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser(
        "predict", help="run a weight on image files: top-k labels, or pictures (masks, boxes, images)"
    )
    p.add_argument("name", help="arch.tag, a weight folder, or hf-hub:org/repo (with --onnx: an image file)")
    p.add_argument("files", nargs="*", type=Path)
    p.add_argument(
        "--onnx",
        type=Path,
        default=None,
        metavar="PATH",
        help="run this exported file with onnxruntime (no torch)",
    )
    p.add_argument("--topk", type=int, default=3)
    p.add_argument("--invert", action="store_true", help="invert intensities (dark digits on light paper)")
    p.add_argument(
        "--out", type=Path, default=None, help="folder for pictures: outputs, overlays, drawn boxes"
    )
    p.add_argument(
        "--tile",
        type=int,
        default=None,
        metavar="PIXELS",
        help="image-to-image: run large images in overlapping tiles of this side (default 512; 0: whole image)",
    )
    p.add_argument(
        "--score-thresh",
        type=float,
        default=None,
        metavar="P",
        help="detection: show boxes scoring at least this (default: the weight's score_thresh)",
    )
    p.add_argument(
        "--labels",
        default=None,
        metavar="A,B,...",
        help="zero-shot (CLIP): class names or free texts, comma-separated, e.g. 0,1,2,3,4,5,6,7,8,9",
    )
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "verify",
        aliases=["eval"],
        help="re-measure published weights on their recorded test split (detectors: COCOeval's table); "
        "exit 1 on a mismatch",
    )
    p.add_argument("names", nargs="+", help="arch.tag")
    p.add_argument("--limit", type=int, default=None, help="only the first N test items (a quick check)")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser(
        "robustness",
        help="a classifier's accuracy on corrupted test digits (MNIST-C style) and its calibration, "
        "compared with its card; exit 1 on a mismatch",
    )
    p.add_argument("names", nargs="+", help="arch.tag of a published classifier")
    p.add_argument(
        "--step", type=int, default=1, help="every STEP-th test image (10: the card's quick subset)"
    )
    p.add_argument("--no-calibration", action="store_true", help="skip the temperature fit and ECE")
    p.add_argument(
        "--record", action="store_true", help="measure in full and write it into the in-tree weight's card"
    )
    p.set_defaults(func=_cmd_robustness)

    p = sub.add_parser("push", help="publish a weight folder to the Hugging Face Hub; prints the commit sha")
    p.add_argument("name", help="arch.tag found in a hub folder, or a folder written by save_pretrained")
    p.add_argument("--repo-id", required=True, help="ORG/NAME on the Hub (created if missing)")
    p.add_argument("--revision", default=None, help="branch to push to (default: main)")
    p.add_argument("--private", action="store_true", help="create the repo private (when it does not exist)")
    p.set_defaults(func=_cmd_push)

    p = sub.add_parser("pull", help="download weights into the HF cache at their pinned revision, verified")
    p.add_argument("names", nargs="+", help="arch.tag or hf-hub:org/repo[@revision]")
    p.set_defaults(func=_cmd_pull)

    p = sub.add_parser("bundle", help="copy verified weights into a folder for ZOO_HUB_DIR (offline use)")
    p.add_argument("names", nargs="+", help="arch.tag")
    p.add_argument("--out", type=Path, required=True, help="bundle folder: one arch.tag folder per weight")
    p.set_defaults(func=_cmd_bundle)

    for module in PLUGIN_MODULES:
        importlib.import_module(module).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ZooError as err:
        print(f"zoo {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error. Silence the flush at exit.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
