"""Model cards rendered from a weight's config (architecture, metadata, measured metrics): never typed.

The layout follows Hugging Face model cards: YAML front matter (library, tags, license, datasets,
pipeline tag and a ``model-index`` with the measured metrics), then usage for zoo, torch.hub and ONNX,
the metrics table, the training curves, how it was trained, and the recipe config. Everything shown is
read from ``config.json``, so a card can always be rendered again and never disagrees with its weight.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["render_model_card", "reproduce_command", "throughput_text"]

LOCAL_TAG = "local"  # the tag of a weight saved outside the registry (save_pretrained without metadata)


def _front_matter(config: dict[str, Any], name: str) -> str:
    import yaml

    w = config.get("weights") or {}
    task = _task(config).name
    pipeline_tag = _task(config).pipeline_tag
    tags = ["zoo", "pytorch", "safetensors", "onnx", config["architecture"], task]
    data: dict[str, Any] = {
        "library_name": "zoo",
        "license": w.get("license") or "apache-2.0",
        "tags": list(dict.fromkeys(tags)),
        "pipeline_tag": pipeline_tag,
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
                        "task": {"type": pipeline_tag, "name": task},
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
    return "---\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True) + "---\n"


def _task(config: dict[str, Any]) -> Any:
    """The card's task: the weight's, else the architecture's registered one."""
    from zoo.tasks import get_task

    task = (config.get("weights") or {}).get("task")
    if not task:
        from zoo.registry import get_entry

        task = get_entry(config["architecture"]).task
    return get_task(task)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _cell(value: Any) -> str:
    return _fmt(value).replace("|", "\\|")


def _hf_name(w: dict[str, Any]) -> str | None:
    if not w.get("hf_repo"):
        return None
    return f"hf-hub:{w['hf_repo']}" + (f"@{w['revision']}" if w.get("revision") else "")


def _kwargs(args: dict[str, Any]) -> str:
    return "".join(f", {k}={v!r}" for k, v in args.items())


def _usage(config: dict[str, Any], name: str) -> list[str]:
    arch = config["architecture"]
    w = config.get("weights") or {}
    tag = w.get("tag", LOCAL_TAG)
    hf_name = _hf_name(w)
    # An imported weight (`zoo import`) is a folder, not a registered name, until someone registers it.
    registered = tag != LOCAL_TAG and not w.get("source")
    lines = ["## Usage", "", "```python", "import zoo", ""]
    if registered:
        lines.append(f'model = zoo.create_model("{name}", pretrained=True).eval()')
    if hf_name:
        lines.append(f'model = zoo.create_model("{hf_name}").eval()  # straight from the Hugging Face Hub')
    lines.append('model = zoo.create_model("path/to/this/folder").eval()  # a downloaded copy of this repo')
    if w.get("source"):
        lines.append(
            f'# as an encoder: zoo.create_model(..., encoder="{arch}", encoder_weights="path/to/this/folder")'
        )
    lines += ["```", ""]
    if w.get("hf_repo") and not w.get("revision"):
        lines += [
            f"For reproducible results pin the commit: `hf-hub:{w['hf_repo']}@<commit sha>`. Loading is strict "
            "and the sha256 of `model.safetensors` is checked every time.",
            "",
        ]
    lines += ["torch.hub, from a checkout of the zoo:", "", "```python", "import torch", ""]
    if registered:
        lines.append(f'model = torch.hub.load("path/to/zoo", "{arch}", source="local", weights="{tag}")')
    else:
        lines += [
            "from safetensors.torch import load_file",
            "",
            f'model = torch.hub.load("path/to/zoo", "{arch}", source="local"{_kwargs(config.get("model_args") or {})})',
            'model.load_state_dict(load_file("path/to/this/folder/model.safetensors"))',
        ]
    lines += ["```", ""]
    source = name if registered else hf_name or "path/to/this/folder"
    onnx_file = f"{name if tag != LOCAL_TAG else arch}.onnx"
    own = _task(config).card_onnx_section(config, source, onnx_file)
    if own is not None:  # a task whose deployment is not "an image in, an answer out" (generators)
        return lines + own
    lines += [
        "ONNX, to deploy without torch:",
        "",
        "```bash",
        f"zoo export {source} --out {onnx_file}",
        f"zoo predict --onnx {onnx_file} image.png",
        "```",
        "",
    ]
    input_size = w.get("input_size")
    if input_size:
        shape = ", ".join(str(s) for s in (1, *input_size))
        lines += ["```python", "import numpy as np", "import onnxruntime as ort", ""]
        if w.get("mean") and w.get("std"):
            lines += [
                f"image = np.zeros(({shape}), np.float32)  # pixel values 0-255, shape (N, C, H, W)",
                f"mean = np.array({list(w['mean'])}, np.float32).reshape(1, -1, 1, 1)",
                f"std = np.array({list(w['std'])}, np.float32).reshape(1, -1, 1, 1)",
                "x = (image / 255 - mean) / std",
            ]
        else:
            lines.append(f"x = np.zeros(({shape}), np.float32)  # the model's input, shape (N, C, H, W)")
        lines += _task(config).card_usage(w, onnx_file)
        lines += ["```", ""]
    return lines


def throughput_text(t: dict[str, Any]) -> str:
    """A recorded throughput (`Weights.throughput`) in a sentence: both rates, what was timed, and where."""
    ort = t.get("images_per_s_onnxruntime")
    rates = f"{t['images_per_s_eager']:,.0f} images/s eager PyTorch, " + (
        f"{ort:,.0f} images/s onnxruntime" if ort else "onnxruntime not measured"
    )
    machine = t.get("machine") or {}
    threads = t.get("threads", "?")
    where = [
        f"graph `{t.get('graph', 'model')}`",
        f"batch {t.get('batch', '?')}",
        *([f"{t['statistic']} of {t['runs']}"] if t.get("statistic") and t.get("runs") else []),
        f"{threads} thread{'' if threads == 1 else 's'} of a {machine.get('cores', '?')}-core {machine.get('cpu', '?')}",
    ]
    if machine.get("load_avg_1m_at_start") is not None:
        where.append(f"load {machine['load_avg_1m_at_start']} to {machine.get('load_avg_1m_at_end', '?')}")
    where.append(str(t.get("date", "?")))
    return f"{rates} ({', '.join(where)})" + (f"; {t['note']}" if t.get("note") else "")


def reproduce_command(w: dict[str, Any]) -> str:
    """The command that trains a weight (its ``weights`` config fields) as it was trained: ``zoo train``
    under ``torchrun`` when the record says it ran as several DDP processes."""
    command = f"zoo train {w['recipe']}"
    processes = int((w.get("training") or {}).get("processes") or 1)
    if processes > 1:
        command = f"torchrun --standalone --nproc_per_node={processes} -m {command}"
    return command


def _provenance(w: dict[str, Any]) -> list[str]:
    details = []
    if w.get("recipe"):
        details.append(f"- recipe: `{w['recipe']}` — reproduce with `{reproduce_command(w)}`")
    for key, value in (w.get("training") or {}).items():
        details.append(f"- {key.replace('_', ' ')}: {_fmt(value)}")
    if w.get("dataset"):
        details.append(
            f"- dataset: {w['dataset']}" + (f", evaluation split: {w['split']}" if w.get("split") else "")
        )
    if w.get("input_size"):
        details.append(f"- input size (C, H, W): {tuple(w['input_size'])}")
    if w.get("resize_size") and w.get("input_size"):
        details.append(
            f"- preprocessing: shorter side resized to {w['resize_size']} ({w.get('interpolation') or 'bilinear'}), "
            f"centre crop {w['input_size'][-2]}x{w['input_size'][-1]}"
        )
    if w.get("mean") and w.get("std"):
        details.append(
            f"- normalisation: (x / 255 - mean) / std, mean {tuple(w['mean'])}, std {tuple(w['std'])}"
        )
    if w.get("labels"):
        shown = list(map(str, w["labels"][:50])) + (
            [f"... ({len(w['labels']) - 50} more)"] if len(w["labels"]) > 50 else []
        )
        details.append(f"- labels ({len(w['labels'])}): {', '.join(shown)}")
    source = w.get("source") or {}
    if source:
        what = source.get("repo") or source.get("file") or "?"
        details.append(f"- imported from {source.get('library', '?')}: `{what}`")
        for key in ("weights", "sha256", "license", "url"):
            if source.get(key):
                details.append(f"- source {key}: `{source[key]}`")
        for key, value in (source.get("reported_metrics") or {}).items():
            details.append(f"- reported by the source (not measured here): {key} = {_fmt(value)}")
    encoder = w.get("encoder") or {}
    if encoder:
        details.append(
            f"- {encoder.get('part') or 'encoder'} initialised from `{encoder.get('weights')}`"
            + (f" (sha256 `{encoder['sha256']}`)" if encoder.get("sha256") else "")
        )
    if w.get("num_params"):
        details.append(f"- parameters: {w['num_params']:,}")
    if w.get("flops"):
        details.append(f"- forward FLOPs at the input size (2 per multiply-add): {w['flops']:,}")
    if w.get("throughput"):
        details.append(f"- throughput: {throughput_text(w['throughput'])}")
    if w.get("sha256"):
        details.append(f"- sha256 of model.safetensors: `{w['sha256']}`")
    if w.get("hf_repo"):
        details.append(f"- Hugging Face repo: `{w['hf_repo']}`")
    if w.get("revision"):
        details.append(f"- pinned revision: `{w['revision']}`")
    return ["## Training and provenance", "", *details, ""] if details else []


def _comparison(
    title: str,
    intro: str,
    column: str,
    name: str,
    metrics: dict[str, Any],
    others: dict[str, dict[str, Any]] | None,
) -> list[str]:
    """A card table of this weight's metrics (first row, bold) beside other runs' on the same split."""
    if not others:
        return []
    # The columns the comparison has (a metric no other row reports would only be blanks), in the weight's
    # metric order.
    theirs = {k for values in others.values() for k in values}
    keys = [k for k in metrics if k in theirs] + sorted(theirs - set(metrics))
    return [
        f"## {title}",
        "",
        intro,
        "",
        f"| {column} | " + " | ".join(_cell(k) for k in keys) + " |",
        "|---" * (len(keys) + 1) + "|",
        f"| **{_cell(name)}** | " + " | ".join(_cell(metrics.get(k, "")) for k in keys) + " |",
        *[
            f"| {_cell(other)} | " + " | ".join(_cell(values.get(k, "")) for k in keys) + " |"
            for other, values in others.items()
        ],
        "",
    ]


def _table(table: dict[str, Any]) -> list[str]:
    """A card section a recipe recorded as ``{"title", "intro", "rows": [{column: value}]}`` (e.g. the
    pseudo-labelling rounds)."""
    rows = table.get("rows") or []
    if not rows:
        return []
    keys = list(rows[0])
    return [
        f"## {table['title']}",
        "",
        *([table["intro"], ""] if table.get("intro") else []),
        "| " + " | ".join(_cell(k) for k in keys) + " |",
        "|---" * len(keys) + "|",
        *["| " + " | ".join(_cell(r.get(k, "")) for k in keys) + " |" for r in rows],
        "",
    ]


def render_model_card(config: dict[str, Any]) -> str:
    """The README.md of a weight folder, from its config.json content."""
    arch = config["architecture"]
    w = config.get("weights") or {}
    name = f"{arch}.{w.get('tag', LOCAL_TAG)}"
    lines = [_front_matter(config, name), f"# {name}", ""]
    if w.get("description"):
        lines += [w["description"], ""]
    lines += [
        f"A `{arch}` model for **{_task(config).name}** ({_task(config).summary})"
        + (f", trained on {w['dataset']}" if w.get("dataset") else "")
        + (f" ({w['num_params']:,} parameters)." if w.get("num_params") else "."),
        "",
        *_usage(config, name),
    ]
    metrics = w.get("metrics") or {}
    if metrics:
        lines += [
            "## Metrics",
            "",
            f"Measured on {w.get('dataset') or '?'}, split: {w.get('split') or '?'}.",
            "",
            "| metric | value |",
            "|---|---|",
            *[f"| {_cell(k)} | {_cell(v)} |" for k, v in metrics.items()],
            "",
        ]
    lines += _comparison(
        "Baselines",
        "Measured on the same split, beside this weight:",
        "method",
        name,
        metrics,
        w.get("baselines"),
    )
    lines += _comparison(
        "Ablations",
        "The same recipe and budget with one change each, measured on the same split:",
        "change",
        name,
        metrics,
        w.get("ablations"),
    )
    for table in w.get("tables") or ():
        lines += _table(table)
    lines += _task(config).card_sections(config)
    curves = (config.get("files") or {}).get("curves")
    if curves:
        lines += ["## Training curves", "", f"![training curves]({curves})", ""]
    lines += _provenance(w)
    if w.get("recipe_config"):
        lines += ["## Recipe config", "", "```json", json.dumps(w["recipe_config"], indent=2), "```", ""]
    lines += [
        "## Architecture arguments",
        "",
        "```json",
        json.dumps(config.get("model_args") or {}, indent=2),
        "```",
        "",
    ]
    if w.get("papers"):
        lines += ["## Papers", "", *[f"- {p}" for p in w["papers"]], ""]
    return "\n".join(lines)
