"""Digit-scene generation speed: seconds for N scenes of each preset, in one process (numpy, no torch ops).

    python benchmarks/scene_generation.py [--n 1000] [--repeats 3] [--presets digit_scenes_64 ...]

Warm-up first (the MNIST 5k CSV and the texture images are read once per process), then the median of
`--repeats` timed renders of scenes 0..N-1 of the train split. Check the load average first: on a shared
2-core machine other jobs slow this several-fold.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zoo.data import get_dataset_info
from zoo.data.scenes import DigitScenes, SceneConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="scenes per timed render")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--presets", nargs="+", default=["digit_scenes_64", "digit_scenes_128"])
    args = parser.parse_args()
    for preset in args.presets:
        config = SceneConfig(**get_dataset_info(preset).defaults)
        data = DigitScenes("train", args.n, config)
        data.scene(0)  # warm-up: CSV, textures
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for i in range(args.n):
                data.scene(i)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        print(
            f"{preset}: {args.n} scenes in {median:.2f} s ({args.n / median:.0f} scenes/s, median of {args.repeats})"
        )


if __name__ == "__main__":
    main()
