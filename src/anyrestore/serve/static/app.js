// anyrestore's local page: pick a photo and a model, restore, compare with a slider, download.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { file: null, beforeUrl: null, afterUrl: null, limits: {}, busy: false };

function setStatus(text, kind = "") {
  const status = $("status");
  status.textContent = text;
  status.className = kind;
}

function megabytes(bytes) {
  return `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`;
}

function updateButton() {
  $("restore").disabled = state.busy || !state.file || !$("model").value;
}

async function errorMessage(response) {
  try {
    const data = await response.json();
    if (data && data.error) return data.error;
  } catch (_) {
    // not JSON: fall through to the status line
  }
  return `${response.status} ${response.statusText}`;
}

async function loadModels() {
  try {
    const response = await fetch("api/models");
    if (!response.ok) throw new Error(await errorMessage(response));
    const data = await response.json();
    const select = $("model");
    select.replaceChildren();
    for (const model of data.models) {
      const option = new Option(model.label, model.id, model.default, model.default);
      option.title = model.description;
      select.add(option);
    }
    state.limits = data.limits;
    $("limits").textContent =
      `PNG, JPEG, TIFF, WebP or BMP; up to ${megabytes(data.limits.upload_bytes)} ` +
      `and ${Math.round(data.limits.pixels / 1e6)} megapixels`;
    if (!data.models.length) setStatus("No models available.", "error");
  } catch (err) {
    setStatus(`Cannot list the models: ${err.message}`, "error");
  }
  updateButton();
}

function clearResult() {
  if (state.afterUrl) URL.revokeObjectURL(state.afterUrl);
  state.afterUrl = null;
  for (const id of ["after", "divider", "after-tag", "result-controls", "analysis"]) $(id).hidden = true;
  $("download").removeAttribute("href");
}

function chooseFile(file) {
  if (!file) return;
  clearResult();
  state.file = file;
  $("file-label").textContent = `${file.name} (${megabytes(file.size)})`;
  if (state.beforeUrl) URL.revokeObjectURL(state.beforeUrl);
  state.beforeUrl = URL.createObjectURL(file);
  $("compare").classList.remove("no-before");
  $("before").hidden = false;
  $("before").src = state.beforeUrl;
  $("viewer").hidden = false;
  if (state.limits.upload_bytes && file.size > state.limits.upload_bytes) {
    setStatus(`${file.name} is too large: ${megabytes(file.size)} (limit ${megabytes(state.limits.upload_bytes)})`, "error");
  } else {
    setStatus("");
  }
  updateButton();
}

function setSplit(percent) {
  $("compare").style.setProperty("--split", `${percent}%`);
}

function showResult(blob) {
  state.afterUrl = URL.createObjectURL(blob);
  $("after").src = state.afterUrl;
  const stem = state.file.name.replace(/\.[^.]*$/, "") || "photo";
  $("download").href = state.afterUrl;
  $("download").download = `${stem}_restored.png`;
  $("slider").value = 50;
  setSplit(50);
  for (const id of ["after", "divider", "after-tag", "result-controls"]) $(id).hidden = false;
}

function showAnalysis(weights) {
  const list = $("weights");
  list.replaceChildren();
  const entries = Object.entries(weights);
  const top = Math.max(1, ...entries.map(([, value]) => value));
  for (const [name, value] of entries) {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = name;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${Math.max(0, (100 * value) / top)}%`;
    const number = document.createElement("span");
    number.className = "value";
    number.textContent = value.toFixed(2);
    item.append(label, bar, number);
    list.append(item);
  }
  $("analysis").hidden = entries.length === 0;
}

function setBusy(busy) {
  state.busy = busy;
  $("file").disabled = busy;
  $("model").disabled = busy;
  updateButton();
}

async function restore() {
  if (!state.file || state.busy) return;
  const select = $("model");
  const label = select.options[select.selectedIndex].text;
  const form = new FormData();
  form.append("model", select.value);
  form.append("image", state.file, state.file.name);
  form.append("analyze", "1"); // a model with an estimator sends its weights with the image
  clearResult();
  setBusy(true);
  setStatus(`Restoring with ${label}`, "busy");
  try {
    const response = await fetch("api/restore", { method: "POST", body: form });
    if (!response.ok) throw new Error(await errorMessage(response));
    showResult(await response.blob());
    const seconds = Number(response.headers.get("X-Anyrestore-Seconds") || 0);
    setStatus(`Restored with ${label} in ${seconds.toFixed(1)} s.`, "done");
    const weights = response.headers.get("X-Anyrestore-Weights");
    if (weights) showAnalysis(JSON.parse(weights));
  } catch (err) {
    setStatus(err.message, "error");
  } finally {
    setBusy(false);
  }
}

function dragSplit(event) {
  const box = $("compare").getBoundingClientRect();
  const percent = Math.round(Math.min(1, Math.max(0, (event.clientX - box.left) / box.width)) * 100);
  $("slider").value = percent;
  setSplit(percent);
}

function init() {
  $("file").addEventListener("change", (event) => chooseFile(event.target.files[0]));
  $("model").addEventListener("change", () => { clearResult(); updateButton(); });
  $("restore").addEventListener("click", restore);
  $("slider").addEventListener("input", (event) => setSplit(event.target.value));
  $("before").addEventListener("error", () => {
    // Browsers cannot show every format the server reads (TIFF): show the result alone.
    if (!state.beforeUrl) return;
    $("before").hidden = true;
    $("compare").classList.add("no-before");
  });

  const compare = $("compare");
  compare.addEventListener("pointerdown", (event) => {
    if ($("after").hidden) return;
    compare.setPointerCapture(event.pointerId);
    dragSplit(event);
  });
  compare.addEventListener("pointermove", (event) => {
    if (compare.hasPointerCapture(event.pointerId)) dragSplit(event);
  });

  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (!state.busy) chooseFile(event.dataTransfer.files[0]);
  });

  loadModels();
}

document.addEventListener("DOMContentLoaded", init);
