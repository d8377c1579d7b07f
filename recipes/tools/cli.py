"""The toolbox verbs of the `zoo` command line: ``lr-find``, ``doctor``, ``search``, ``ensemble``
(registered through `recipes.tools.add_commands` in `zoo.cli.PLUGIN_MODULES`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from recipes.cli import add_set_argument
from recipes.tools.checks import doctor
from recipes.tools.common import default_out
from recipes.tools.ensemble import snapshot_ensemble
from recipes.tools.hpsearch import ALIASES, search
from recipes.tools.lr_finder import lr_find

__all__ = ["add_commands"]


def _cmd_lr_find(args: argparse.Namespace) -> int:
    out = args.out or default_out("lr-find", args.recipe)
    result = lr_find(
        args.recipe, args.set, start=args.start, end=args.end, steps=args.steps, beta=args.smooth,
        diverge=args.diverge, out=out,
    )  # fmt: skip
    print(result.summary())
    print(f"plot: {result.plot}")
    print(
        f"try: zoo train {args.recipe} {' '.join(f'--set {s}' for s in args.set)} --set optim.lr={result.suggestion:.3g}".replace(
            "  ", " "
        )
    )
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    report = doctor(args.recipe, args.set, steps=args.steps, lr=args.lr, tolerance=args.tolerance)
    print(report)
    return 0 if report.passed else 1


def _cmd_search(args: argparse.Namespace) -> int:
    out = args.out or default_out("search", args.recipe)
    result = search(
        args.recipe, args.space, args.set, trials=args.trials, sampler=args.sampler, prune=args.prune,
        prune_startup=args.prune_startup, scale_lr=args.scale_lr, metric=args.metric, direction=args.direction,
        baseline=args.baseline, seed=args.seed, out=out,
    )  # fmt: skip
    print(result.summary())
    print(f"results: {result.out / 'search.csv'}, {result.out / 'search.json'}")
    return 0 if result.best is not None else 1


def _cmd_ensemble(args: argparse.Namespace) -> int:
    result = snapshot_ensemble(args.recipe, args.set, snapshots=args.snapshots, out=args.out)
    print(result.summary())
    print(f"run folder: {result.run_dir}")
    return 0


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="a preset name (zoo train --list)")
    add_set_argument(p)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """The toolbox verbs: lr-find, doctor, search, ensemble (registered in `zoo.cli.PLUGIN_MODULES`)."""
    p = subparsers.add_parser(
        "lr-find",
        help="learning-rate range test: plot of loss vs lr and a suggested rate",
        description="Exponentially increasing learning rate over mini-batches; stops on divergence; the model "
        "is restored afterwards. Suggests the rate at the steepest descent of the smoothed loss.",
    )
    _add_set(p)
    p.add_argument("--start", type=float, default=1e-7, help="first learning rate (default 1e-7)")
    p.add_argument("--end", type=float, default=10.0, help="last learning rate (default 10)")
    p.add_argument("--steps", type=int, default=100, help="mini-batches in the sweep (default 100)")
    p.add_argument("--smooth", type=float, default=0.8, help="loss smoothing factor in [0, 1) (default 0.8)")
    p.add_argument("--diverge", type=float, default=4.0, help="stop when the loss exceeds this x its minimum")
    p.add_argument("--out", type=Path, default=None, help="folder for lr_find.png/.csv/.json")
    p.set_defaults(func=_cmd_lr_find)

    p = subparsers.add_parser(
        "doctor",
        help="sanity checks before training: initial loss, gradient flow, overfit two batches, no NaN",
        description="Runs the babysitting checks on a fresh model; exits 1 when one fails.",
    )
    _add_set(p)
    p.add_argument("--steps", type=int, default=300, help="most steps for overfitting two batches")
    p.add_argument(
        "--lr", type=float, default=None, help="learning rate for the overfit check (default: config)"
    )
    p.add_argument("--tolerance", type=float, default=0.1, help="initial-loss tolerance, a fraction of ln(C)")
    p.set_defaults(func=_cmd_doctor)

    p = subparsers.add_parser(
        "search",
        help="hyper-parameter search (Optuna): grid, random or TPE over config keys, with pruning",
        description="Trials are ranked on validation metrics (the test split is never used). SPEC is "
        "log:LOW:HIGH[:POINTS], float:LOW:HIGH[:POINTS], int:LOW:HIGH[:STEP] or choice:A,B,...; KEY is a "
        f"config key or one of {', '.join(ALIASES)}.",
    )
    _add_set(p)
    p.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="KEY=SPEC",
        required=True,
        help="a searched key (repeatable)",
    )
    p.add_argument(
        "--trials", type=int, default=None, help="number of trials (default: the grid size, or 10)"
    )
    p.add_argument("--sampler", choices=("grid", "random", "tpe"), default="random")
    p.add_argument("--prune", action="store_true", help="median pruning on the metric at each validation")
    p.add_argument("--prune-startup", type=int, default=2, help="complete trials before pruning starts")
    p.add_argument(
        "--scale-lr", action="store_true", help="linear scaling rule: lr x k when the batch is x k"
    )
    p.add_argument("--metric", default=None, help="validation metric to optimise (default acc, or loss)")
    p.add_argument("--direction", choices=("min", "max"), default=None)
    p.add_argument("--baseline", action="store_true", help="trial 0 runs the preset as it is")
    p.add_argument("--seed", type=int, default=0, help="sampler seed")
    p.add_argument("--out", type=Path, default=None, help="folder for search.csv/.json")
    p.set_defaults(func=_cmd_search)

    p = subparsers.add_parser(
        "ensemble",
        help="snapshot ensemble: one run with N cosine cycles; each snapshot vs their averaged prediction",
        description="Trains with cosine annealing restarted N times, keeps the model at each cycle end and "
        "measures the snapshots and their average (softmax for classifiers) on the test split.",
    )
    _add_set(p)
    p.add_argument("--snapshots", type=int, default=3, help="number of cycles and snapshots (default 3)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/ensemble-RECIPE-TIME)")
    p.set_defaults(func=_cmd_ensemble)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the zoo command: zoo lr-find | doctor | search | ensemble")
