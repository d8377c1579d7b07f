"""Median inference latency: onnxruntime over PyTorch eager, both on 2 threads, at batch 1 and 32.

    python benchmarks/onnx_latency.py                  # every published weight (else every classifier)
    python benchmarks/onnx_latency.py resnet18 cnn     # these models (arch or arch.tag)
    python benchmarks/onnx_latency.py --all            # every registered classifier, random init

Each model is exported with `export.to_onnx` (validated: checker + parity at batch 1 and 2) and timed at
its weight's (or its default) input size, eager and onnxruntime alternating in rounds so that load from
other processes falls on both alike. An onnxruntime session (default options, as `export.runtime` makes
it) exists only during its own runs: its idle worker threads slow PyTorch in the same process. Eager runs
with glibc keeping freed memory (`MALLOC_ENV`, see there). Random-init models get `calibrate_batchnorm`
first, so their activations and the parity numbers have a trained network's scale. The ratio column is
ORT / eager: the goal is at most 0.6 for every convolutional model, with parity kept (max |ORT - eager| on
the timed batch within the graph's tolerance). Prints measurements only; nothing here is written to docs.

Models whose task takes one image per call (detectors, instance segmenters: ``Task.batched_images`` is
False) are timed per image, end to end: eager ``model([image])`` against `export.runtime.OnnxModel.infer`
(the graph plus whatever the runtime decodes in numpy), over a few images, at batch 1 only; the goal is
at most 0.9 (issue 11) and "parity" is the task-level agreement of the detections
(`export.detection_runtime.detection_agreement`). Random-init detectors are first given spread scores
(`export.verify.spread_random_detector`), else every box ties and the timing measures tie-breaking.

The GF/s columns are each runtime's arithmetic throughput (forward FLOPs / median time). Where eager
PyTorch already runs near this CPU's fp32 peak (large convolutions at batch 32: ~280-300 GF/s on the
2-core machine), no fp32 runtime can take 0.6x its time; only lower precision can (`zoo export --quantize`).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo
from export.onnx import calibrate_batchnorm, graph_specs, task_meta, to_onnx
from export.runtime import OnnxModel
from export.throughput import MALLOC_ENV
from zoo.analysis import count_flops

THREADS = 2
GOAL = 0.6
PER_IMAGE_GOAL = 0.9  # detectors: onnxruntime at most 0.9x eager per image (issue 11)
PER_IMAGE_COUNT = 4  # distinct images per timed call, so no one image's detection count decides
# Pause between the eager and the onnxruntime runs, so that neither runtime's idle threads (PyTorch's
# OpenMP pool spins briefly after a parallel region) take cores from the other's first runs.
SETTLE_S = 0.2


def timed_runs(fn, min_runs: int, budget_s: float) -> list[float]:
    """Wall times of `fn` after one warm-up call: at least `min_runs` runs, more within the budget."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget_s and len(times) < 200):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def targets(names: list[str], all_classifiers: bool) -> list[tuple[str, bool]]:
    """(name, pretrained) pairs to benchmark."""
    if names:
        return [(n, "." in n) for n in names]
    weights = zoo.list_models(pretrained=True)
    if weights and not all_classifiers:
        return [(w, True) for w in weights]
    return [(m, False) for m in zoo.list_models(task="image-classification")]


def bench(
    name: str,
    pretrained: bool,
    batches: tuple[int, ...],
    budget_s: float,
    rounds: int,
    folder: Path,
    rewrite: bool = True,
) -> list[str]:
    torch.manual_seed(0)
    model = zoo.create_model(name, pretrained=pretrained).eval()
    if not task_meta(model).task_object.batched_images:  # detectors: one image per call
        return bench_per_image(model, name, pretrained, budget_s, rounds, folder)
    if not pretrained:
        calibrate_batchnorm(model)
    meta = getattr(model, "pretrained_weights", None)
    size = tuple(meta.input_size if meta and meta.input_size else model.input_size)
    result = to_onnx(model, folder / f"{name}.onnx", rewrite=rewrite)
    (spec,) = [s for s in graph_specs(model, size, True)[0] if s.name == "model"]
    is_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    rows = []
    for batch in batches:
        (x,) = spec.make_inputs(batch, spec.variants[0])
        feeds = {"image": x.numpy()}
        runs = 2 if batch > 1 else 5
        eager_times: list[float] = []
        ort_times: list[float] = []
        with torch.inference_mode():
            eager_run = functools.partial(model, x)
            # Alternate the two in rounds, so that load from other processes falls on both alike. The
            # session lives only for its own runs: onnxruntime's idle worker threads keep polling for work
            # while a session exists, which slowed eager PyTorch in the same process by up to 1.7x here.
            for _ in range(rounds):
                eager_times += timed_runs(eager_run, runs, budget_s / rounds)
                time.sleep(SETTLE_S)
                session = OnnxModel(result.path, threads=THREADS).session
                ort_times += timed_runs(
                    functools.partial(session.run, [spec.output_names[0]], feeds), runs, budget_s / rounds
                )
                (got,) = session.run([spec.output_names[0]], feeds)
                del session
                time.sleep(SETTLE_S)
            expected = model(x).numpy()
        eager, ort = statistics.median(eager_times), statistics.median(ort_times)
        diff = float(np.abs(got - expected).max())
        parity = "ok" if diff <= spec.atol else f"FAIL (> {spec.atol:.0e})"
        goal = ("ok" if ort / eager <= GOAL else "MISS") if is_conv else "-"
        gflop = count_flops(model, x) / 1e9  # as `zoo summary` counts them; "-" below where nothing counts
        rates = [f"{gflop / t:>8.0f}" if gflop else f"{'-':>8}" for t in (eager, ort)]
        rows.append(
            f"{name:<20} {'x'.join(map(str, size)):>9} {batch:>5} {eager * 1e3:>10.2f} {ort * 1e3:>10.2f} "
            f"{ort / eager:>6.2f}  {goal:<5} {rates[0]} {rates[1]} "
            f"{diff:>9.1e} {parity:<4} {result.exporters['model']}"
        )
    return rows


def _infer_all(session: OnnxModel, feeds: list[np.ndarray]) -> list[dict]:
    return [session.infer(f) for f in feeds]


def bench_per_image(
    model: nn.Module, name: str, pretrained: bool, budget_s: float, rounds: int, folder: Path
) -> list[str]:
    """One row: per-image latency of a one-image-per-call model (see the module docstring)."""
    from export.detection_runtime import detection_agreement, merge_agreements
    from export.verify import spread_random_detector
    from zoo.models.base import named_outputs

    if not pretrained:
        spread_random_detector(model)
    meta = getattr(model, "pretrained_weights", None)
    size = tuple(meta.input_size if meta and meta.input_size else model.input_size)
    result = to_onnx(model, folder / f"{name}.onnx")
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(*size, generator=generator) for _ in range(PER_IMAGE_COUNT)]
    feeds = [x[None].numpy() for x in images]
    eager_times: list[float] = []
    ort_times: list[float] = []
    with torch.inference_mode():
        for _ in range(rounds):  # alternating, each runtime alive only for its own runs (see `bench`)
            eager_times += timed_runs(lambda: [model([x]) for x in images], 3, budget_s / rounds)
            time.sleep(SETTLE_S)
            session = OnnxModel(result.path, threads=THREADS)
            ort_times += timed_runs(functools.partial(_infer_all, session, feeds), 3, budget_s / rounds)
            actual = [session.infer(f) for f in feeds]
            meta_onnx = session.meta
            del session
            time.sleep(SETTLE_S)
        expected = [named_outputs(model, model([x]), meta_onnx.task_object) for x in images]
    agreement = merge_agreements([detection_agreement(e, a, meta_onnx) for e, a in zip(expected, actual)])
    eager = statistics.median(eager_times) / len(images)
    ort = statistics.median(ort_times) / len(images)
    found = sum(len(a["scores"]) for a in actual) / len(images)
    goal = "ok" if ort / eager <= PER_IMAGE_GOAL else "MISS"
    return [
        f"{name:<20} {'x'.join(map(str, size)):>9} {'1/img':>5} {eager * 1e3:>10.2f} {ort * 1e3:>10.2f} "
        f"{ort / eager:>6.2f}  {goal:<5} {'-':>8} {'-':>8} {'-':>9} {'ok' if agreement.ok else 'FAIL':<4} "
        f"{result.exporters['model']} ({found:.0f} detections/image; goal {PER_IMAGE_GOAL})"
    ]


# glibc's malloc serves large blocks by mmap and hands them back on free, so eager PyTorch pays page faults
# for every activation tensor until its adaptive threshold catches up (it may never, depending on what ran
# before): in a one-off timing here the transposed-conv autoencoder took 8.6 or 4.7 ms at batch 32.
# onnxruntime has its own arena. A fair eager baseline keeps freed memory, as jemalloc/tcmalloc deployments
# do: these settings (`export.throughput.MALLOC_ENV`, which the results tables' measurements use too) are
# read by glibc at start-up, so `main` re-executes the script with them.


def main(argv: list[str] | None = None) -> int:
    if argv is None and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="models or weights (default: published weights)")
    parser.add_argument("--all", action="store_true", help="every registered classifier, random init")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--budget", type=float, default=4.0, help="seconds of timed runs per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of eager and onnxruntime runs")
    parser.add_argument(
        "--no-rewrite", action="store_true", help="export the layers as they are (see export/rewrites.py)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    todo = targets(args.names, args.all)
    if args.names:
        what = "named models (a name with a tag loads that weight; others are random-init)"
    elif todo and todo[0][1]:
        what = "published weights"
    else:
        what = "random-init classifiers" + ("" if args.all else " (no published weights)")
    print(f"onnxruntime vs PyTorch eager, {THREADS} threads each, medians; {what}")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}; load average {load}"
    )
    header = f"{'model':<20} {'input':>9} {'batch':>5} {'eager ms':>10} {'ort ms':>10} {'ratio':>6}  goal  "
    print(header + f"{'eager GF/s':>8} {'ort GF/s':>8} {'max|diff|':>9} par. exporter")
    misses = 0
    with tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        for name, pretrained in todo:
            for row in bench(
                name,
                pretrained,
                tuple(args.batches),
                args.budget,
                args.rounds,
                Path(tmp),
                not args.no_rewrite,
            ):
                print(row, flush=True)
                misses += " MISS " in row or "FAIL" in row
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"goal: ort/eager <= {GOAL} for convolutional models, parity kept; rows missing it: {misses}")
    print(f"load average at the end: {load} (other processes on these cores slow eager PyTorch most)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
