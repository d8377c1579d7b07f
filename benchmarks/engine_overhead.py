"""Engine overhead: training images/s of the zoo's engine vs a minimal hand-written PyTorch loop.

Both train the same model on the same in-memory MNIST 5k batches with the same settings (SGD Nesterov,
one-cycle, label smoothing, batched random affine augmentation, channels-last, bf16 autocast where the
CPU has it). The engine keeps everything it normally does: CSV and TensorBoard logs, a checkpoint at each
epoch end, its step context. Runs alternate (loop, engine, loop, engine, ...) so that a change in machine
load hits both; the medians are compared. Prints the ratio engine / hand-written (goal: >= 0.97).

    .venv/bin/python benchmarks/engine_overhead.py [--recipe cnn.mnist] [--epochs 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F

from recipes.augment import BatchAugment, normalise
from recipes.engine import Trainer, build_optimizer, build_scheduler, cpu_has_bf16, resolve_config
from zoo.data.images import mnist_5k


def hand_written_loop(config, epochs: int) -> float:
    """The loop a person would write for the same job; returns training images per second."""
    import zoo

    torch.manual_seed(config.seed)
    splits = mnist_5k(config.val_per_class)
    images, labels = splits.train.images, splits.train.labels
    model = zoo.create_model(config.model, num_classes=10, in_chans=1, img_size=28, **config.model_args)
    bf16 = config.precision == "bf16" or (config.precision == "auto" and cpu_has_bf16())
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = build_optimizer(model.parameters(), config.optim)  # the same optimizer and param groups
    steps_per_epoch = len(images) // config.batch_size
    sched = build_scheduler(opt, config.schedule, steps_per_epoch * config.epochs, steps_per_epoch)
    augment = BatchAugment(config.degrees, config.translate, tuple(config.scale), config.shear)
    gen = torch.Generator().manual_seed(config.seed)
    model.train()
    seen, start = 0, time.perf_counter()
    for epoch in range(epochs):
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(epoch))
        for i in range(steps_per_epoch):
            idx = perm[i * config.batch_size : (i + 1) * config.batch_size]
            x, y = images[idx], labels[idx]
            if config.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            x = normalise(augment(x.float().div_(255), gen), splits.mean, splits.std)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(x)
            loss = F.cross_entropy(
                logits.float() * config.logit_scale, y, label_smoothing=config.label_smoothing
            )
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            seen += len(y)
    return seen / (time.perf_counter() - start)


def _objective(config):
    from recipes.classification import ClassificationObjective

    return ClassificationObjective(config)


def engine_loop(config, epochs: int, run_dir: Path) -> float:
    """`zoo train`'s loop on the same job; returns training images per second (its measured train time)."""
    trainer = Trainer(_objective(config), run_dir=run_dir, recipe="benchmark", publish=False)
    trainer.config.max_steps = 0
    result = trainer.fit()
    return result.steps * config.batch_size / result.train_time_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="resnet8_small.mnist")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # The schedule spans the preset's epochs; both loops stop after --epochs of them.
    overrides = ["progress=false", f"epochs={args.epochs}", "val_per_class=0"]
    _, config = resolve_config(args.recipe, overrides)
    print(
        f"recipe {args.recipe}, {args.epochs} epochs x {args.repeats} repeats, {torch.get_num_threads()} threads"
    )
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    hand, engine = [], []
    hand_written_loop(config, 1)  # warm-up: oneDNN kernels, allocator
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            hand.append(hand_written_loop(config, args.epochs))
            engine.append(engine_loop(config, args.epochs, Path(tmp) / f"run{r}"))
            print(f"  repeat {r + 1}: hand-written {hand[-1]:8.1f} img/s   engine {engine[-1]:8.1f} img/s")
    h, e = statistics.median(hand), statistics.median(engine)
    print(f"median: hand-written {h:.1f} img/s, engine {e:.1f} img/s")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print(f"ratio engine / hand-written: {e / h:.3f} (goal >= 0.97)")


if __name__ == "__main__":
    main()
