"""The gallery's HTML: the index and one page per weight, as plain strings (no template engine).

Every value that reaches a page goes through `html.escape` (or `json_script` for embedded data), so a
card or a label cannot break the markup. Links are relative, so the site works from any folder.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Snippet", "WeightPage", "card_html", "index_html", "json_script", "weight_html"]

GENERATOR = "zoo gallery"


@dataclass
class Snippet:
    """One usage example shown on a weight page."""

    title: str
    language: str  # "python" or "bash"
    code: str


@dataclass
class WeightPage:
    """What one weight's page shows, and its row in the index."""

    name: str
    arch: str
    family: str
    task: str
    dataset: str
    params: int | None
    metrics: dict[str, float]
    headline: str  # the task's headline metrics, formatted
    summary: str
    recipe_command: str
    snippets: list[Snippet]
    card: str  # the model card's Markdown (front matter removed)
    pictures: list[str]  # file names beside the page
    demo: str = ""  # "classify", "segment", "latent" or "" (no in-browser inference)
    demo_note: str = ""  # why a weight has no demo, shown on its page
    demo_data: dict[str, Any] = field(default_factory=dict)  # what demo.js reads (#zoo-page)

    @property
    def href(self) -> str:
        return f"w/{self.name}/index.html"

    def row(self) -> dict[str, Any]:
        """The weight's entry in the index's embedded JSON."""
        return {
            "name": self.name,
            "arch": self.arch,
            "family": self.family,
            "task": self.task,
            "dataset": self.dataset,
            "params": self.params,
            "metrics": self.metrics,
            "headline": self.headline,
            "demo": self.demo,
            "page": self.href,
        }


def json_script(element_id: str, data: Any) -> str:
    """Data embedded in a page as JSON; ``</`` is escaped so no value can close the script element."""
    text = json.dumps(data, sort_keys=True).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _page(title: str, body: str, root: str, scripts: Sequence[str] = ()) -> str:
    tags = "".join(f'<script src="{root}{s}"></script>' for s in scripts)
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        f'<link rel="stylesheet" href="{root}static/gallery.css"></head>\n'
        f'<body><header><a href="{root}index.html">zoo gallery</a></header>\n{body}\n{tags}</body></html>\n'
    )


# --------------------------------------------------------------------------------------- index
def index_html(weights: Sequence[WeightPage], architectures: Sequence[dict[str, Any]]) -> str:
    """The index: every weight (filter by task and family, sort by any column or metric) and every
    architecture; the rows are built by static/index.js from the embedded JSON."""
    data = {"weights": [w.row() for w in weights], "architectures": list(architectures)}
    headers = "".join(
        f'<th data-key="{key}">{title}</th>'
        for key, title in (
            ("name", "weight"),
            ("task", "task"),
            ("family", "family"),
            ("dataset", "dataset"),
            ("params", "parameters"),
            ("headline", "headline metrics"),
            ("metric", "metric"),
            ("demo", "in browser"),
        )
    )
    body = f"""
<h1>zoo gallery</h1>
<p>{len(weights)} weights of {len(architectures)} architectures. Every page is rendered from the weight's
model card; pages marked <em>in browser</em> run the exported ONNX file in the page (onnxruntime-web).</p>
<div class="controls">
  <label>task <select id="filter-task"><option value="">all</option></select></label>
  <label>family <select id="filter-family"><option value="">all</option></select></label>
  <label>search <input id="filter-text" type="search" placeholder="name, dataset, ..."></label>
  <label>metric column <select id="sort-metric"></select></label>
  <span id="count"></span>
</div>
<table id="weights"><thead><tr>{headers}</tr></thead><tbody></tbody></table>
<h2>Architectures</h2>
<table id="architectures"><thead><tr><th>architecture</th><th>task</th><th>family</th><th>weights</th>
<th>summary</th></tr></thead><tbody></tbody></table>
<noscript>{_static_list(weights)}</noscript>
{json_script("zoo-index", data)}
"""
    return _page("zoo gallery", body, "", ["static/index.js"])


def _static_list(weights: Sequence[WeightPage]) -> str:
    items = "".join(f'<li><a href="{w.href}">{html.escape(w.name)}</a></li>' for w in weights)
    return f"<ul>{items}</ul>"


# --------------------------------------------------------------------------------------- weight pages
def weight_html(page: WeightPage) -> str:
    """One weight's page: the in-browser demo (where it has one), usage snippets, recipe command, the
    rendered card, and the pictures the card does not already show."""
    esc = html.escape
    tags = "".join(f"<span>{esc(t)}</span>" for t in (page.task, page.family, page.dataset) if t)
    snippets = "".join(
        f'<h3>{esc(s.title)}</h3><pre><code class="language-{s.language}">{esc(s.code)}</code></pre>'
        for s in page.snippets
    )
    shown = set(re.findall(r'src="([^"]+)"', page.card))
    others = [p for p in page.pictures if p not in shown]
    pictures = ""
    if others:
        figures = "".join(
            f'<figure><img src="{esc(p)}" alt="{esc(p)}"><figcaption>{esc(p)}</figcaption></figure>'
            for p in others
        )
        pictures = f'<h2>Pictures</h2><div class="pictures">{figures}</div>'
    recipe = (
        f"<h2>Recipe</h2><pre><code>{esc(page.recipe_command)}</code></pre>" if page.recipe_command else ""
    )
    body = f"""
<h1>{esc(page.name)}</h1>
<p class="tags">{tags}</p>
<p>{_inline(page.summary)}</p>
{_demo_html(page)}
<h2>Use it</h2>
{snippets}
{recipe}
{pictures}
<h2>Model card</h2>
<div class="card">{page.card}</div>
"""
    scripts = ["vendor/ort.wasm.min.js", "static/demo.js"] if page.demo else []
    return _page(page.name, body, "../../", scripts)


def _inline(text: str) -> str:
    """Escaped text with the card's one inline markup, `code` spans (descriptions use them)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _demo_html(page: WeightPage) -> str:
    if not page.demo:
        note = f"<p><em>{html.escape(page.demo_note)}</em></p>" if page.demo_note else ""
        return note
    samples = "".join(
        f'<button data-sample="{i}" title="sample {i}"><img src="{html.escape(s["src"])}" alt="sample {i}">'
        "</button>"
        for i, s in enumerate(page.demo_data.get("samples", []))
    )
    status = '<p id="zoo-status">loading onnxruntime-web…</p><pre id="zoo-result" data-state="idle"></pre>'
    if page.demo == "classify":
        inputs = (
            '<div><p>Draw a digit (white on black):</p><canvas id="zoo-pad" width="280" height="280"></canvas>'
            '<br><button id="zoo-clear">clear</button></div>'
            f'<div><p>or pick a test image:</p><div class="samples">{samples}</div></div>'
        )
        outputs = (
            '<div><p>what the model sees</p><canvas id="zoo-output"></canvas><div id="zoo-topk"></div></div>'
        )
    elif page.demo in ("segment", "detect"):
        inputs = f'<div><p>Pick a test scene:</p><div class="samples">{samples}</div></div>'
        title = "classes by pixel" if page.demo == "segment" else "objects found"
        outputs = f'<div><p>{title}</p><canvas id="zoo-output"></canvas><div id="zoo-topk"></div></div>'
    else:  # latent
        labels = page.demo_data.get("labels") or []
        choose = ""
        if labels:
            options = "".join(
                f'<option value="{i}">{html.escape(str(v))}</option>' for i, v in enumerate(labels)
            )
            choose = f'<p><label>class <select id="zoo-label">{options}</select></label></p>'
        buttons = "".join(
            f'<button data-sample="{i}">seed {i}</button> '
            for i in range(len(page.demo_data.get("latents", [])))
        )
        inputs = f"<div>{choose}<p>Sample from a fixed latent (numpy's default_rng(seed)):</p>{buttons}</div>"
        outputs = '<div><p>generated</p><canvas id="zoo-output"></canvas></div>'
    return (
        "<h2>Try it in the browser</h2>"
        f'<div class="demo">{inputs}{outputs}</div>{status}'
        '<p><small>The exported ONNX file (<a href="model.onnx" download>model.onnx</a>) runs in this page '
        "with onnxruntime-web (WebAssembly, one thread), also when the page is opened from its folder; its "
        "pre- and post-processing are read from the file's metadata, as the torch-free runtime reads "
        "them.</small></p>" + json_script("zoo-page", {"demo": page.demo, **page.demo_data})
    )


# --------------------------------------------------------------------------------------- cards
def card_html(markdown_text: str) -> str:
    """A model card's Markdown (front matter stripped) as HTML: tables and fenced code, as HF renders."""
    import markdown

    return markdown.markdown(strip_front_matter(markdown_text), extensions=["tables", "fenced_code"])


def strip_front_matter(text: str) -> str:
    """The card without its YAML front matter (the Hub reads it; a reader of the page does not)."""
    if text.startswith("---\n"):
        end = text.find("\n---\n", 4)
        if end != -1:
            return text[end + 5 :]
    return text
