"""Likelihood baselines on binarized MNIST 5k: what a VAE or PixelCNN must beat (issue 12).

Both are fit on the 4000 training digits and measured on the 1000 test digits, binarized as every
likelihood model of the zoo is (`zoo.metrics.likelihood.BINARIZATION`, or ``--stochastic``):

1. independent per-pixel Bernoullis (add-one smoothed counts);
2. a mixture of Bernoullis fit by EM, K chosen on a validation slice carved from train (the last
   ``--val-per-class`` train digits of each class; never the test digits), then refit on all of train.

Prints NLL in nats and bits/dim on test and on train (the gap), and every candidate K's validation NLL.

    .venv/bin/python benchmarks/likelihood_baselines.py [--candidates 1 5 10 20 50 100] [--stochastic]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from zoo.metrics.likelihood import BINARIZATION, likelihood_baselines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, nargs="+", default=[1, 5, 10, 20, 50, 100])
    parser.add_argument("--val-per-class", type=int, default=40)
    parser.add_argument("--stochastic", action="store_true", help="stochastic binarization (seed 0)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    mode = "stochastic" if args.stochastic else "threshold"
    start = time.perf_counter()
    out = likelihood_baselines(candidates=tuple(args.candidates), val_per_class=args.val_per_class, mode=mode)
    took = time.perf_counter() - start
    print(f"binarization: {BINARIZATION if mode == 'threshold' else 'stochastic, Bernoulli(x), seed 0'}")
    for k in args.candidates:
        print(f"  mixture K={k:<4d} validation NLL {out[f'mixture_val_nll_nats_k{k}']:8.2f} nats")
    print(f"{'baseline':<28}{'test nats':>10}{'test bits/dim':>15}{'train nats':>12}")
    print(
        f"{'independent Bernoulli':<28}{out['bernoulli_nll_nats']:10.2f}{out['bernoulli_bpd']:15.4f}"
        f"{out['bernoulli_train_nll_nats']:12.2f}"
    )
    name = f"Bernoulli mixture, K={int(out['mixture_k'])}"
    print(
        f"{name:<28}{out['mixture_nll_nats']:10.2f}{out['mixture_bpd']:15.4f}{out['mixture_train_nll_nats']:12.2f}"
    )
    print(f"({took:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
