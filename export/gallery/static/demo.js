// In-browser inference on a weight page of `zoo gallery` (export/gallery): the exported ONNX file runs in
// onnxruntime-web's wasm backend, vendored into the site, on one thread (no SharedArrayBuffer, so no
// cross-origin isolation headers: any static file server works).
//
// Everything is loaded with classic <script> elements (the wasm binary, its Emscripten glue and the model
// as base64 strings) and sample inputs are data: URLs, because a page opened from file:// may neither
// fetch() nor import modules from its folder: so the demo works from the folder as well as served.
//
// Pre- and post-processing are read from the file's own metadata (the `zoo.*` metadata_props that
// export/runtime.py reads), never from the page, so the page and the torch-free runtime agree by
// construction: mean/std, input size and labels; softmax(logits / temperature) for classifiers; the
// per-pixel argmax for segmenters; score_thresh and the sort for detectors; clip to [0, 1] for generators.
//
// `?sample=K` (and `&label=L` for a conditional generator) runs sample K as soon as the page loads and
// writes the answer as JSON into #zoo-result (data-state="done" or "error"): the gallery's browser test
// reads it from the dumped DOM and compares it with export.runtime on the same input.
"use strict";

(function () {
  const page = JSON.parse(document.getElementById("zoo-page").textContent);
  const resultNode = document.getElementById("zoo-result");
  const statusNode = document.getElementById("zoo-status");

  // ------------------------------------------------------------------ ONNX metadata (protobuf walk)
  // onnxruntime-web does not expose a model's custom metadata, so the few protobuf fields needed are
  // read here: ModelProto field 14 is metadata_props, entries of (key = 1, value = 2).
  function readVarint(bytes, pos) {
    let value = 0;
    let scale = 1;
    let byte;
    do {
      byte = bytes[pos++];
      value += (byte & 0x7f) * scale; // multiplication, not shifts: lengths may pass 2^31
      scale *= 128;
    } while (byte & 0x80);
    return [value, pos];
  }

  function eachField(bytes, start, end, visit) {
    let pos = start;
    while (pos < end) {
      let key;
      [key, pos] = readVarint(bytes, pos);
      const field = Math.floor(key / 8);
      const wire = key % 8;
      if (wire === 0) {
        [, pos] = readVarint(bytes, pos);
      } else if (wire === 1) {
        pos += 8;
      } else if (wire === 5) {
        pos += 4;
      } else if (wire === 2) {
        let length;
        [length, pos] = readVarint(bytes, pos);
        visit(field, pos, pos + length);
        pos += length;
      } else {
        throw new Error("not an ONNX file (protobuf wire type " + wire + ")");
      }
    }
  }

  // ZooMetadata's string fields are stored as they are; every other value as JSON (export/runtime.py).
  const STRING_FIELDS = new Set([
    "name", "arch", "task", "tag", "family", "graph", "layout", "weights_sha256", "weights_revision",
    "hf_repo", "exporter", "precision", "version", "torch_version",
  ]);

  function readMetadata(bytes) {
    const text = new TextDecoder();
    const meta = {};
    eachField(bytes, 0, bytes.length, (field, start, end) => {
      if (field !== 14) return;
      let key = "";
      let value = "";
      eachField(bytes, start, end, (f, a, b) => {
        if (f === 1) key = text.decode(bytes.subarray(a, b));
        if (f === 2) value = text.decode(bytes.subarray(a, b));
      });
      if (!key.startsWith("zoo.")) return;
      const name = key.slice(4);
      if (STRING_FIELDS.has(name)) {
        meta[name] = value;
      } else {
        try {
          meta[name] = JSON.parse(value);
        } catch (err) {
          meta[name] = value;
        }
      }
    });
    if (!meta.name || !meta.task) {
      throw new Error("the file has no zoo metadata: it was not written by `zoo export`");
    }
    meta.task_fields = meta.task_fields || {};
    return meta;
  }

  // ------------------------------------------------------------------ session
  let loaded = null;

  function script(src) {
    return new Promise((resolve, reject) => {
      const node = document.createElement("script");
      node.src = src;
      node.onload = resolve;
      node.onerror = () => reject(new Error(src + " did not load"));
      document.head.appendChild(node);
    });
  }

  function base64Bytes(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  async function load() {
    if (loaded) return loaded;
    await Promise.all([script(page.vendor + "ort-wasm-inline.js"), script(page.model_script)]);
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    // The glue as a blob: module (importable from file:// too) and the binary handed over, so onnxruntime
    // fetches nothing itself.
    const glue = new Blob([window.ZOO_ORT_GLUE], { type: "text/javascript" });
    ort.env.wasm.wasmPaths = { mjs: URL.createObjectURL(glue) };
    ort.env.wasm.wasmBinary = base64Bytes(window.ZOO_ORT_WASM);
    const bytes = base64Bytes(window.ZOO_MODEL);
    const meta = readMetadata(bytes);
    const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
    loaded = { meta, session };
    return loaded;
  }

  // ------------------------------------------------------------------ preprocessing
  // As zoo.preprocess.preprocess_image, in float32 step by step (Math.fround after each operation, as
  // numpy computes x / 255, then x - mean, then / std in float32), so the input tensors are bit-identical.
  function pixelsToTensor(pixels, width, height, meta) {
    const channels = meta.input_size ? meta.input_size[0] : 3;
    const mean = meta.mean || null;
    const std = meta.std || null;
    const data = new Float32Array(channels * width * height);
    const plane = width * height;
    for (let i = 0; i < plane; i++) {
      const r = pixels[4 * i];
      const g = pixels[4 * i + 1];
      const b = pixels[4 * i + 2];
      // PIL's convert("L"): ITU-R 601-2 luma with its integer rounding.
      const values = channels === 1 ? [(r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16] : [r, g, b];
      for (let c = 0; c < channels; c++) {
        let x = Math.fround(values[c] / 255);
        if (mean && std) {
          x = Math.fround(x - Math.fround(mean[c]));
          x = Math.fround(x / Math.fround(std[c]));
        }
        data[c * plane + i] = x;
      }
    }
    return new ort.Tensor("float32", data, [1, channels, height, width]);
  }

  // A weight with a size_multiple takes the image at its own size, padded at the bottom and right to the
  // multiple (reflection, as zoo.tasks.base.pad_to_multiple); other weights take input_size exactly.
  function padToMultiple(image, multiple) {
    const { width, height, data } = image;
    const targetW = Math.max(multiple, Math.ceil(width / multiple) * multiple);
    const targetH = Math.max(multiple, Math.ceil(height / multiple) * multiple);
    if (targetW === width && targetH === height) return image;
    const reflect = targetH - height < height && targetW - width < width;
    const index = (i, n) => (i < n ? i : reflect ? 2 * (n - 1) - i : n - 1);
    const out = new Uint8ClampedArray(targetW * targetH * 4);
    for (let y = 0; y < targetH; y++) {
      for (let x = 0; x < targetW; x++) {
        const src = 4 * (index(y, height) * width + index(x, width));
        out.set(data.subarray(src, src + 4), 4 * (y * targetW + x));
      }
    }
    return { width: targetW, height: targetH, data: out };
  }

  function imageToTensor(image, meta) {
    const multiple = meta.task_fields.size_multiple;
    let input = image;
    if (page.demo === "detect") {
      // Detectors take the image at its own size: the graph resizes (zoo.tasks.detection).
    } else if (multiple) {
      input = padToMultiple(image, multiple);
    } else if (meta.input_size && (image.width !== meta.input_size[2] || image.height !== meta.input_size[1])) {
      // The browser's resampling, not PIL's bilinear: used for drawings only, never for the test's inputs.
      input = resized(image, meta.input_size[2], meta.input_size[1]);
    }
    return pixelsToTensor(input.data, input.width, input.height, meta);
  }

  function resized(image, width, height) {
    const source = document.createElement("canvas");
    source.width = image.width;
    source.height = image.height;
    source.getContext("2d").putImageData(new ImageData(image.data, image.width, image.height), 0, 0);
    const target = document.createElement("canvas");
    target.width = width;
    target.height = height;
    const ctx = target.getContext("2d");
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(source, 0, 0, width, height);
    return ctx.getImageData(0, 0, width, height);
  }

  async function loadImage(src) {
    const blob = await (await fetch(src)).blob();
    // No colour management and no premultiplication: the page must see the PNG's bytes, as PIL does.
    const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    const canvas = document.createElement("canvas");
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    const ctx = canvas.getContext("2d", { colorSpace: "srgb" });
    ctx.drawImage(bitmap, 0, 0);
    return ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  }

  // ------------------------------------------------------------------ post-processing
  function firstOutput(outputs, session, name) {
    return outputs[name] || outputs[session.outputNames[0]];
  }

  function classify(outputs, session, meta) {
    const logits = firstOutput(outputs, session, "logits").data;
    const temperature = Number(meta.task_fields.temperature || 1);
    // softmax(logits / T) in double precision, as zoo.tasks.classification does in float64.
    const scaled = Array.from(logits, (v) => v / temperature);
    const top = Math.max(...scaled);
    const exps = scaled.map((v) => Math.exp(v - top));
    const total = exps.reduce((a, b) => a + b, 0);
    const probs = exps.map((v) => v / total);
    const labels = meta.labels || [];
    const order = probs.map((p, i) => i).sort((a, b) => probs[b] - probs[a] || a - b);
    return {
      top1: order[0],
      label: labels[order[0]] !== undefined ? labels[order[0]] : String(order[0]),
      probs,
      topk: order.slice(0, 5).map((i) => [labels[i] !== undefined ? labels[i] : String(i), probs[i]]),
    };
  }

  function segment(outputs, session, meta, height, width) {
    const logits = firstOutput(outputs, session, "logits");
    const [, classes, outH, outW] = logits.dims;
    const data = logits.data;
    const plane = outH * outW;
    const mask = new Array(height * width);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        // First maximum wins, as numpy's argmax; the crop to (height, width) undoes the padding.
        const p = y * outW + x;
        let best = 0;
        for (let c = 1; c < classes; c++) if (data[c * plane + p] > data[best * plane + p]) best = c;
        mask[y * width + x] = best;
      }
    }
    return { mask, height, width };
  }

  function detect(outputs, meta) {
    // zoo.tasks.detection.ObjectDetection.postprocess: a stable sort by score, then the threshold (float32,
    // as numpy compares the float32 scores with it).
    const scores = outputs.scores.data;
    const boxes = outputs.boxes.data;
    const labels = Array.from(outputs.labels.data, Number);
    const thresh = Math.fround(Number(meta.task_fields.score_thresh ?? 0.05));
    const order = [...scores.keys()].sort((a, b) => scores[b] - scores[a] || a - b);
    const keep = order.filter((i) => scores[i] >= thresh);
    return {
      boxes: keep.map((i) => Array.from(boxes.subarray(4 * i, 4 * i + 4))),
      scores: keep.map((i) => scores[i]),
      labels: keep.map((i) => labels[i]),
    };
  }

  // ------------------------------------------------------------------ drawing results
  function show(node, lines) {
    node.textContent = "";
    for (const [label, value] of lines) {
      const row = document.createElement("div");
      row.className = "bar";
      const bar = document.createElement("span");
      bar.style.width = (100 * value).toFixed(1) + "%";
      const text = document.createElement("b");
      text.textContent = label + "  " + (100 * value).toFixed(2) + "%";
      row.append(bar, text);
      node.appendChild(row);
    }
  }

  function paint(canvas, image, overlay, found) {
    // Nearest-neighbour upscaling keeps the model's pixels visible.
    const scale = Math.max(1, Math.floor(256 / Math.max(image.width, image.height)));
    canvas.width = image.width * scale;
    canvas.height = image.height * scale;
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    const small = document.createElement("canvas");
    small.width = image.width;
    small.height = image.height;
    const data = new Uint8ClampedArray(image.data);
    if (overlay) {
      // zoo.tasks.draw.overlay_masks: alpha 0.6, the palette's colour for every class but the background.
      for (let i = 0; i < overlay.mask.length; i++) {
        const k = overlay.mask[i];
        if (k === overlay.background) continue;
        const color = page.palette[k % page.palette.length];
        for (let c = 0; c < 3; c++) data[4 * i + c] = Math.round(0.4 * data[4 * i + c] + 0.6 * color[c]);
      }
    }
    small.getContext("2d").putImageData(new ImageData(data, image.width, image.height), 0, 0);
    ctx.drawImage(small, 0, 0, canvas.width, canvas.height);
    if (found) {
      // Boxes in the palette's colour of their class, with the label and score, as zoo predict draws them.
      ctx.lineWidth = 2;
      ctx.font = "bold 13px sans-serif";
      found.boxes.forEach(([x1, y1, x2, y2], i) => {
        const color = page.palette[found.labels[i] % page.palette.length];
        ctx.strokeStyle = ctx.fillStyle = "rgb(" + color.join(",") + ")";
        ctx.strokeRect(x1 * scale, y1 * scale, (x2 - x1) * scale, (y2 - y1) * scale);
        ctx.fillText(found.names[i] + " " + found.scores[i].toFixed(2), x1 * scale + 2, Math.max(12, y1 * scale - 3));
      });
    }
  }

  function report(state, payload) {
    resultNode.dataset.state = state;
    resultNode.textContent = JSON.stringify(payload);
  }

  // ------------------------------------------------------------------ the demos
  async function runImage(image) {
    const { meta, session } = await load();
    const feeds = { [session.inputNames[0]]: imageToTensor(image, meta) };
    const outputs = await session.run(feeds);
    if (page.demo === "classify") {
      const answer = classify(outputs, session, meta);
      show(document.getElementById("zoo-topk"), answer.topk);
      return { top1: answer.top1, label: answer.label, probs: answer.probs };
    }
    if (page.demo === "detect") {
      const found = detect(outputs, meta);
      const labels = meta.labels || [];
      const names = found.labels.map((k) => labels[k] ?? String(k));
      // Only boxes scoring 0.5 or more are drawn (the answer keeps all above score_thresh).
      const shown = found.scores.map((s, i) => i).filter((i) => found.scores[i] >= 0.5);
      paint(document.getElementById("zoo-output"), image, null, {
        boxes: shown.map((i) => found.boxes[i]),
        scores: shown.map((i) => found.scores[i]),
        labels: shown.map((i) => found.labels[i]),
        names: shown.map((i) => names[i]),
      });
      document.getElementById("zoo-topk").textContent =
        shown.length + " found (score ≥ 0.5): " + shown.map((i) => names[i] + " " + found.scores[i].toFixed(2)).join(", ");
      return found;
    }
    const answer = segment(outputs, session, meta, image.height, image.width);
    paint(document.getElementById("zoo-output"), image, {
      mask: answer.mask,
      background: meta.task_fields.background_index ?? 0,
    });
    const present = [...new Set(answer.mask)].sort((a, b) => a - b);
    const labels = meta.labels || [];
    document.getElementById("zoo-topk").textContent =
      "classes found: " + present.map((k) => labels[k] ?? k).join(", ");
    return answer;
  }

  async function runLatent(index, label) {
    const { meta, session } = await load();
    const latent = page.latents[index];
    const feeds = { latent: new ort.Tensor("float32", Float32Array.from(latent), [1, latent.length]) };
    if (session.inputNames.includes("label")) {
      feeds.label = new ort.Tensor("int64", BigInt64Array.from([BigInt(label)]), [1]);
    }
    const outputs = await session.run(feeds);
    const image = firstOutput(outputs, session, "image");
    const [, channels, height, width] = image.dims;
    const pixels = Array.from(image.data, (v) => Math.min(1, Math.max(0, v)));
    const rgba = new Uint8ClampedArray(width * height * 4);
    for (let i = 0; i < width * height; i++) {
      for (let c = 0; c < 3; c++) rgba[4 * i + c] = Math.round(255 * pixels[(channels === 1 ? 0 : c) * width * height + i]);
      rgba[4 * i + 3] = 255;
    }
    paint(document.getElementById("zoo-output"), { width, height, data: rgba });
    return { image: pixels, shape: [channels, height, width], meta_name: meta.name };
  }

  async function guarded(work) {
    statusNode.textContent = "running…";
    try {
      const started = performance.now();
      const payload = await work();
      statusNode.textContent = "done in " + (performance.now() - started).toFixed(0) + " ms (onnxruntime-web, wasm, 1 thread)";
      report("done", payload);
    } catch (err) {
      statusNode.textContent = "error: " + err.message;
      report("error", { error: String(err.message || err) });
    }
  }

  function runSample(index) {
    if (page.demo === "latent") {
      const label = Number(document.getElementById("zoo-label")?.value || 0);
      return guarded(() => runLatent(index, label));
    }
    return guarded(async () => {
      const image = await loadImage(page.samples[index].src);
      const payload = await runImage(image);
      if (page.demo === "classify") paint(document.getElementById("zoo-output"), image);
      return payload;
    });
  }

  // `?sample=all`: every sample (every seed for a generator) in turn, the answers as one JSON list, so a
  // test loads the page once.
  function runAll() {
    const count = page.demo === "latent" ? page.latents.length : page.samples.length;
    return guarded(async () => {
      const answers = [];
      for (let k = 0; k < count; k++) {
        if (page.demo === "latent") {
          answers.push(await runLatent(k, Number(document.getElementById("zoo-label")?.value || 0)));
        } else {
          const image = await loadImage(page.samples[k].src);
          answers.push(await runImage(image));
          if (page.demo === "classify") paint(document.getElementById("zoo-output"), image);
        }
      }
      return { all: answers };
    });
  }

  // ------------------------------------------------------------------ the drawing pad (classifiers)
  // MNIST's own framing: the ink's bounding box scaled into 20x20 (aspect kept), then centred by its
  // centre of mass in the input (28x28), so a digit drawn anywhere on the pad looks like the training data.
  function padToDigit(pad, width, height) {
    const ctx = pad.getContext("2d");
    const { data } = ctx.getImageData(0, 0, pad.width, pad.height);
    let x0 = pad.width, y0 = pad.height, x1 = -1, y1 = -1;
    for (let y = 0; y < pad.height; y++) {
      for (let x = 0; x < pad.width; x++) {
        if (data[4 * (y * pad.width + x)] > 20) {
          x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
        }
      }
    }
    const out = document.createElement("canvas");
    out.width = width;
    out.height = height;
    const octx = out.getContext("2d");
    octx.fillStyle = "black";
    octx.fillRect(0, 0, width, height);
    if (x1 < 0) return octx.getImageData(0, 0, width, height);
    const box = Math.round(Math.min(width, height) * 20 / 28);
    const scale = box / Math.max(x1 - x0 + 1, y1 - y0 + 1);
    const w = (x1 - x0 + 1) * scale, h = (y1 - y0 + 1) * scale;
    octx.imageSmoothingQuality = "high";
    octx.drawImage(pad, x0, y0, x1 - x0 + 1, y1 - y0 + 1, (width - w) / 2, (height - h) / 2, w, h);
    const image = octx.getImageData(0, 0, width, height);
    let mass = 0, cx = 0, cy = 0;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const v = image.data[4 * (y * width + x)];
        mass += v; cx += v * x; cy += v * y;
      }
    }
    const dx = Math.round((width - 1) / 2 - cx / mass), dy = Math.round((height - 1) / 2 - cy / mass);
    octx.fillRect(0, 0, width, height);
    octx.putImageData(image, dx, dy);
    return octx.getImageData(0, 0, width, height);
  }

  function setUpPad() {
    const pad = document.getElementById("zoo-pad");
    if (!pad) return;
    const ctx = pad.getContext("2d");
    const clear = () => {
      ctx.fillStyle = "black";
      ctx.fillRect(0, 0, pad.width, pad.height);
    };
    clear();
    ctx.strokeStyle = "white";
    ctx.lineWidth = pad.width / 12;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    let drawing = false;
    const at = (event) => {
      const rect = pad.getBoundingClientRect();
      return [(event.clientX - rect.left) * pad.width / rect.width, (event.clientY - rect.top) * pad.height / rect.height];
    };
    pad.addEventListener("pointerdown", (event) => {
      drawing = true;
      ctx.beginPath();
      ctx.moveTo(...at(event));
      pad.setPointerCapture(event.pointerId);
    });
    pad.addEventListener("pointermove", (event) => {
      if (!drawing) return;
      ctx.lineTo(...at(event));
      ctx.stroke();
    });
    pad.addEventListener("pointerup", () => {
      drawing = false;
      guarded(async () => {
        const { meta } = await load();
        const size = meta.input_size || [1, 28, 28];
        const image = padToDigit(pad, size[2], size[1]);
        paint(document.getElementById("zoo-output"), image);
        return runImage(image);
      });
    });
    document.getElementById("zoo-clear").addEventListener("click", clear);
  }

  // ------------------------------------------------------------------ start
  setUpPad();
  document.querySelectorAll("[data-sample]").forEach((node) => {
    node.addEventListener("click", () => runSample(Number(node.dataset.sample)));
  });
  const params = new URLSearchParams(location.search);
  if (params.has("label") && document.getElementById("zoo-label")) {
    document.getElementById("zoo-label").value = params.get("label");
  }
  statusNode.textContent = "";
  // The listeners are attached: a driver (the browser test) may draw or click from now on.
  document.documentElement.dataset.zooDemo = "ready";
  if (params.get("sample") === "all") {
    runAll();
  } else if (params.has("sample")) {
    runSample(Number(params.get("sample")));
  }
})();
