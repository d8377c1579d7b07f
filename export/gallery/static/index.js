// The gallery's index (export/gallery): filter the weights by task and family, sort them by any column or
// any metric. The data is embedded in the page as JSON (#zoo-index), so this works from file:// too.
"use strict";

(function () {
  const data = JSON.parse(document.getElementById("zoo-index").textContent);
  const taskSelect = document.getElementById("filter-task");
  const familySelect = document.getElementById("filter-family");
  const textInput = document.getElementById("filter-text");
  const metricSelect = document.getElementById("sort-metric");
  const body = document.querySelector("#weights tbody");
  const archBody = document.querySelector("#architectures tbody");
  const count = document.getElementById("count");
  let sortKey = "name";
  let descending = false;

  function options(select, values) {
    for (const value of values) {
      const option = document.createElement("option");
      option.value = option.textContent = value;
      select.appendChild(option);
    }
  }

  const unique = (values) => [...new Set(values)].sort();
  options(taskSelect, unique(data.architectures.map((a) => a.task)));
  options(familySelect, unique(data.architectures.map((a) => a.family)));
  options(metricSelect, unique(data.weights.flatMap((w) => Object.keys(w.metrics))));

  // Filters and sort order live in the URL's hash, so a filtered view can be linked to.
  const hash = new URLSearchParams(location.hash.slice(1));
  taskSelect.value = hash.get("task") || "";
  familySelect.value = hash.get("family") || "";
  textInput.value = hash.get("q") || "";
  if (hash.get("metric")) metricSelect.value = hash.get("metric");
  if (hash.get("sort")) sortKey = hash.get("sort");
  descending = hash.get("desc") === "1";

  function value(weight, key) {
    if (key === "metric") return weight.metrics[metricSelect.value];
    return weight[key];
  }

  function compare(a, b) {
    const x = value(a, sortKey);
    const y = value(b, sortKey);
    // Weights without the value sort last either way.
    if (x === undefined || x === null) return y === undefined || y === null ? 0 : 1;
    if (y === undefined || y === null) return -1;
    const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
    return descending ? -order : order;
  }

  function keep(item) {
    const text = textInput.value.trim().toLowerCase();
    return (
      (!taskSelect.value || item.task === taskSelect.value) &&
      (!familySelect.value || item.family === familySelect.value) &&
      (!text || JSON.stringify(item).toLowerCase().includes(text))
    );
  }

  function cell(row, content, className) {
    const td = document.createElement("td");
    if (content instanceof Node) td.appendChild(content);
    else td.textContent = content === undefined || content === null ? "" : content;
    if (className) td.className = className;
    row.appendChild(td);
  }

  function link(href, text) {
    const a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  function format(number) {
    if (typeof number !== "number") return number;
    return Math.abs(number) >= 1000 ? number.toLocaleString("en") : String(Number(number.toPrecision(4)));
  }

  function render() {
    const rows = data.weights.filter(keep).sort(compare);
    body.textContent = "";
    for (const w of rows) {
      const tr = document.createElement("tr");
      cell(tr, link(w.page, w.name));
      cell(tr, w.task);
      cell(tr, w.family);
      cell(tr, w.dataset);
      cell(tr, format(w.params), "num");
      cell(tr, w.headline);
      cell(tr, format(w.metrics[metricSelect.value]), "num");
      cell(tr, w.demo ? "▶ " + w.demo : "");
      body.appendChild(tr);
    }
    count.textContent = rows.length + " of " + data.weights.length + " weights";
    archBody.textContent = "";
    for (const a of data.architectures.filter(keep)) {
      const tr = document.createElement("tr");
      cell(tr, a.arch);
      cell(tr, a.task);
      cell(tr, a.family);
      const weights = document.createElement("span");
      for (const name of a.weights) {
        const page = data.weights.find((w) => w.name === name);
        weights.append(page ? link(page.page, name) : name, " ");
      }
      cell(tr, a.weights.length ? weights : "none published");
      cell(tr, a.summary);
      archBody.appendChild(tr);
    }
    // The metric column is titled by the metric it shows.
    document.querySelector('#weights th[data-key="metric"]').textContent = metricSelect.value || "metric";
    document.querySelectorAll("#weights th[data-key]").forEach((th) => {
      th.classList.toggle("sorted", th.dataset.key === sortKey);
      th.classList.toggle("desc", th.dataset.key === sortKey && descending);
    });
    const state = new URLSearchParams();
    if (taskSelect.value) state.set("task", taskSelect.value);
    if (familySelect.value) state.set("family", familySelect.value);
    if (textInput.value) state.set("q", textInput.value);
    if (metricSelect.value) state.set("metric", metricSelect.value);
    state.set("sort", sortKey);
    if (descending) state.set("desc", "1");
    history.replaceState(null, "", "#" + state.toString());
  }

  document.querySelectorAll("#weights th[data-key]").forEach((th) => {
    th.addEventListener("click", () => {
      descending = sortKey === th.dataset.key ? !descending : th.dataset.key === "metric";
      sortKey = th.dataset.key;
      render();
    });
  });
  metricSelect.addEventListener("change", () => {
    sortKey = "metric";
    descending = true;
    render();
  });
  [taskSelect, familySelect].forEach((s) => s.addEventListener("change", render));
  textInput.addEventListener("input", render);
  render();
})();
