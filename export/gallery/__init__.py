"""``zoo gallery``: a static site of every architecture and weight, with in-browser inference.

    from export.gallery import build_gallery
    result = build_gallery("site", weights="resnet8_small.*")   # then open site/index.html

The site is plain files: ``index.html`` (every weight, filtered by task and family and sorted by any metric
in the page; every architecture), ``w/<arch.tag>/index.html`` per weight (its model card rendered to HTML,
its pictures, recipe command and usage snippets), ``static/`` (one stylesheet, two small scripts) and
``vendor/`` (onnxruntime-web's wasm build, copied from ``node_modules`` at build time). Nothing is fetched
from elsewhere when a page is viewed, and no server is needed: pages opened from the folder (file://)
work, in-browser inference included, because everything a page loads comes through script elements
(the wasm binary and each model as base64) and data: URLs, which file:// pages may load.

Weights whose task (or export adapter) names a ``browser_demo`` get their ONNX file (exported with
`export.onnx.to_onnx`, cached by the weight's sha256) and sample inputs from their dataset's test split
beside the page; ``static/demo.js`` runs them with onnxruntime-web, reading pre- and post-processing from
the file's metadata as `export.runtime` does. Everything is derived from the registry and the hub folders.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from export.gallery.pages import Snippet, WeightPage, card_html, index_html, weight_html
from zoo.errors import ZooError

__all__ = [
    "DEMO_SAMPLES",
    "VENDOR_FILES",
    "GalleryError",
    "GalleryResult",
    "build_gallery",
    "find_node_modules",
]

STATIC = Path(__file__).with_name("static")
REPO_ROOT = Path(__file__).resolve().parents[2]
ORT_DIST = Path("onnxruntime-web") / "dist"
# The plain wasm build (no WebGPU/WebGL, no JSEP), which runs single-threaded without cross-origin
# isolation: its loader, the Emscripten glue and the one .wasm it loads (about 14 MB in all). The site gets
# the loader as it is and the other two inside one classic script (`INLINE_WASM`), for file:// pages.
VENDOR_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
INLINE_WASM = "ort-wasm-inline.js"
DEMO_SAMPLES = 8  # test inputs shipped per image demo (classifiers: 10, one per digit when labels are 10)
LATENT_SEEDS = 4  # fixed latents per generator demo: numpy default_rng(seed), seeds 0..3


class GalleryError(ZooError):
    """A site that cannot be built as asked (onnxruntime-web not installed, no weight matched, ...)."""


@dataclass
class GalleryResult:
    """What `build_gallery` wrote."""

    out: Path
    pages: list[WeightPage] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "name: why", weights listed but without a page

    @property
    def demos(self) -> dict[str, str]:
        """Weight name -> its in-browser demo, for the pages that have one."""
        return {p.name: p.demo for p in self.pages if p.demo}

    def summary(self) -> str:
        demos = ", ".join(f"{k} ({v})" for k, v in self.demos.items()) or "none"
        lines = [f"{self.out / 'index.html'}: {len(self.pages)} weight pages; in-browser inference: {demos}"]
        lines += [f"  skipped {s}" for s in self.skipped]
        return "\n".join(lines)


def find_node_modules(folder: str | os.PathLike | None = None) -> Path | None:
    """The ``node_modules`` folder that holds onnxruntime-web's dist files: `folder` when given (and only
    it), else the repo root's (``npm ci`` there installs the version package-lock.json pins), else the
    current folder's; None when there is none."""
    candidates = [Path(folder)] if folder else [REPO_ROOT / "node_modules", Path.cwd() / "node_modules"]
    for candidate in candidates:
        if all((candidate / ORT_DIST / f).is_file() for f in VENDOR_FILES):
            return candidate
    return None


def build_gallery(
    out: str | os.PathLike,
    *,
    weights: str | Sequence[str] = "*",
    onnx: bool = True,
    cache_dir: str | os.PathLike | None = None,
    node_modules: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> GalleryResult:
    """Write the site into `out` (created; files of an earlier build are replaced).

    `weights`: shell patterns of the ``arch.tag`` names that get pages (default all). ``onnx=False`` skips
    the export and the in-browser demos (a fast build of the pages alone). `cache_dir` keeps exported
    files between builds (default ``$XDG_CACHE_HOME/zoo/gallery``), keyed by the weight's sha256 and the
    zoo's version. `node_modules` is where onnxruntime-web is installed (default: the repo root's).
    """
    from zoo.registry import entries, list_models

    say = log or (lambda message: None)
    out = Path(out)
    patterns = [weights] if isinstance(weights, str) else list(weights)
    names = list_models(patterns, pretrained=True)
    if not names:
        raise GalleryError(f"no published weight matches {patterns}; see `zoo list --pretrained`")
    vendor_from = None
    if onnx:
        vendor_from = find_node_modules(node_modules)
        if vendor_from is None:
            raise GalleryError(
                "onnxruntime-web is not installed: run `npm ci` in the repo root (package.json pins it), "
                "or build without in-browser inference: `zoo gallery --no-onnx`"
            )
    cache = Path(cache_dir) if cache_dir else _default_cache()
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(STATIC, out / "static", dirs_exist_ok=True)
    if vendor_from is not None:
        _vendor(vendor_from / ORT_DIST, out / "vendor")

    result = GalleryResult(out)
    for name in names:
        folder = _hub_folder(name)
        if folder is None:
            result.skipped.append(f"{name}: no hub folder with its config.json and card")
            continue
        say(f"{name}: page")
        page = _weight_page(name, folder)
        target = out / "w" / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for picture in page.pictures:
            shutil.copy2(folder / picture, target / picture)
        if onnx:
            _add_demo(page, target, cache, say)
        (target / "index.html").write_text(weight_html(page), encoding="utf-8")
        result.pages.append(page)
    architectures = [
        {
            "arch": e.arch,
            "family": e.family,
            "task": e.task,
            "summary": e.summary,
            "weights": [f"{e.arch}.{t}" for t in e.all_tags],
        }
        for e in entries()
    ]
    (out / "index.html").write_text(index_html(result.pages, architectures), encoding="utf-8")
    return result


def _vendor(dist: Path, target: Path) -> None:
    """onnxruntime-web into the site: its loader, and its glue and wasm binary as strings in one classic
    script (a file:// page may not fetch() the .wasm nor import the .mjs; a script element it may load)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(dist / VENDOR_FILES[0], target / VENDOR_FILES[0])
    glue = (dist / VENDOR_FILES[1]).read_text(encoding="utf-8")
    wasm = base64.b64encode((dist / VENDOR_FILES[2]).read_bytes()).decode("ascii")
    (target / INLINE_WASM).write_text(
        f"// onnxruntime-web {_ort_version(dist)}: {VENDOR_FILES[1]} and {VENDOR_FILES[2]} (base64), "
        "written by `zoo gallery`\n"
        f"window.ZOO_ORT_GLUE = {json.dumps(glue)};\nwindow.ZOO_ORT_WASM = {json.dumps(wasm)};\n",
        encoding="utf-8",
    )


def _ort_version(dist: Path) -> str:
    try:
        return json.loads((dist.parent / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "(unknown version)"


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "zoo" / "gallery"


def _hub_folder(name: str) -> Path | None:
    from zoo.registry import hub_dirs

    for hub in hub_dirs():
        if (hub / name / "config.json").is_file() and (hub / name / "README.md").is_file():
            return hub / name
    return None


# --------------------------------------------------------------------------------------- pages
def _weight_page(name: str, folder: Path) -> WeightPage:
    from zoo.registry import get_entry, get_weights
    from zoo.tasks import get_task

    weights = get_weights(name)
    entry = get_entry(weights.arch)
    task = get_task(weights.task or entry.task)
    metrics = {k: float(v) for k, v in (weights.metrics or {}).items() if isinstance(v, (int, float))}
    headline = ", ".join(
        f"{title} {fmt.format(metrics[key])}" for key, title, fmt in task.headline_metrics if key in metrics
    )
    return WeightPage(
        name=name,
        arch=weights.arch,
        family=entry.family,
        task=task.name,
        dataset=weights.dataset or "",
        params=getattr(weights, "num_params", None),
        metrics=metrics,
        headline=headline,
        summary=weights.description or entry.summary,
        recipe_command=f"zoo train {weights.recipe}" if weights.recipe else "",
        snippets=_snippets(name, weights, task),
        card=card_html((folder / "README.md").read_text(encoding="utf-8")),
        pictures=sorted(p.name for p in folder.glob("*.png")),
    )


def _snippets(name: str, weights: Any, task: Any) -> list[Snippet]:
    arch, tag = weights.arch, weights.tag
    snippets = [
        Snippet(
            "zoo",
            "python",
            f'import zoo\n\nmodel = zoo.create_model("{name}", pretrained=True).eval()',
        ),
        Snippet(
            "torch.hub, from a checkout of the zoo",
            "python",
            f'import torch\n\nmodel = torch.hub.load("path/to/zoo", "{arch}", source="local", weights="{tag}")',
        ),
    ]
    if weights.hf_repo:
        hub_name = f"hf-hub:{weights.hf_repo}" + (f"@{weights.revision}" if weights.revision else "")
        snippets.append(
            Snippet(
                "Hugging Face Hub", "python", f'import zoo\n\nmodel = zoo.create_model("{hub_name}").eval()'
            )
        )
    else:
        snippets.append(
            Snippet(
                "Hugging Face Hub (after publishing it: the zoo ships this weight in-tree)",
                "bash",
                f"zoo push {name} --repo-id ORG/{name}   # prints the commit sha to pin\n"
                f"python -c 'import zoo; zoo.create_model(\"hf-hub:ORG/{name}@SHA\")'",
            )
        )
    generate = bool(getattr(task, "measured_on_samples", False))
    use = (
        "images = model.sample(4, seed=0)  # (4, C, H, W) in [0, 1]"
        if generate
        else 'results = model.predict(["image.png"])  # preprocessing from the file\'s metadata'
    )
    snippets.append(
        Snippet(
            "ONNX, torch-free",
            "bash",
            f"zoo export {name} --out {name}.onnx\n"
            f'python -c \'from export.runtime import OnnxModel; model = OnnxModel("{name}.onnx"); '
            f"print(model.meta)'",
        )
    )
    snippets.append(
        Snippet(
            "ONNX runtime in Python (onnxruntime, numpy and pillow only)",
            "python",
            f'from export.runtime import OnnxModel\n\nmodel = OnnxModel("{name}.onnx")\n{use}',
        )
    )
    return snippets


# --------------------------------------------------------------------------------------- demos
def demo_kind(name: str) -> tuple[str, str]:
    """(the in-browser demo of a weight, or "", and why not when "").

    The family's export adapter names one for graphs the task alone does not describe (a GAN's latent ->
    image) or refuses one (a decode in numpy); otherwise the task's (`zoo.tasks.Task.browser_demo`). Image
    demos need the plain resize-and-normalise preprocessing that demo.js implements (not the centre crop of
    imported ImageNet weights).
    """
    from export.adapters import get_adapter
    from zoo.registry import get_entry, get_weights
    from zoo.tasks import get_task

    weights = get_weights(name)
    entry = get_entry(weights.arch)
    task = get_task(weights.task or entry.task)
    own = get_adapter(entry.family).browser_demo
    kind = task.browser_demo if own is None else own
    if not kind:
        return "", f"No in-browser inference: the {task.name} post-processing is not written in JavaScript."
    if kind != "latent" and (
        getattr(weights, "resize_size", None)
        or (getattr(weights, "interpolation", None) or "bilinear") != "bilinear"
    ):
        return "", "No in-browser inference: its preprocessing (resize and centre crop) is not in JavaScript."
    return kind, ""


def _add_demo(page: WeightPage, target: Path, cache: Path, say: Callable[[str], None]) -> None:
    kind, why = demo_kind(page.name)
    if not kind:
        page.demo_note = why
        return
    say(f"{page.name}: ONNX for the {kind} demo")
    from export.onnx import ExportError

    try:
        model_file = exported_onnx(page.name, cache)
    except ExportError as err:  # one weight that does not export leaves the rest of the site intact
        page.demo_note = f"No in-browser inference: its export failed ({str(err).splitlines()[0][:200]})."
        return
    if model_file is None:
        page.demo_note = "No in-browser inference: the weight exports more than one graph."
        return
    shutil.copy2(model_file, target / "model.onnx")  # the download link; the page loads model.js
    encoded = base64.b64encode(model_file.read_bytes()).decode("ascii")
    (target / "model.js").write_text(f"window.ZOO_MODEL = {json.dumps(encoded)};\n", encoding="ascii")
    data: dict[str, Any] = {"model_script": "model.js", "vendor": "../../vendor/", "name": page.name}
    if kind == "latent":
        import numpy as np

        from export.runtime import OnnxModel

        meta = OnnxModel(model_file).meta
        latent_dim = int(meta.extra["latent_dim"])
        # The runtime's own draw (export.adapters.gan: default_rng(seed).standard_normal((n, latent_dim))),
        # so seed k on the page is `OnnxModel.sample(1, seed=k)`.
        data["latents"] = [
            np.random.default_rng(seed).standard_normal((1, latent_dim))[0].astype(np.float32).tolist()
            for seed in range(LATENT_SEEDS)
        ]
        data["labels"] = list(meta.labels) if int(meta.extra.get("num_classes", 0)) else []
    else:
        data["samples"] = [
            {
                "file": f,
                "src": "data:image/png;base64," + base64.b64encode((target / f).read_bytes()).decode(),
            }
            for f in write_samples(page.name, target)
        ]
        from zoo.registry import get_weights
        from zoo.tasks.draw import palette

        data["palette"] = palette(max(len(get_weights(page.name).labels or ()), 1)).tolist()
    page.demo, page.demo_data = kind, data


def exported_onnx(name: str, cache: Path) -> Path | None:
    """The weight's ONNX file, exported once per sha256 and zoo version into `cache`; None when the
    weight exports several graphs (the demos run one)."""
    from zoo import __version__
    from zoo.registry import get_weights

    sha = (get_weights(name).sha256 or "unknown")[:16]
    path = cache / f"{name}-{sha}-{__version__}.onnx"
    if path.is_file():
        return path
    from export.onnx import to_onnx

    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f"{name}.partial-{os.getpid()}.onnx"  # builds running at once never share one
    graphs = to_onnx(name, partial).graphs
    if len(graphs) != 1:
        for graph in graphs:
            graph.path.unlink(missing_ok=True)
        return None
    os.replace(graphs[0].path, path)  # atomic: an interrupted build never leaves a half-written cache entry
    return path


def write_samples(name: str, target: Path, count: int = DEMO_SAMPLES) -> list[str]:
    """PNG test inputs for an image demo, evenly spaced over the weight's dataset test split (one per
    digit for a 10-class split sorted by label); returns their file names."""
    import numpy as np
    from PIL import Image

    from zoo.data import load_dataset
    from zoo.registry import get_weights

    weights = get_weights(name)
    if not weights.dataset:
        return []
    test = load_dataset(weights.dataset).test
    labels = len(weights.labels or ())
    count = labels if labels == 10 and weights.task_object.browser_demo == "classify" else count
    files = []
    for k, i in enumerate(np.linspace(0, len(test) - 1, count).round().astype(int)):
        image = np.asarray(test[int(i)][0])
        if np.issubdtype(image.dtype, np.floating):
            image = np.clip(np.round(image * 255), 0, 255)  # float tensors in [0, 1] (scenes)
        image = image.astype(np.uint8).transpose(1, 2, 0)
        file = f"sample_{k}.png"
        Image.fromarray(image[..., 0] if image.shape[2] == 1 else image).save(target / file)
        files.append(file)
    return files
