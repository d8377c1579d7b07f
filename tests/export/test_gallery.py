"""`zoo gallery` (export/gallery): the static site, and its in-browser inference against the torch-free runtime.

The cheap tests build pages without ONNX. The browser tests build the site for one classifier, one segmenter
and one generator, serve it on 127.0.0.1 and drive headless Chromium through the DevTools pipe
(`tests.browser`): each page loaded with ``?sample=all`` runs every sample input and writes its answers into
the DOM, which are compared with `export.runtime.OnnxModel` on the same inputs (top-1 equal and probabilities
within 1e-4, segmentation masks identical, the same detections with boxes within 1e-3 px, generated pixels
within 1e-4); the classifier again from file://;
a digit drawn on the pad; screenshots (``ZOO_GALLERY_SCREENSHOTS=DIR`` keeps them). Without Chromium or
``node_modules`` they skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock

import zoo
from export.gallery import GalleryError, build_gallery, demo_kind, find_node_modules
from export.runtime import OnnxModel
from tests.browser import Browser

DEMO_WEIGHTS = (
    "resnet8_small.mnist",
    "unet_resnet8_small.scenes",
    "fasterrcnn_resnet8_small.scenes",
    "dcgan_cond.mnist",
)
PROB_TOL = 1e-4


def _embedded(page: str, element_id: str) -> dict:
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', page, re.S)
    assert match, f"no #{element_id} in the page"
    return json.loads(match.group(1).replace("<\\/", "</"))


# --------------------------------------------------------------------------------------- without a browser
@pytest.fixture(scope="module")
def pages_only(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    return out, build_gallery(out, onnx=False)


def test_index_lists_every_published_weight_and_architecture(pages_only):
    out, result = pages_only
    index = _embedded((out / "index.html").read_text(), "zoo-index")
    listed = {w["name"] for w in index["weights"]}
    skipped = {s.split(":")[0] for s in result.skipped}
    assert listed | skipped == set(zoo.list_models(pretrained=True))
    # Skipped only where the registry names a weight whose folder is not in the tree.
    assert all("no hub folder" in s for s in result.skipped)
    assert {a["arch"] for a in index["architectures"]} == set(zoo.list_models())
    for row in index["weights"]:
        assert (out / row["page"]).is_file()
        assert row["task"] and row["family"]
    resnet = next(w for w in index["weights"] if w["name"] == "resnet8_small.mnist")
    assert resnet["metrics"]["acc"] == pytest.approx(0.992)
    assert resnet["headline"].startswith("top-1 ")


def test_weight_pages_have_card_pictures_recipe_and_snippets(pages_only):
    out, result = pages_only
    for page in result.pages:
        text = (out / page.href).read_text()
        for snippet in (
            f'zoo.create_model("{page.name}", pretrained=True)',
            "torch.hub.load(",
            "hf-hub:",
            f"zoo export {page.name}",
            "OnnxModel(",
        ):
            assert html.escape(snippet) in text, f"{page.name}: no {snippet!r}"
        assert "<table>" in text  # the card's metrics table, rendered from Markdown
        assert "library_name:" not in text  # the front matter is for the Hub, not the page
        for picture in page.pictures:
            assert (out / "w" / page.name / picture).is_file()
        if page.recipe_command:
            assert html.escape(page.recipe_command) in text
    card = (out / "w" / "resnet8_small.mnist" / "index.html").read_text()
    assert '<img alt="training curves" src="curves.png"' in card
    assert "zoo train resnet8_small.mnist" in card


def test_demo_kinds_come_from_task_and_adapter():
    assert demo_kind("resnet8_small.mnist")[0] == "classify"
    assert demo_kind("unet_resnet8_small.scenes")[0] == "segment"
    assert demo_kind("dcgan_cond.mnist")[0] == "latent"
    assert demo_kind("fasterrcnn_resnet8_small.scenes")[0] == "detect"
    # Its instances are grouped in numpy (the export adapter's decode): no page could agree with it.
    assert demo_kind("instance_unet_resnet8_small.scenes")[0] == ""
    kind, why = demo_kind("vae.mnist")
    assert kind == "" and "not written in JavaScript" in why


def test_missing_onnxruntime_web_says_run_npm_ci(tmp_path, monkeypatch):
    monkeypatch.setattr("export.gallery.find_node_modules", lambda folder=None: None)
    with pytest.raises(GalleryError, match="npm ci"):
        build_gallery(tmp_path, weights="resnet8_small.mnist")
    monkeypatch.undo()
    with pytest.raises(GalleryError, match="npm ci"):  # a folder named explicitly is the only one tried
        build_gallery(tmp_path, weights="resnet8_small.mnist", node_modules=tmp_path / "node_modules")


def test_cli_builds_the_pages(tmp_path, capsys):
    from zoo.cli import main

    assert main(["gallery", "--out", str(tmp_path), "--weights", "cnn.mnist", "--no-onnx"]) == 0
    assert "1 weight pages" in capsys.readouterr().out
    assert (tmp_path / "w" / "cnn.mnist" / "index.html").is_file()


# --------------------------------------------------------------------------------------- in the browser
def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _require_browser() -> str:
    chromium, node = _chromium(), find_node_modules()
    missing = []
    if chromium is None:
        missing.append("chromium is not installed (apt-get install -y chromium)")
    if node is None:
        missing.append("onnxruntime-web is not installed (run `npm ci` in the repo root)")
    if missing:
        reason = "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(f"the browser test must run in CI: {reason}")
        pytest.skip(reason)
    return chromium


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def served_site(tmp_path_factory):
    chromium = _require_browser()
    out = tmp_path_factory.mktemp("site")
    # One ONNX cache for every pytest-xdist worker (their base temps share a parent), built under a lock:
    # the exports are most of this fixture's time, and a second worker then only copies them.
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "gallery-onnx"
    shared.mkdir(exist_ok=True)
    with FileLock(str(shared / ".lock")):
        result = build_gallery(out, weights=DEMO_WEIGHTS, cache_dir=shared)
    assert result.demos == {
        "resnet8_small.mnist": "classify",
        "unet_resnet8_small.scenes": "segment",
        "fasterrcnn_resnet8_small.scenes": "detect",
        "dcgan_cond.mnist": "latent",
    }
    handler = functools.partial(_QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    profile = tmp_path_factory.mktemp("chromium-profile")
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with Browser(chromium, profile) as browser:
            yield out, base, browser
    finally:
        server.shutdown()
        server.server_close()


DONE = "['done', 'error'].includes(document.getElementById('zoo-result')?.dataset.state)"


def _browser_answers(site, name: str, query: str = "", *, base: str | None = None) -> list[dict]:
    _, served, browser = site
    page = browser.open(f"{base or served}w/{name}/index.html?sample=all{query}")
    browser.wait_for(page, DONE)
    node = "document.getElementById('zoo-result')"
    payload = json.loads(browser.evaluate(page, f"{node}.textContent"))
    assert browser.evaluate(page, f"{node}.dataset.state") == "done", f"{name}: {payload}"
    return payload["all"]


def _samples(folder: Path) -> list[Path]:
    return sorted(folder.glob("sample_*.png"), key=lambda p: int(p.stem.split("_")[1]))


def _classifier_differences(folder: Path, answers: list[dict]) -> float:
    """Top-1 equal to the runtime's for every sample (asserted); the largest probability difference."""
    samples = _samples(folder)
    assert len(answers) == len(samples) == 10
    expected = OnnxModel(folder / "model.onnx").predict(samples)
    diffs = []
    for want, got in zip(expected, answers):
        assert got["top1"] == want.index
        diffs.append(float(np.abs(np.asarray(got["probs"]) - want.probs).max()))
    return max(diffs)


def test_browser_classifier_matches_the_runtime(served_site):
    folder = served_site[0] / "w" / "resnet8_small.mnist"
    answers = _browser_answers(served_site, "resnet8_small.mnist")
    diff = _classifier_differences(folder, answers)
    print(f"classifier: max |browser - runtime| probability {diff:.2e} over 10 digits")
    assert diff <= PROB_TOL
    # The test digits are one per class, in order: the weight reads all of them right in the browser too.
    assert [a["top1"] for a in answers] == list(range(10))


def test_browser_demo_works_from_the_folder(served_site):
    """Opened as file:// (no server): the page loads onnxruntime-web, the model and its samples all the
    same, through script elements and data: URLs."""
    out = served_site[0]
    answers = _browser_answers(served_site, "resnet8_small.mnist", base=out.as_uri() + "/")
    assert _classifier_differences(out / "w" / "resnet8_small.mnist", answers) <= PROB_TOL


# Pointer strokes on the pad, in fractions of its size: a 7 (top bar, then the diagonal).
DRAW_SEVEN = """(() => {
  const pad = document.getElementById('zoo-pad');
  const box = pad.getBoundingClientRect();
  const at = (type, [x, y]) => pad.dispatchEvent(new PointerEvent(type, {
    clientX: box.left + x * box.width, clientY: box.top + y * box.height, pointerId: 1, bubbles: true}));
  const stroke = [[0.25, 0.2], [0.75, 0.2], [0.45, 0.85]];
  at('pointerdown', stroke[0]);
  stroke.slice(1).forEach((p) => at('pointermove', p));
  at('pointerup', stroke[2]);
  return true;
})()"""


def test_browser_drawing_pad_classifies_a_drawn_digit(served_site):
    _, base, browser = served_site
    page = browser.open(f"{base}w/resnet8_small.mnist/index.html")
    browser.wait_for(page, "document.documentElement.dataset.zooDemo === 'ready'")
    browser.evaluate(page, DRAW_SEVEN)
    browser.wait_for(page, DONE)
    answer = json.loads(browser.evaluate(page, "document.getElementById('zoo-result').textContent"))
    assert answer.get("label") == "7", answer


def test_browser_segmenter_masks_equal_the_runtime(served_site):
    out = served_site[0]
    folder = out / "w" / "unet_resnet8_small.scenes"
    answers = _browser_answers(served_site, "unet_resnet8_small.scenes")
    samples = _samples(folder)
    assert len(answers) == len(samples) > 0
    expected = OnnxModel(folder / "model.onnx").predict(samples)
    for want, got in zip(expected, answers):
        mask = np.asarray(got["mask"]).reshape(got["height"], got["width"])
        np.testing.assert_array_equal(mask, want.mask)
        assert len(np.unique(mask)) > 1  # digits found, not an all-background answer


def test_browser_detector_matches_the_runtime(served_site):
    folder = served_site[0] / "w" / "fasterrcnn_resnet8_small.scenes"
    answers = _browser_answers(served_site, "fasterrcnn_resnet8_small.scenes")
    samples = _samples(folder)
    assert len(answers) == len(samples) > 0
    box_diff = score_diff = 0.0
    for want, got in zip(OnnxModel(folder / "model.onnx").predict(samples), answers):
        assert got["labels"] == want.labels.tolist()  # the same detections, in the same order
        if len(want):
            box_diff = max(box_diff, float(np.abs(np.asarray(got["boxes"]) - want.boxes).max()))
            score_diff = max(score_diff, float(np.abs(np.asarray(got["scores"]) - want.scores).max()))
    print(f"detector: max |browser - runtime| box {box_diff:.2e} px, score {score_diff:.2e}")
    assert sum(len(a["labels"]) for a in answers) > 0
    assert box_diff <= 1e-3 and score_diff <= PROB_TOL


def test_browser_generator_matches_the_runtime(served_site):
    out = served_site[0]
    folder = out / "w" / "dcgan_cond.mnist"
    answers = _browser_answers(served_site, "dcgan_cond.mnist", "&label=7")
    model = OnnxModel(folder / "model.onnx")
    diffs = []
    for seed, got in enumerate(answers):
        want = model.sample(1, seed=seed, labels=[7])[0]
        image = np.asarray(got["image"], np.float32).reshape(got["shape"])
        diffs.append(float(np.abs(image - want).max()))
    print(f"generator: max |browser - runtime| pixel {max(diffs):.2e} over {len(answers)} seeds")
    assert len(answers) >= 2 and max(diffs) <= PROB_TOL


def test_screenshots_show_the_pages(served_site, tmp_path):
    from PIL import Image

    _, base, browser = served_site
    keep = os.environ.get("ZOO_GALLERY_SCREENSHOTS")
    folder = Path(keep) if keep else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    shots = {
        "index": ("index.html", "document.querySelectorAll('#weights tbody tr').length === 4"),
        "classifier": ("w/resnet8_small.mnist/index.html?sample=3", DONE),
        "segmenter": ("w/unet_resnet8_small.scenes/index.html?sample=2", DONE),
        "detector": ("w/fasterrcnn_resnet8_small.scenes/index.html?sample=5", DONE),
        "generator": ("w/dcgan_cond.mnist/index.html?sample=1&label=7", DONE),
    }
    for name, (path, ready) in shots.items():
        page = browser.open(base + path)
        browser.wait_for(page, ready)
        target = browser.screenshot(page, folder / f"gallery_{name}.png")
        image = np.asarray(Image.open(target).convert("L"), np.float32)
        assert image.shape == (900, 1200)
        assert image.std() > 10, f"{name}: a blank screenshot"
