"""``zoo data list | info | show | export``: the dataset registry from the command line.

Registered in `zoo.cli.PLUGIN_MODULES`; ``add_commands`` adds the ``data`` verb and its sub-verbs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError


def _options(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs to loader options; values are JSON where they parse (128, true, [0.5, 2])."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set max_digits=4")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def _cmd_list(args: argparse.Namespace) -> int:
    from zoo.data import get_dataset_info, list_datasets

    for name in list_datasets(args.pattern or "*", target=args.target):
        info = get_dataset_info(name)
        where = "bundled" if info.offline else "data_root"
        print(f"{name:18s} {where:9s} {','.join(info.targets):36s} {info.description}")
        if args.verbose:
            print(f"{'':18s} split: {info.split}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from zoo.data import get_dataset_info

    print(json.dumps(get_dataset_info(args.name).to_dict(), indent=2))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from zoo.data.show import dataset_picture, save_png

    picture = dataset_picture(args.name, args.split, args.n, **_common(args))
    print(save_png(picture, args.out))
    return 0


def _common(args: argparse.Namespace) -> dict[str, Any]:
    options = _options(args.set)
    if args.data_root is not None:
        options["data_root"] = args.data_root
    return options


def _cmd_export(args: argparse.Namespace) -> int:
    from zoo.data import load_dataset
    from zoo.data.coco import export_coco

    if args.format != "coco":
        raise ConfigError(f"--format {args.format!r}: only 'coco' is supported")
    splits = load_dataset(args.name, **_common(args))
    data = getattr(splits, args.split, None)
    if data is None:
        raise ConfigError(f"dataset {args.name!r} has no {args.split!r} split")
    description = f"{args.name}, {args.split} split; {splits.split}"
    path = export_coco(data, args.out, args.n, description=description)
    print(path)
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="datasets: list, info, show (a PNG), export (COCO)")
    verbs = p.add_subparsers(dest="data_command", required=True, metavar="VERB")

    q = verbs.add_parser("list", help="registered datasets: where they come from, targets, description")
    q.add_argument("pattern", nargs="?", help="shell wildcard, e.g. 'digit*'")
    q.add_argument(
        "--target", default=None, help="only datasets whose samples carry this (label, masks, ...)"
    )
    q.add_argument("-v", "--verbose", action="store_true", help="also print how the splits are carved")
    q.set_defaults(func=_cmd_list)

    q = verbs.add_parser("info", help="a dataset's registry entry (JSON)")
    q.add_argument("name")
    q.set_defaults(func=_cmd_info)

    def common(q: argparse.ArgumentParser, n: int | None) -> None:
        q.add_argument("name", help="a registered dataset (zoo data list)")
        q.add_argument("--split", default="test", help="train, val (with --set val_per_class=N) or test")
        q.add_argument("--n", type=int, default=n, help=f"how many examples (default {n or 'all'})")
        q.add_argument("--out", type=Path, required=True)
        q.add_argument("--data-root", default=None, help="for datasets that are not bundled")
        q.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE", help="a loader option (repeatable)"
        )

    q = verbs.add_parser("show", help="a PNG of examples (scenes: image, semantic overlay, boxes, caption)")
    common(q, 16)
    q.set_defaults(func=_cmd_show)

    q = verbs.add_parser("export", help="write a split as COCO (images + instances JSON with RLE masks)")
    common(q, None)
    q.add_argument("--format", default="coco", choices=["coco"])
    q.set_defaults(func=_cmd_export)
