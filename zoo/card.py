"""Model cards rendered from a weight's config (architecture, metadata, measured metrics): never typed.

The layout follows Hugging Face model cards: YAML front matter (library, tags, license, datasets,
pipeline tag and a ``model-index`` with the measured metrics), then usage for zoo, torch.hub and ONNX,
the metrics table, how it was trained, and the recipe config.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["render_model_card"]

# Hugging Face pipeline tags for the zoo's tasks; a task without a close match keeps its own name.
PIPELINE_TAGS = {
    "image-classification": "image-classification",
    "autoencoding": "image-to-image",
    "image-to-image": "image-to-image",
    "image-segmentation": "image-segmentation",
    "object-detection": "object-detection",
    "unconditional-image-generation": "unconditional-image-generation",
    "feature-extraction": "image-feature-extraction",
    "zero-shot-image-classification": "zero-shot-image-classification",
}


def _front_matter(config: dict[str, Any]) -> str:
    import yaml

    w = config.get("weights") or {}
    name = f"{config['architecture']}.{w.get('tag', 'local')}"
    task = w.get("task") or "unknown"
    data: dict[str, Any] = {
        "library_name": "zoo",
        "license": w.get("license") or "apache-2.0",
        "tags": ["zoo", "pytorch", "safetensors", "onnx", config["architecture"], task],
        "pipeline_tag": PIPELINE_TAGS.get(task, task),
    }
    if w.get("dataset"):
        data["datasets"] = [w["dataset"]]
    metrics = w.get("metrics") or {}
    if metrics:
        data["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": PIPELINE_TAGS.get(task, task)},
                        "dataset": {
                            "name": w.get("dataset") or "unknown",
                            "type": w.get("dataset") or "unknown",
                            "split": w.get("split") or "unknown",
                        },
                        "metrics": [{"type": k, "value": v, "name": k} for k, v in metrics.items()],
                    }
                ],
            }
        ]
    return "---\n" + yaml.safe_dump(data, sort_keys=False) + "---\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_model_card(config: dict[str, Any]) -> str:
    """The README.md of a weight folder, from its config.json content."""
    arch = config["architecture"]
    w = config.get("weights") or {}
    tag = w.get("tag", "local")
    name = f"{arch}.{tag}"
    lines = [_front_matter(config), f"# {name}", ""]
    if w.get("description"):
        lines += [w["description"], ""]
    lines += [
        f"A `{arch}` model for **{w.get('task', 'unknown task')}**"
        + (f", trained on {w['dataset']}" if w.get("dataset") else "")
        + (f" ({w['num_params']:,} parameters)." if w.get("num_params") else "."),
        "",
        "## Usage",
        "",
        "```python",
        "import zoo",
        f'model = zoo.create_model("{name}", pretrained=True).eval()'
        if tag != "local"
        else 'model = zoo.create_model("path/to/this/folder").eval()',
    ]
    if w.get("hf_repo"):
        rev = f"@{w['revision']}" if w.get("revision") else ""
        lines.append(f'model = zoo.create_model("hf-hub:{w["hf_repo"]}{rev}")  # straight from the Hub')
    lines += [
        "```",
        "",
        "torch.hub, from a checkout of the zoo:",
        "",
        "```python",
        "import torch",
        f'model = torch.hub.load("path/to/zoo", "{arch}", source="local", weights="{tag}")',
        "```",
        "",
        "ONNX, deployed without torch:",
        "",
        "```bash",
        f"zoo export {name} --out {name}.onnx",
        f"zoo predict --onnx {name}.onnx image.png",
        "```",
        "",
    ]
    metrics = w.get("metrics") or {}
    if metrics:
        lines += [
            "## Metrics",
            "",
            f"Measured on {w.get('dataset', '?')}, split: {w.get('split', '?')}.",
            "",
            "| metric | value |",
            "|---|---|",
        ]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics.items()]
        lines.append("")
    if (config.get("files") or {}).get("curves"):
        lines += ["## Training curves", "", f"![training curves]({config['files']['curves']})", ""]
    details = []
    if w.get("recipe"):
        details.append(f"- recipe: `{w['recipe']}` — reproduce with `zoo train {w['recipe']}`")
    for key, value in (w.get("training") or {}).items():
        details.append(f"- {key.replace('_', ' ')}: {_fmt(value)}")
    if w.get("input_size"):
        details.append(f"- input size (C, H, W): {tuple(w['input_size'])}")
    if w.get("mean") and w.get("std"):
        details.append(f"- normalisation: mean {tuple(w['mean'])}, std {tuple(w['std'])}")
    if w.get("labels"):
        details.append(f"- labels ({len(w['labels'])}): {', '.join(map(str, w['labels']))}")
    if w.get("sha256"):
        details.append(f"- sha256 of model.safetensors: `{w['sha256']}`")
    if w.get("revision"):
        details.append(f"- pinned revision: `{w['revision']}`")
    if details:
        lines += ["## Training and provenance", "", *details, ""]
    if w.get("recipe_config"):
        lines += ["## Recipe config", "", "```json", json.dumps(w["recipe_config"], indent=2), "```", ""]
    lines += [
        "## Architecture arguments",
        "",
        "```json",
        json.dumps(config.get("model_args", {}), indent=2),
        "```",
        "",
    ]
    if w.get("papers"):
        lines += ["## Papers", "", *[f"- {p}" for p in w["papers"]], ""]
    return "\n".join(lines)
