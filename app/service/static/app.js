// The demo page: upload an image to POST /detect, draw the boxes on a canvas, filter them by
// confidence on the client (no new request), pick the model, switch single/multi scale, show
// stage timings.
"use strict";

const PALETTE = [
  "#e6194b", "#3cb44b", "#ffe119", "#0082c8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
  "#d2f53c", "#fabebe", "#008080", "#e6beff", "#aa6e28", "#800000", "#aaffc3", "#808000",
];

const state = {
  file: null,      // the chosen File
  bitmap: null,    // its decoded pixels, EXIF orientation applied
  result: null,    // the last /detect JSON
  busy: false,
};

const $ = (id) => document.getElementById(id);

function setStatus(text, isError = false) {
  const status = $("status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function minConfidence() {
  return Number($("confidence").value);
}

function selectedScales() {
  return document.querySelector('input[name="scales"]:checked').value;
}

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function selectedModel() {
  return $("model").value;
}

// Fill the model picker from GET /v1/models (the loaded models, MODEL_NAME first); keep the
// choice when it is still loaded.
async function loadModels() {
  try {
    const response = await fetch("/v1/models", { headers: authHeaders() });
    if (!response.ok) return;
    const body = await response.json();
    const picker = $("model");
    const chosen = picker.value;
    picker.replaceChildren();
    for (const model of body.models) {
      const option = document.createElement("option");
      option.value = model.name;
      option.textContent = `${model.name} ${model.version}`;
      picker.append(option);
    }
    if (body.models.some((model) => model.name === chosen)) picker.value = chosen;
  } catch (error) {
    // the picker keeps its default entry: requests go to MODEL_NAME
  }
}

async function checkModel() {
  try {
    const response = await fetch("/readyz");
    const body = await response.json();
    $("model-status").textContent = response.ok
      ? `model ${body.model.name} ${body.model.version} on ${body.device}: ready`
      : `model not ready (${body.status}): ${body.reason ?? ""}`;
  } catch (error) {
    $("model-status").textContent = `server unreachable: ${error}`;
  }
}

async function detect() {
  if (!state.file || state.busy) return;
  state.busy = true;
  setStatus("detecting…");
  const form = new FormData();
  form.append("image", state.file);
  // Every detection comes back (min_confidence=0); the slider filters them here, no new request.
  const params = new URLSearchParams({ min_confidence: "0" });
  if (selectedScales()) params.set("scales", selectedScales());  // else the model's default
  if (selectedModel()) params.set("model", selectedModel());
  try {
    const response = await fetch(`/detect?${params}`, {
      method: "POST",
      body: form,
      headers: { Accept: "application/json", ...authHeaders() },
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = typeof body.detail === "string"
        ? body.detail
        : JSON.stringify(body.detail ?? body);
      throw new Error(`${response.status}: ${detail}`);
    }
    state.result = body;
    render();
    const source = body.proposals_source === "cache" ? " (cached)" : "";
    setStatus(`${body.detections.length} detections from ${body.num_proposals} proposals${source}`);
  } catch (error) {
    state.result = null;
    render();
    setStatus(String(error.message ?? error), true);
  } finally {
    state.busy = false;
  }
}

function render() {
  drawCanvas();
  fillDetections();
  fillTimings();
}

function visibleDetections() {
  if (!state.result) return [];
  const threshold = minConfidence();
  return state.result.detections.filter((d) => d.confidence >= threshold);
}

function drawCanvas() {
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  if (!state.bitmap) {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    canvas.dataset.drawnBoxes = "0";
    return;
  }
  // The server's width/height are the displayed frame (EXIF applied), like the bitmap's.
  const width = state.result ? state.result.width : state.bitmap.width;
  const height = state.result ? state.result.height : state.bitmap.height;
  canvas.width = width;
  canvas.height = height;
  ctx.drawImage(state.bitmap, 0, 0, width, height);
  const shown = visibleDetections();
  const line = Math.max(2, Math.round(Math.min(width, height) / 200));
  const fontSize = Math.max(12, Math.round(Math.min(width, height) / 40));
  ctx.font = `${fontSize}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  for (const d of shown) {
    const colour = PALETTE[d.class_id % PALETTE.length];
    const { x1, y1, x2, y2 } = d.box;
    ctx.lineWidth = line;
    ctx.strokeStyle = colour;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const text = `${d.label} ${d.confidence.toFixed(2)}`;
    const textWidth = ctx.measureText(text).width + 2 * line;
    const textHeight = fontSize + line;
    const top = y1 - textHeight >= 0 ? y1 - textHeight : y1;
    ctx.fillStyle = colour;
    ctx.fillRect(x1, top, textWidth, textHeight);
    ctx.fillStyle = "#000";
    ctx.fillText(text, x1 + line, top + line / 2);
  }
  canvas.dataset.drawnBoxes = String(shown.length);
  canvas.dataset.labels = shown.map((d) => d.label).join(",");
  const total = state.result ? state.result.detections.length : 0;
  $("summary").textContent = state.result
    ? `${shown.length} of ${total} detections at confidence ≥ ${minConfidence().toFixed(2)}; `
      + `${width}×${height} px, scales ${state.result.scales.join(", ")}`
    : "";
}

function cell(text, numeric = false) {
  const td = document.createElement("td");
  td.textContent = text;
  if (numeric) td.className = "num";
  return td;
}

function fillDetections() {
  const body = $("detections").querySelector("tbody");
  body.replaceChildren();
  const threshold = minConfidence();
  for (const d of state.result ? state.result.detections : []) {
    const row = document.createElement("tr");
    row.setAttribute("data-testid", "detection-row");
    row.classList.toggle("filtered", d.confidence < threshold);
    const b = d.box;
    row.append(
      cell(d.label),
      cell(d.confidence.toFixed(3), true),
      cell([b.x1, b.y1, b.x2, b.y2].map((v) => v.toFixed(1)).join(", ")),
    );
    body.append(row);
  }
}

function fillTimings() {
  const body = $("timings").querySelector("tbody");
  body.replaceChildren();
  const timings = state.result ? state.result.timings_ms : {};
  for (const [stage, ms] of Object.entries(timings)) {
    const row = document.createElement("tr");
    row.setAttribute("data-testid", "timing-row");
    row.dataset.stage = stage;
    row.append(cell(stage), cell(ms.toFixed(1), true));
    body.append(row);
  }
}

async function chooseFile(file) {
  if (!file) return;
  if (!file.type.startsWith("image/") && file.type !== "") {
    setStatus(`not an image: ${file.type}`, true);
    return;
  }
  state.file = file;
  state.result = null;
  try {
    state.bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch {
    state.bitmap = null;  // the browser cannot show it; the server may still decode it
  }
  render();
  await detect();
}

function setUp() {
  const drop = $("drop-zone");
  $("file-input").addEventListener("change", (event) => chooseFile(event.target.files[0]));
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("dragover");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("dragover"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    chooseFile(event.dataTransfer.files[0]);
  });
  $("confidence").addEventListener("input", () => {
    $("confidence-value").textContent = minConfidence().toFixed(2);
    drawCanvas();
    fillDetections();
  });
  for (const radio of document.querySelectorAll('input[name="scales"]')) {
    radio.addEventListener("change", () => detect());
  }
  $("model").addEventListener("change", () => detect());
  $("api-key").addEventListener("change", () => loadModels());
  $("confidence-value").textContent = minConfidence().toFixed(2);
  checkModel();
  loadModels();
}

document.addEventListener("DOMContentLoaded", setUp);
