"""A task the zoo does not have, defined entirely here: how bright an image is.

Together with `tests.tasks.toy_model` it is what a new task costs: this module and a model file. The
test (`test_toy_task.py`) shows that registry, weights, card, both predict paths and the ONNX export work
with it, with no edit anywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from zoo.tasks import Agreement, Task, WeightField, register_task


@register_task
class Brightness(Task):
    name = "brightness-estimation"
    pipeline_tag = "image-brightness"
    summary = "how bright an image is, as a fraction of full white"
    weight_fields = (WeightField("unit", "fraction", "what the number means: fraction or percent", (str,)),)
    output_names = ("brightness",)
    outputs_doc = {"brightness": "(N, 1) mean intensity"}

    def postprocess(self, outputs: Mapping[str, np.ndarray], meta: Any, **options: Any) -> list[Any]:
        factor = 100.0 if meta.unit == "percent" else 1.0
        return [float(v) * factor for v in np.asarray(outputs["brightness"]).reshape(-1)]

    def describe(self, result: Any, source: str, **options: Any) -> str:
        return f"{source}: brightness {result:.3f}"

    def agreement(self, expected, actual, meta, *, atol=1e-4, rtol=1e-4) -> Agreement:
        a, b = self.postprocess(expected, meta), self.postprocess(actual, meta)
        worst = max(abs(x - y) for x, y in zip(a, b))
        return Agreement(worst < 1e-3, {"max_brightness_diff": worst})

    def card_sections(self, config: Mapping[str, Any]) -> list[str]:
        return [*super().card_sections(config), "## Reading it", "", "0 is black, 1 is white.", ""]
