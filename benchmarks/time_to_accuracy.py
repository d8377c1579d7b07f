"""Time to accuracy: the fastest classifier recipe on the MNIST 5k test split, against a 30 s budget.

Trains the recipe through the engine (exactly what ``zoo train`` runs) once per seed and prints its
training time (the engine's measured train time: steps, logging, checkpoints; not the final evaluation)
and test accuracy on the 1000-image test split, then the ratios to the budget. The same run then trains
the classic PyTorch MNIST example recipe on the same split as the ratio's anchor (``--no-baseline`` skips it) (conv 32 - conv 64 - max-pool -
dropout - fc 128 - dropout - fc 10, Adadelta lr 1.0, step decay 0.7 per epoch, batch 64, 14 epochs, fp32).

    .venv/bin/python benchmarks/time_to_accuracy.py [--recipe resnet8_small.mnist] [--seeds 0 1 2] [--no-baseline]

The goal holds for a recipe only if it holds for every seed: one lucky seed proves nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F
from torch import nn

from recipes.augment import normalise
from recipes.engine import Trainer, resolve_config
from zoo.data.images import mnist_5k


def run_recipe(recipe: str, seed: int, extra: list[str]) -> tuple[float, float]:
    preset, config = resolve_config(recipe, ["progress=false", "tensorboard=false", f"seed={seed}", *extra])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(preset.objective(config), run_dir=Path(tmp) / "run", recipe=recipe, publish=False)
        result = trainer.fit()
    return result.train_time_s, result.metrics["acc"]


class ClassicNet(nn.Module):
    """The network of the classic PyTorch MNIST example, written from its description."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.drop1, self.drop2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = F.relu(self.fc1(torch.flatten(self.drop1(x), 1)))
        return self.fc2(self.drop2(x))


def run_classic(seed: int, epochs: int = 14) -> tuple[float, float]:
    torch.manual_seed(seed)
    splits = mnist_5k()
    model = ClassicNet()
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    images, labels = splits.train.images, splits.train.labels
    elapsed = 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for idx in torch.randperm(len(images)).split(64):
            x = normalise(images[idx], splits.mean, splits.std)
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        elapsed += time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        pred = model(normalise(splits.test.images, splits.mean, splits.std)).argmax(1)
    return elapsed, float((pred == splits.test.labels).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="resnet8_small.mnist")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per seed")
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--budget", type=float, default=30.0, help="seconds of training")
    # The classic example is the ratio's anchor: trained in the same run, on the same machine and load.
    parser.add_argument(
        "--no-baseline", dest="baseline", action="store_false", help="skip the classic PyTorch example"
    )
    parser.add_argument("--baseline-epochs", type=int, default=14, help="the classic example's epochs (14)")
    parser.add_argument("--set", action="append", default=[], help="override the recipe (key=value)")
    args = parser.parse_args()
    print(f"{torch.get_num_threads()} threads, load average at start {os.getloadavg()[0]:.2f}")
    rows = []
    for seed in args.seeds:
        seconds, acc = run_recipe(args.recipe, seed, args.set)
        rows.append((seconds, acc))
        print(f"{args.recipe} seed {seed}: test top-1 {acc:.4f} after {seconds:.1f} s of training")
    for seconds, acc in rows:
        ok = acc >= args.target and seconds <= args.budget
        print(
            f"ratio time / budget: {seconds / args.budget:.2f}, accuracy - target: {acc - args.target:+.4f}"
            f" -> {'PASS' if ok else 'MISS'}"
        )
    passed = sum(acc >= args.target and seconds <= args.budget for seconds, acc in rows)
    print(
        f"{passed}/{len(rows)} seeds pass; top-1 min {min(r[1] for r in rows):.4f}, "
        f"mean {sum(r[1] for r in rows) / len(rows):.4f}; time max {max(r[0] for r in rows):.1f} s"
    )
    if args.baseline:
        seconds, acc = run_classic(args.seeds[0], args.baseline_epochs)
        print(
            f"classic PyTorch MNIST example ({args.baseline_epochs} epochs): test top-1 {acc:.4f} after "
            f"{seconds:.1f} s of training"
        )
        mean_time = sum(r[0] for r in rows) / len(rows)
        mean_acc = sum(r[1] for r in rows) / len(rows)
        print(
            f"{args.recipe} over {len(rows)} seed(s): mean top-1 {mean_acc:.4f} in a mean {mean_time:.1f} s; "
            f"classic example {acc:.4f} in {seconds:.1f} s (time ratio {mean_time / seconds:.2f})"
        )
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
