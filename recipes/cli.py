"""``zoo train``: run a recipe preset, with ``--set key=value`` overrides, or resume a run folder.

Registered in `zoo.cli.PLUGIN_MODULES`; ``add_commands`` adds the verb.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _cmd_train(args: argparse.Namespace) -> int:
    from recipes.config import config_to_dict
    from recipes.engine import list_presets, resolve_config, train
    from zoo.errors import ConfigError

    if args.list:
        for preset in list_presets():
            print(f"{preset.name:32s} {preset.objective.name:16s} {preset.description}")
        return 0
    if args.show:
        if not args.recipe:
            raise ConfigError("--show needs a RECIPE")
        preset, config = resolve_config(args.recipe, args.set)
        print(
            json.dumps(
                {"recipe": preset.name, "objective": preset.objective.name, "config": config_to_dict(config)},
                indent=2,
            )
        )
        return 0
    if args.resume is None and not args.recipe:
        raise ConfigError("name a RECIPE (see `zoo train --list`) or --resume RUN_FOLDER")
    if args.resume is not None and args.recipe:
        saved = Path(args.resume) / "config.json"
        if saved.is_file() and json.loads(saved.read_text()).get("recipe") != args.recipe:
            raise ConfigError(f"{args.resume} is a run of another recipe; drop RECIPE when resuming")
    result = train(args.recipe or "", args.set, out=args.out, resume=args.resume)
    if result.run_dir is not None and _is_main():
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
        print(f"run folder: {result.run_dir}")
        print(f"trained {result.steps} steps ({result.epochs:.2f} epochs) in {result.train_time_s:.1f} s")
        if metrics:
            print(f"test: {metrics}")
        if result.weight_folder is not None:
            print(f"weight folder: {result.weight_folder}")
    return 0


def _is_main() -> bool:
    import os

    return int(os.environ.get("RANK", 0)) == 0


def add_set_argument(p: argparse.ArgumentParser) -> None:
    """The repeatable ``--set KEY=VALUE`` config override every recipe verb takes."""
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable; dots reach nested keys: --set optim.lr=0.05)",
    )


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a recipe preset (zoo train --list); the run folder ends with a weight in hub layout",
        description="Train a recipe preset. Under `torchrun --nproc_per_node=N -m zoo train ...` it runs DDP.",
    )
    p.add_argument("recipe", nargs="?", help="a preset name, e.g. resnet8_small.mnist")
    add_set_argument(p)
    p.add_argument("--resume", type=Path, default=None, metavar="RUN", help="continue the run in this folder")
    p.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="run folder (default runs/RECIPE-TIME)"
    )
    p.add_argument("--list", action="store_true", help="list the recipe presets")
    p.add_argument("--show", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=_cmd_train)
