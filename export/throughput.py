"""Images/s of a published weight in eager PyTorch and in onnxruntime, recorded in its card.

``zoo results --measure-throughput [NAMES]`` (or `record_throughput`) exports each weight's main graph
(``model``) with `export.to_onnx`, times it in both runtimes on this machine and writes the result into
``weights.throughput`` of the weight's config.json (atomically; the card is re-rendered, the safetensors
file and its sha256 untouched). ``zoo results`` then only reads it: timing is slow and depends on the
machine, so it is recorded once with where and when it was measured, never recomputed or estimated.

What is timed, so that both runtimes run the same computation:

- the adapter's ``model`` graph (`export.adapters.GraphSpec`): eager runs ``spec.module`` (the module the
  exporter traced), onnxruntime the exported graph, on the same example inputs (random images at the
  weight's input size). For most weights that is the whole network. CLIP's ``model`` graph is its image
  encoder (the text encoder is a second graph), a generator's draws images from latent codes (images/s
  are samples/s), PixelCNN's scores images (one forward pass, not autoregressive sampling), and a
  detector's is its whole model on one image per call;
- `batch` images per timed call; a graph with a fixed batch of one (detectors) is called `batch` times;
- the fastest of the timed calls (at most `runs` per round, `rounds` alternations of eager and
  onnxruntime, within `budget_s` seconds per weight), each runtime alive only for its own runs (an idle
  onnxruntime session slows eager PyTorch in the same process). The fastest, not the median: on a
  machine shared with other jobs the slower calls measure the other jobs (identical networks timed a
  minute apart differed 2x in their medians at load 4-6 here), while the fastest is the machine's rate
  for this network when it gets its cores, as `timeit` advises; the load is recorded beside it anyway;
- `threads` threads in each runtime (1 by default: on a shared 2-core machine one thread is less disturbed
  by other jobs); the load average at the start and end is recorded beside the rates.

Eager PyTorch's time depends on glibc's malloc (with its defaults it hands large blocks back and pays page
faults on every activation: bimodal timings, see ``benchmarks/onnx_latency.py``). These settings are read
at process start, so they cannot be set here: run the measurement under `MALLOC_ENV` (the published
records were) and the record says which it was (``malloc``).

A weight whose export fails keeps its eager rate and records why onnxruntime is missing (``note``).
"""

from __future__ import annotations

import datetime
import functools
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["MALLOC_ENV", "measure_throughput", "record_throughput"]

MAIN_GRAPH = "model"
# glibc keeps freed memory (as jemalloc/tcmalloc deployments do): eager's fast mode. Set before start-up.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 31)}


def _timed_calls(fn: Callable[[], Any], runs: int, deadline: float) -> list[float]:
    """Wall times of `runs` calls of `fn` after one warm-up call, stopping early at `deadline` (at least
    one timed call)."""
    fn()
    times: list[float] = []
    while len(times) < runs and (not times or time.perf_counter() < deadline):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _run_session(session: Any, feeds: dict[str, Any], calls: int) -> None:
    for _ in range(calls):
        session.run(None, feeds)


def measure_throughput(
    folder: str | os.PathLike,
    *,
    batch: int = 8,
    threads: int = 1,
    runs: int = 10,
    rounds: int = 2,
    budget_s: float = 20.0,
) -> dict[str, Any]:
    """Time the weight in `folder` (see the module docstring); returns the ``weights.throughput`` record:
    ``images_per_s_eager``, ``images_per_s_onnxruntime`` (None with a ``note`` when it cannot run), and
    ``graph``, ``batch``, ``threads``, ``runs``, ``machine`` (CPU, cores, load at start and end), ``date``,
    ``torch`` and ``onnxruntime`` versions."""
    import onnxruntime
    import torch

    from export.onnx import graph_specs, to_onnx
    from export.runtime import OnnxModel
    from recipes.engine.logging import machine_info
    from zoo.errors import ConfigError
    from zoo.factory import create_model

    if batch < 1 or threads < 1:
        raise ConfigError(f"batch and threads must be at least 1, got batch={batch}, threads={threads}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        machine = {k: v for k, v in machine_info().items() if k != "threads"}  # threads: recorded beside
        deadline = time.perf_counter() + budget_s
        model = create_model(str(folder)).eval()
        specs, _ = graph_specs(model, None, True)
        spec = next((s for s in specs if s.name == MAIN_GRAPH), specs[0])
        first_axes = spec.dynamic_axes.get(spec.input_names[0]) or {}
        per_call = batch if 0 in first_axes else 1  # a fixed batch of one: `batch` calls per timed unit
        calls = batch // per_call
        torch.manual_seed(0)
        inputs = spec.make_inputs(per_call, spec.variants[0])
        feeds = {name: t.numpy() for name, t in zip(spec.input_names, inputs)}

        def eager() -> None:
            with torch.inference_mode():
                for _ in range(calls):
                    spec.module(*inputs)

        eager_times: list[float] = []
        ort_times: list[float] = []
        note = ""
        with tempfile.TemporaryDirectory(prefix="zoo-throughput-") as tmp:
            path = None
            try:
                export_start = time.perf_counter()
                result = to_onnx(model, Path(tmp) / "weight.onnx", validate=False)
                path = next(g.path for g in result.graphs if g.name == spec.name)
                deadline += time.perf_counter() - export_start  # the export is not timed against the budget
            except Exception as err:  # recorded, not raised: the eager rate still stands
                note = f"export failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
            for _ in range(rounds):
                eager_times += _timed_calls(eager, runs, deadline)
                if path is not None:
                    session = OnnxModel(path, threads=threads).session
                    run = functools.partial(_run_session, session, feeds, calls)
                    ort_times += _timed_calls(run, runs, deadline)
                    del session, run  # its idle threads would slow the next eager round
                if time.perf_counter() > deadline:
                    break
        machine["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        record: dict[str, Any] = {
            "images_per_s_eager": round(batch / min(eager_times), 1),
            "images_per_s_onnxruntime": round(batch / min(ort_times), 1) if ort_times else None,
            "statistic": "fastest call",
            "malloc": " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items())
            if all(os.environ.get(k) == v for k, v in MALLOC_ENV.items())
            else "glibc defaults",
            "graph": spec.name,
            "batch": batch,
            "threads": threads,
            "runs": len(eager_times),
            "machine": machine,
            "date": datetime.date.today().isoformat(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
        }
        if note:
            record["note"] = note
        return record
    finally:
        torch.set_num_threads(previous_threads)


def record_throughput(
    names: Iterable[str], hub: str | os.PathLike | None = None, **kwargs: Any
) -> dict[str, dict[str, Any]]:
    """`measure_throughput` each published weight `names` (``arch.tag``) in `hub` (default: the in-tree
    hub) and write the record into its card. Every name is checked before anything is timed; returns
    name -> record."""
    from zoo.registry import IN_TREE_HUB
    from zoo.results import record_field, weight_folder

    hub = Path(hub) if hub is not None else IN_TREE_HUB
    folders = {name: weight_folder(name, hub) for name in names}
    records = {}
    for name, folder in folders.items():
        records[name] = measure_throughput(folder, **kwargs)
        record_field(folder, "throughput", records[name])
    return records
