// vinr's page: choose videos, set the output (presets or free controls), preview a frame, start one job
// per video, follow every job in a live list, compare input and result on the video itself.
// No framework and no build step; it talks to the HTTP API only.
"use strict";

const $ = (id) => document.getElementById(id);
const LIVE_LIMIT = 256 * 1024 * 1024; // bytes of a growing result kept in memory for live playback
const LIVE_REFRESH_MS = 2000; // how often the live player takes in what has arrived
const POLL_ACTIVE_MS = 1000; // the job list's refresh while a job is queued or running
const POLL_IDLE_MS = 5000; // ... and while none is
const MINE = "vinr-jobs"; // localStorage: ids of the jobs started from this browser
const MISSING_MOST = 20; // ... read one by one at most, when others' newer jobs push them off the first page
const THEME = "vinr-theme"; // localStorage: the theme chosen with the toggle
const FIELDS = {
  scale: "scale",
  width: "width",
  height: "width",
  fps: "fps",
  time_factor: "time-factor",
  slowmo: "slowmo",
  slowmo_audio: "slowmo",
  model: "model",
  codec: "codec",
  crf: "crf",
  adapt: "adapt",
  at: "at",
};
// API parameter -> the control whose error box shows a message about it

const page = {
  limits: null,
  models: [],
  files: [], // {file, info, error}
  selected: 0,
  jobs: new Map(), // id -> the API's job JSON
  uploads: [], // {key, name, done, error}: uploads in flight, listed before they are jobs
  sources: new Map(), // job id -> the File it was made from (the video wipe's "before")
  watching: null, // {id, control, urls}
  poll: null,
};

class ApiError extends Error {
  constructor(message, status, field) {
    super(message);
    this.status = status;
    this.field = field || null;
  }
}

// ---- the API ----

function apiKey() {
  return sessionStorage.getItem("vinr-key") || "";
}

function withKey(headers = {}) {
  const key = apiKey();
  return key ? { ...headers, "X-API-Key": key } : headers;
}

function problem(status, text) {
  try {
    const body = JSON.parse(text);
    if (body && typeof body.detail === "string") return new ApiError(body.detail, status, body.field);
  } catch (_) {
    // not JSON: fall through
  }
  if (status === 0) return new ApiError("The server did not answer. Is it running?", 0);
  return new ApiError(`The server answered ${status}${text ? ": " + text.slice(0, 200) : ""}`, status);
}

function needKey(status) {
  if (status === 401) $("key-section").hidden = false;
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: withKey(options.headers || {}) });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw problem(0, "");
  }
  if (!response.ok) {
    needKey(response.status);
    throw problem(response.status, await response.text());
  }
  return response;
}

// POST a file as the raw body (XHR, for upload progress); resolves with the parsed JSON answer.
function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    const headers = { "Content-Type": "application/octet-stream", "X-Filename": encodeURIComponent(file.name || "") };
    for (const [name, value] of Object.entries(withKey(headers))) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      if (onProgress && event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText));
        } catch (_) {
          reject(new ApiError(`Unexpected answer from ${path}`, xhr.status));
        }
      } else {
        needKey(xhr.status);
        reject(problem(xhr.status, xhr.responseText));
      }
    };
    xhr.onerror = () => reject(problem(0, ""));
    xhr.send(file);
  });
}

// ---- errors, next to what caused them ----

function showError(id, text) {
  const box = $(id);
  box.textContent = text;
  box.hidden = false;
  const control = document.querySelector(`[aria-describedby~="${id}"]`);
  if (control && control.matches("input, select")) control.setAttribute("aria-invalid", "true");
  box.scrollIntoView({ block: "nearest", behavior: "instant" });
}

function clearError(id) {
  const box = $(id);
  if (!box) return;
  box.hidden = true;
  box.textContent = "";
  const control = document.querySelector(`[aria-describedby~="${id}"]`);
  if (control) control.removeAttribute("aria-invalid");
}

function fieldErrorId(field) {
  const control = FIELDS[field];
  return control ? `${control}-error` : null;
}

// An API error next to the parameter it names where there is one, else next to the action's button.
function place(error, fallback, prefix = "") {
  const id = (error.field && fieldErrorId(error.field)) || fallback;
  showError(id, prefix + (error.message || String(error)));
}

function guarded(task, fallback) {
  return async (...args) => {
    try {
      await task(...args);
    } catch (error) {
      if (error.name !== "AbortError") place(error, fallback);
    }
  };
}

// ---- formatting ----

function formatBytes(bytes) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function formatSeconds(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "?";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const whole = Math.round(seconds);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, "0");
  return h ? `${h} h ${String(m).padStart(2, "0")} min` : `${m}:${s} min`;
}

function clock(seconds) {
  const whole = Math.max(0, Math.floor(seconds || 0));
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

function round(value, digits) {
  return Number(value.toFixed(digits));
}

function ordinal(n) {
  const tail = n % 100 >= 11 && n % 100 <= 13 ? "th" : { 1: "st", 2: "nd", 3: "rd" }[n % 10] || "th";
  return `${n}${tail}`;
}

// ---- limits, models, key, theme ----

async function loadLimits() {
  page.limits = await (await fetch("/limits")).json();
  const l = page.limits;
  $("scale").max = l.max_scale;
  $("fps").max = l.max_fps;
  $("limits").textContent =
    `This server takes videos up to ${formatBytes(l.max_upload_bytes)} and ${formatSeconds(l.max_input_seconds)}, ` +
    `and makes frames of up to ${(l.max_output_pixels / 1e6).toFixed(1)} megapixels, ` +
    `${l.max_output_frames.toLocaleString("en")} frames a job.`;
  try {
    page.models = await (await fetch("/models")).json();
  } catch (_) {
    page.models = l.models.map((name) => ({ name, default: name === l.default_model, quality: {}, speed: {} }));
  }
  const select = $("model");
  select.replaceChildren();
  for (const model of page.models) {
    const label = model.default ? `${model.name} (default)` : model.name;
    select.append(new Option(label, model.name, model.default, model.default));
  }
  describeModel();
  for (const option of $("adapt").options) {
    option.disabled = Boolean(option.value) && Number(option.value) > l.max_adapt_seconds;
  }
  if (!l.max_adapt_seconds) $("adapt-info").textContent = "This server has adaptation turned off.";
  if (l.api_key_required && !apiKey()) $("key-section").hidden = false;
  $("jobs-scope").textContent = l.api_key_required
    ? "The jobs of your API key."
    : "The jobs started from this browser. This server has no API keys: anyone who can reach it can list " +
      "every job through the API.";
}

function describeModel() {
  const model = page.models.find((m) => m.name === $("model").value);
  if (!model) return;
  const parts = [];
  if (model.parameters) parts.push(`${(model.parameters / 1e6).toFixed(2)} M parameters`);
  const q = model.quality || {};
  if (q["2x/2x"] != null) {
    parts.push(`quality on the held-out carphone clip: ${q["2x/2x"]} dB at 2×/2×, ${q["4x/4x"]} dB at 4×/4× (in-between frames)`);
  }
  const s = model.speed || {};
  if (s["2x/2x"] != null) {
    parts.push(`speed: ${s["2x/2x"]} output megapixels/s at 2×/2× on ${model.speed_machine || "a CPU"}`);
  }
  $("model-info").textContent = parts.length
    ? parts.join(" · ")
    : "An earlier checkpoint; its card holds no measurements. The default is the best measured one.";
}

function effectiveTheme() {
  const chosen = document.documentElement.dataset.theme;
  if (chosen) return chosen;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function showTheme() {
  const dark = effectiveTheme() === "dark";
  const button = $("theme");
  button.setAttribute("aria-pressed", String(dark));
  button.title = dark ? "Light theme" : "Dark theme";
  button.querySelector(".visually-hidden").textContent = "Dark theme";
}

function toggleTheme() {
  const next = effectiveTheme() === "dark" ? "light" : "dark";
  document.documentElement.dataset.theme = next;
  localStorage.setItem(THEME, next);
  showTheme();
}

// ---- the videos ----

async function addFiles(list) {
  clearError("file-error");
  const files = Array.from(list || []);
  if (!files.length) return;
  for (const file of files) {
    const entry = { file, info: null, error: null };
    page.files.push(entry);
    renderFiles();
    try {
      entry.info = await upload("/probe", file);
    } catch (error) {
      entry.error = error.message;
      showError("file-error", `${file.name}: ${error.message}`);
    }
    renderFiles();
  }
  const good = page.files.findIndex((f) => f.info);
  if (!page.files[page.selected]?.info && good >= 0) selectFile(good);
  updatePlan();
}

function selectFile(index) {
  page.selected = index;
  const entry = page.files[index];
  if (entry?.info) {
    $("at").max = entry.info.duration.toFixed(2);
    if (!$("width").value) $("width").value = 2 * entry.info.width;
  }
  hidePreview();
  renderFiles();
  updatePlan();
}

function removeFile(index) {
  page.files.splice(index, 1);
  if (page.selected >= page.files.length) page.selected = Math.max(0, page.files.length - 1);
  const good = page.files.findIndex((f) => f.info);
  if (!page.files[page.selected]?.info && good >= 0) page.selected = good;
  if (!page.files.some((f) => f.error)) clearError("file-error");
  hidePreview();
  renderFiles();
  updatePlan();
}

function renderFiles() {
  const list = $("files");
  list.replaceChildren();
  page.files.forEach((entry, index) => {
    const item = document.createElement("li");
    item.classList.toggle("selected", index === page.selected && Boolean(entry.info));
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = entry.file.name;
    const meta = document.createElement("span");
    meta.className = "meta";
    if (entry.info) {
      const i = entry.info;
      meta.textContent =
        `${i.width} × ${i.height} · ${round(i.fps, 3)} fps · ${formatSeconds(i.duration)} · ` +
        `${i.codec} · ${i.audio.length ? "audio: " + i.audio.join(", ") : "no audio"}`;
    } else if (entry.error) {
      meta.textContent = "Not usable: see the message above.";
      meta.classList.add("bad");
    } else {
      meta.textContent = "Reading…";
    }
    const actions = document.createElement("span");
    actions.className = "actions";
    if (entry.info && page.files.length > 1) {
      const pick = document.createElement("button");
      pick.type = "button";
      pick.textContent = index === page.selected ? "Previewed" : "Preview this";
      pick.disabled = index === page.selected;
      pick.addEventListener("click", () => selectFile(index));
      actions.append(pick);
    }
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${entry.file.name}`);
    remove.addEventListener("click", () => removeFile(index));
    actions.append(remove);
    item.append(name, actions, meta);
    list.append(item);
  });
  const ready = page.files.filter((f) => f.info).length;
  $("start-button").textContent = ready > 1 ? `Start ${ready} jobs` : "Start";
}

function current() {
  const entry = page.files[page.selected];
  return entry && entry.info ? entry : null;
}

// ---- output settings ----

function mode(name) {
  return document.querySelector(`input[name="${name}"]:checked`).value;
}

function setMode(name, value) {
  document.querySelector(`input[name="${name}"][value="${value}"]`).checked = true;
}

function showModes() {
  for (const field of document.querySelectorAll("[data-mode]")) {
    const size = ["scale", "width"].includes(field.dataset.mode);
    const chosen = size ? mode("size-mode") : mode("rate-mode");
    field.hidden = field.dataset.mode !== chosen;
  }
  const slow = Boolean($("slowmo").value);
  for (const radio of document.querySelectorAll('input[name="slowmo-audio"]')) radio.disabled = !slow;
}

function number(id) {
  const text = $(id).value.trim();
  return text === "" ? NaN : Number(text);
}

function params() {
  const query = new URLSearchParams();
  if (mode("size-mode") === "scale") query.set("scale", $("scale").value);
  else query.set("width", $("width").value);
  if (mode("rate-mode") === "fps") query.set("fps", $("fps").value);
  else query.set("time_factor", $("time-factor").value);
  if ($("slowmo").value) {
    query.set("slowmo", $("slowmo").value);
    query.set("slowmo_audio", mode("slowmo-audio"));
  }
  if ($("model").value) query.set("model", $("model").value);
  query.set("codec", $("codec").value);
  if ($("adapt").value) query.set("adapt", $("adapt").value);
  if ($("crf").value.trim() !== "") query.set("crf", $("crf").value.trim());
  return query;
}

// What the settings make of a video: {width, height, fps, frames, seconds}.
function planFor(info) {
  let width;
  let height;
  if (mode("size-mode") === "scale") {
    const scale = number("scale");
    width = Math.round(info.width * scale);
    height = Math.round(info.height * scale);
  } else {
    width = Math.round(number("width"));
    height = Math.round((info.height * width) / info.width);
  }
  width += width % 2; // the encoder's even sizes, as the server makes them
  height += height % 2;
  const fps = mode("rate-mode") === "fps" ? number("fps") : info.fps * number("time-factor");
  const slowmo = Number($("slowmo").value || 1);
  const seconds = info.duration * slowmo;
  return { width, height, fps, slowmo, seconds, frames: Math.max(1, Math.round(info.duration * fps * slowmo)) };
}

// The settings' problems as [error box id, words a person can act on]; the same bounds as the API's.
function problems() {
  const l = page.limits || { max_scale: 8, max_fps: 1000, max_side: 32768 };
  const found = [];
  const entry = current();
  if (mode("size-mode") === "scale") {
    const scale = number("scale");
    if (!(scale >= 1 && scale <= l.max_scale)) {
      found.push(["scale-error", `Scale must be a number from 1 to ${l.max_scale} (it is ${$("scale").value || "empty"}).`]);
    }
  } else {
    const width = number("width");
    const least = entry ? entry.info.width : 2;
    if (!(Number.isInteger(width) && width >= least && width <= l.max_side)) {
      found.push([
        "width-error",
        entry
          ? `Width must be a whole number from ${least} (the video's own) to ${l.max_side}: vinr only upsamples.`
          : `Width must be a whole number from 2 to ${l.max_side}.`,
      ]);
    }
  }
  if (mode("rate-mode") === "fps") {
    const fps = number("fps");
    if (!(fps > 0 && fps <= l.max_fps)) found.push(["fps-error", `fps must be more than 0 and at most ${l.max_fps}.`]);
  } else {
    const factor = number("time-factor");
    if (!(factor > 0 && factor <= 16)) found.push(["time-factor-error", "The multiple must be more than 0 and at most 16."]);
  }
  const crf = $("crf").value.trim();
  const most = ["h264", "hevc"].includes($("codec").value) ? 51 : 63;
  if (crf !== "" && !(Number.isInteger(Number(crf)) && Number(crf) >= 0 && Number(crf) <= most)) {
    found.push(["crf-error", `Quality for ${$("codec").selectedOptions[0].textContent.split(" ")[0]} is a whole number from 0 to ${most}, or empty for the codec's default.`]);
  }
  if (found.length || !entry || !page.limits) return found;
  const plan = planFor(entry.info);
  const sizeBox = mode("size-mode") === "scale" ? "scale-error" : "width-error";
  const rateBox = $("slowmo").value ? "slowmo-error" : mode("rate-mode") === "fps" ? "fps-error" : "time-factor-error";
  const pixels = plan.width * plan.height;
  if (pixels > l.max_output_pixels) {
    found.push([
      sizeBox,
      `That makes ${plan.width} × ${plan.height} frames (${(pixels / 1e6).toFixed(1)} megapixels); this server ` +
        `makes at most ${(l.max_output_pixels / 1e6).toFixed(1)}. Choose a smaller size.`,
    ]);
  } else if (plan.frames > l.max_output_frames) {
    found.push([
      rateBox,
      `That makes ${plan.frames.toLocaleString("en")} frames; this server makes at most ` +
        `${l.max_output_frames.toLocaleString("en")} a job. Choose a lower rate or less slow motion.`,
    ]);
  } else if (pixels * plan.frames > l.max_output_work) {
    found.push([sizeBox, "That is more work than this server takes in one job. Choose a smaller size or rate."]);
  }
  return found;
}

const ERROR_BOXES = ["scale-error", "width-error", "fps-error", "time-factor-error", "slowmo-error", "crf-error"];

function updatePlan(show = true) {
  showModes();
  const found = problems();
  for (const id of ERROR_BOXES) {
    const message = found.find(([box]) => box === id);
    if (message && show) showError(id, message[1]);
    else if (!message) clearError(id);
  }
  markPresets();
  const plan = $("plan");
  const entry = current();
  plan.classList.toggle("warn", found.length > 0);
  if (found.length) {
    plan.textContent = "Fix the setting marked above to see the output.";
    return found;
  }
  if (!entry) {
    plan.textContent = "Choose a video to see what it becomes.";
    return found;
  }
  const p = planFor(entry.info);
  const slow = p.slowmo > 1 ? ` · slow motion ${p.slowmo}×, ${mode("slowmo-audio") === "keep" ? "sound slowed" : "no sound"}` : "";
  plan.textContent =
    `Output: ${p.width} × ${p.height} at ${round(p.fps, 3)} fps, ${formatSeconds(p.seconds)}, ` +
    `${p.frames.toLocaleString("en")} frames${slow}.`;
  return found;
}

// Check the settings before a request: the first problem is shown in view, and false returned.
function settingsReady() {
  const found = updatePlan(true);
  if (!found.length) return true;
  const control = document.querySelector(`[aria-describedby~="${found[0][0]}"]`);
  $(found[0][0]).scrollIntoView({ block: "center", behavior: "instant" });
  if (control) control.focus({ preventScroll: true });
  return false;
}

const PRESETS = {
  scale2: () => size("scale", 2),
  scale4: () => size("scale", 4),
  to1080: () => toLines(1080),
  to4k: () => toLines(2160),
  fps60: () => rate("fps", 60),
  fps120: () => rate("fps", 120),
  slow2: () => slow(2),
  slow4: () => slow(4),
  slow8: () => slow(8),
};

function size(kind, value) {
  setMode("size-mode", kind);
  $(kind === "scale" ? "scale" : "width").value = value;
}

function toLines(lines) {
  const entry = current();
  if (!entry) {
    showError("scale-error", "Choose a video first: its size sets the width that makes it 1080 or 2160 lines.");
    return;
  }
  const i = entry.info;
  const factor = lines / Math.min(i.width, i.height);
  size("width", 2 * Math.round((i.width * factor) / 2));
}

function rate(kind, value) {
  setMode("rate-mode", kind);
  $(kind === "fps" ? "fps" : "time-factor").value = value;
  $("slowmo").value = "";
}

function slow(k) {
  rate("time_factor", 1);
  $("slowmo").value = String(k);
}

function markPresets() {
  const entry = current();
  const checks = {
    scale2: () => mode("size-mode") === "scale" && number("scale") === 2,
    scale4: () => mode("size-mode") === "scale" && number("scale") === 4,
    to1080: () => entry && mode("size-mode") === "width" && Math.abs(planFor(entry.info).height - 1080) <= 1,
    to4k: () => entry && mode("size-mode") === "width" && Math.abs(planFor(entry.info).height - 2160) <= 1,
    fps60: () => mode("rate-mode") === "fps" && number("fps") === 60 && !$("slowmo").value,
    fps120: () => mode("rate-mode") === "fps" && number("fps") === 120 && !$("slowmo").value,
    slow2: () => $("slowmo").value === "2" && mode("rate-mode") === "time_factor" && number("time-factor") === 1,
    slow4: () => $("slowmo").value === "4" && mode("rate-mode") === "time_factor" && number("time-factor") === 1,
    slow8: () => $("slowmo").value === "8" && mode("rate-mode") === "time_factor" && number("time-factor") === 1,
  };
  for (const chip of document.querySelectorAll("[data-preset]")) {
    chip.setAttribute("aria-pressed", String(Boolean(checks[chip.dataset.preset]())));
  }
}

// ---- preview ----

function hidePreview() {
  $("compare").hidden = true;
  $("after").removeAttribute("src");
  $("before").removeAttribute("src");
  $("preview-caption").textContent = "";
}

async function preview() {
  clearError("preview-error");
  clearError("at-error");
  const entry = current();
  if (!entry) {
    showError("preview-error", page.files.length ? "None of the chosen files is a video this server can read." : "Choose a video first.");
    return;
  }
  if (!settingsReady()) {
    hidePreview(); // the picture no longer shows what the settings make
    return;
  }
  const at = number("at");
  if (!(at >= 0)) {
    showError("at-error", "The second to preview must be 0 or more.");
    return;
  }
  const query = params();
  for (const name of ["codec", "crf", "adapt"]) query.delete(name); // a preview: the served model, one picture
  query.set("at", String(at));
  query.set("compare", "bicubic");
  $("preview-status").textContent = "Rendering…";
  $("preview-button").disabled = true;
  const started = performance.now();
  let shot;
  try {
    shot = await upload(`/preview?${query}`, entry.file);
  } catch (error) {
    hidePreview(); // never leave an earlier preview up as if it were this one
    $("preview-status").textContent = "";
    place(error, "preview-error");
    return;
  } finally {
    $("preview-button").disabled = false;
  }
  $("after").src = shot.image;
  $("before").src = shot.compare;
  $("compare").hidden = false;
  $("preview-status").textContent = `Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`;
  $("preview-caption").textContent =
    `Output frame ${shot.index + 1} of ${shot.frames}, ${shot.width} × ${shot.height}; the input at ` +
    `${shot.time.toFixed(3)} s. Drag across the picture to compare.`;
  setSplit("frame-wipe", Number($("split").value));
}

function setSplit(wipe, percent) {
  $(wipe).style.setProperty("--split", `${percent}%`);
}

// ---- jobs: start, list, cancel, delete ----

function mine() {
  try {
    return new Set(JSON.parse(localStorage.getItem(MINE) || "[]"));
  } catch (_) {
    return new Set();
  }
}

function remember(id) {
  const ids = [...mine(), id].slice(-200);
  localStorage.setItem(MINE, JSON.stringify(ids));
}

async function start() {
  clearError("start-error");
  const ready = page.files.filter((f) => f.info);
  if (!ready.length) {
    showError("start-error", page.files.length ? "None of the chosen files is a video this server can read." : "Choose a video first.");
    return;
  }
  if (!settingsReady()) return;
  const query = params();
  const failures = [];
  let first = null;
  $("start-button").disabled = true;
  try {
    for (const entry of ready) {
      const pending = { key: Math.random(), name: entry.file.name, done: 0 };
      page.uploads.push(pending);
      renderJobs();
      try {
        const job = await upload(`/upsample?${query}`, entry.file, (done) => {
          pending.done = done;
          renderJobs();
        });
        remember(job.id);
        page.sources.set(job.id, entry.file);
        page.jobs.set(job.id, job);
        first = first || job.id;
      } catch (error) {
        failures.push([entry.file.name, error]);
      } finally {
        page.uploads.splice(page.uploads.indexOf(pending), 1);
        renderJobs();
      }
    }
  } finally {
    $("start-button").disabled = false;
  }
  if (failures.length) {
    const [name, error] = failures[0];
    const more = failures.length > 1 ? ` (and ${failures.length - 1} more)` : "";
    place(error, "start-error", ready.length > 1 ? `${name}${more}: ` : "");
  }
  $("start-status").textContent = first ? `Started ${ready.length - failures.length} of ${ready.length}.` : "";
  if (first) watch(first);
  schedule(0);
}

// With keys: the key's newest jobs. Without: this browser's jobs, from the server's newest page, and one
// by one for the few that others' newer jobs pushed off it (those the server no longer has are forgotten).
async function refreshJobs() {
  if (page.limits?.api_key_required && !apiKey()) return;
  const list = await (await api("/jobs?limit=100")).json();
  let shown = list.jobs;
  if (!page.limits?.api_key_required) {
    const ids = mine();
    shown = list.jobs.filter((job) => ids.has(job.id));
    const listed = new Set(list.jobs.map((job) => job.id));
    const missing = [...ids].filter((id) => !listed.has(id)).slice(-MISSING_MOST);
    const gone = [];
    for (const id of missing) {
      try {
        shown.push(await (await api(`/jobs/${id}`)).json());
      } catch (error) {
        if (error.status === 404) gone.push(id);
        else throw error;
      }
    }
    if (gone.length) localStorage.setItem(MINE, JSON.stringify([...ids].filter((id) => !gone.includes(id))));
    shown.sort((a, b) => b.created_at - a.created_at);
  }
  page.jobs = new Map(shown.map((job) => [job.id, job]));
  clearError("jobs-error");
  renderJobs();
}

function schedule(delay) {
  clearTimeout(page.poll);
  page.poll = setTimeout(async () => {
    try {
      await refreshJobs();
    } catch (error) {
      showError("jobs-error", `The job list could not be read: ${error.message}`);
    }
    const active = page.uploads.length || [...page.jobs.values()].some((job) => !done(job));
    schedule(active ? POLL_ACTIVE_MS : POLL_IDLE_MS);
  }, delay);
}

function done(job) {
  return ["finished", "failed", "canceled"].includes(job.state);
}

function percentOf(job) {
  const p = job.progress || {};
  if (job.state === "finished") return 100;
  if (p.stage === "adapting") return 100 * (p.adapt?.done || 0);
  return p.frames_total ? Math.min(100, (100 * p.frames_done) / p.frames_total) : 0;
}

function describeJob(job) {
  const parts = [];
  const o = job.output;
  if (o) parts.push(`${o.width} × ${o.height}`, `${round(o.fps, 3)} fps`);
  const params = job.params || {};
  if (params.slowmo > 1) parts.push(`slow motion ${params.slowmo}×`);
  if (params.model) parts.push(params.model);
  const adapted = job.progress?.stage !== "adapting" ? job.progress?.adapt : null;
  if (adapted && "used" in adapted) {
    parts.push(adapted.used
      ? `learned the video: ${adapted.gain_db >= 0 ? "+" : ""}${adapted.gain_db.toFixed(2)} dB on held-out parts`
      : adapted.refused
        ? `not learned: ${adapted.refused}`
        : "learning did not help: the model as it is");
  } else if (params.adapt) {
    parts.push(`learns the video for ${formatSeconds(params.adapt)}`);
  }
  return parts.join(" · ");
}

function statsOf(job) {
  const p = job.progress || {};
  const percent = Math.round(percentOf(job));
  const now = Date.now() / 1000;
  const elapsed = (job.ended_at || now) - job.created_at;
  const frames = p.frames_total ? `${p.frames_done} of ${p.frames_total} frames` : "";
  switch (job.state) {
    case "queued":
      return [
        job.queue_position ? `Waiting, ${ordinal(job.queue_position)} in line` : "Waiting for a worker",
        `${formatSeconds(elapsed)} so far`,
      ].join(" · ");
    case "started":
      if (p.stage === "adapting") {
        const a = p.adapt || {};
        return [
          `Learning the video: ${Math.round(100 * (a.done || 0))} % of ${formatSeconds(a.budget_s)}`,
          `${a.steps || 0} steps`,
          `${formatSeconds(elapsed)} elapsed`,
        ].join(" · ");
      }
      return [
        `${percent} %`,
        frames,
        p.fps ? `${p.fps.toFixed(1)} frames/s` : "",
        `${formatSeconds(elapsed)} elapsed`,
        p.eta_s != null ? `about ${formatSeconds(p.eta_s)} left` : "",
      ].filter(Boolean).join(" · ");
    case "finished":
      return `Done in ${formatSeconds(elapsed)}${frames ? " · " + frames : ""}`;
    case "canceled":
      return `Canceled at ${percent} % after ${formatSeconds(elapsed)}`;
    default:
      return `Failed after ${formatSeconds(elapsed)}`;
  }
}

const STATE_WORDS = { queued: "queued", started: "running", finished: "done", failed: "failed", canceled: "canceled" };

function button(text, action, label) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (label) b.setAttribute("aria-label", label);
  b.addEventListener("click", guarded(action, "jobs-error"));
  return b;
}

// The list is updated in place: an item is rebuilt only when its job changes state, so a button under the
// pointer or the keyboard's focus is never swapped for a copy between two refreshes.
function renderJobs() {
  const list = $("jobs");
  const old = new Map([...list.children].map((item) => [item.dataset.key, item]));
  const items = [];
  for (const pending of page.uploads) {
    const key = `upload-${pending.key}`;
    const item = old.get(key) || uploadItem(key, pending.name);
    item.querySelector(".bar-fill").style.width = `${Math.round(pending.done * 100)}%`;
    item.querySelector(".job-stats").textContent = `Uploading · ${Math.round(pending.done * 100)} %`;
    items.push(item);
  }
  for (const job of page.jobs.values()) {
    const kept = old.get(`job-${job.id}`);
    const item = kept && kept.dataset.state === job.state ? kept : jobItem(job);
    fillJob(item, job);
    items.push(item);
  }
  const same = items.length === list.children.length && items.every((item, i) => list.children[i] === item);
  if (!same) {
    const focused = document.activeElement?.dataset?.action;
    list.replaceChildren(...items);
    if (focused) list.querySelector(`[data-action="${focused}"]`)?.focus();
  }
  $("jobs-empty").hidden = items.length > 0;
}

function uploadItem(key, name) {
  const item = document.createElement("li");
  item.className = "job";
  item.dataset.key = key;
  item.innerHTML =
    '<div class="job-head"><span class="job-name"></span><span class="badge uploading">uploading</span></div>' +
    '<div class="bar-track"><div class="bar-fill"></div></div><div class="job-stats"></div>';
  item.querySelector(".job-name").textContent = name;
  return item;
}

// A job's item and its buttons, which depend on its state only (fillJob writes what changes).
function jobItem(job) {
  const item = document.createElement("li");
  item.className = "job";
  item.dataset.key = `job-${job.id}`;
  item.dataset.id = job.id;
  item.dataset.state = job.state;
  item.innerHTML =
    '<div class="job-head"><span class="job-name"></span><span class="badge"></span></div>' +
    '<div class="job-what"></div>' +
    '<div class="bar-track" role="progressbar" aria-valuemin="0" aria-valuemax="100"><div class="bar-fill"></div></div>' +
    '<div class="job-stats"></div><div class="job-error"></div><div class="job-actions"></div>';
  const name = job.name || job.id;
  const badge = item.querySelector(".badge");
  badge.textContent = STATE_WORDS[job.state] || job.state;
  badge.classList.add(job.state);
  const actions = item.querySelector(".job-actions");
  if (job.state === "started" || job.state === "finished") {
    const w = button("Watch", () => watch(job.id), `Watch ${name}`);
    w.dataset.action = `watch-${job.id}`;
    actions.append(w);
  }
  if (job.state === "finished") {
    const d = button("Download", () => download(job.id), `Download ${name}`);
    d.dataset.action = `download-${job.id}`;
    actions.append(d);
  }
  const ending = done(job)
    ? button("Delete", () => remove(page.jobs.get(job.id) || job), `Delete ${name}`)
    : button("Cancel", () => cancel(job.id), `Cancel ${name}`);
  ending.dataset.action = `end-${job.id}`;
  actions.append(ending);
  return item;
}

function fillJob(item, job) {
  const name = job.name || job.id;
  item.querySelector(".job-name").textContent = name;
  item.querySelector(".job-what").textContent = describeJob(job);
  const percent = percentOf(job);
  const track = item.querySelector(".bar-track");
  track.setAttribute("aria-valuenow", String(Math.round(percent)));
  track.setAttribute("aria-label", `${name}: ${Math.round(percent)} %`);
  item.querySelector(".bar-fill").style.width = `${percent}%`;
  item.querySelector(".job-stats").textContent = statsOf(job);
  const error = item.querySelector(".job-error");
  error.textContent = job.error && job.state !== "canceled" ? job.error : "";
  error.hidden = !error.textContent;
}

async function cancel(id) {
  const job = await (await api(`/jobs/${id}/cancel`, { method: "POST" })).json();
  page.jobs.set(id, job);
  if (page.watching?.id === id) stopWatching(true);
  renderJobs();
}

function confirmDelete(job) {
  const dialog = $("confirm");
  $("confirm-text").textContent =
    `${job.name || job.id}: its record${job.state === "finished" ? " and its video" : ""} will be deleted from the server.`;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "delete"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

async function remove(job) {
  if (!(await confirmDelete(job))) return;
  await api(`/jobs/${job.id}`, { method: "DELETE" });
  page.jobs.delete(job.id);
  page.sources.delete(job.id);
  if (page.watching?.id === job.id) stopWatching(true);
  renderJobs();
}

function savedName(response, id) {
  // the server names a finished result after the upload and what was made of it (Content-Disposition)
  const header = response.headers.get("Content-Disposition") || "";
  const match = header.match(/filename="?([^";]+)"?/);
  return match ? match[1] : `${id}.mp4`;
}

async function download(id) {
  const response = await api(`/jobs/${id}/result`);
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = savedName(response, id);
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
}

// ---- the video wipe: the result as it is made, the input beside it, in sync ----

function stopWatching(hide) {
  const w = page.watching;
  if (w) {
    w.control.abort();
    cancelAnimationFrame(w.frame);
    for (const url of w.urls) URL.revokeObjectURL(url);
  }
  page.watching = null;
  const result = $("result");
  const source = $("source");
  for (const video of [result, source]) {
    video.pause();
    video.removeAttribute("src");
    video.load();
  }
  if (hide) $("player").hidden = true;
}

function watch(id) {
  stopWatching(false);
  const job = page.jobs.get(id);
  const control = new AbortController();
  const w = { id, control, urls: [], frame: 0, slowmo: Number(job?.params?.slowmo || 1) };
  page.watching = w;
  $("player").hidden = false;
  showInput(w, page.sources.get(id) || null, job);
  if (!page.sources.has(id)) {
    uploaded(id, control.signal)
      .then((file) => page.watching === w && file && showInput(w, file, job))
      .catch(() => {}); // the result plays alone
  }
  setSplit("video-wipe", Number($("video-split").value));
  follow(w).catch((error) => {
    if (error.name !== "AbortError") place(error, "start-error");
  });
  const tick = () => {
    sync(w);
    w.frame = requestAnimationFrame(tick);
  };
  w.frame = requestAnimationFrame(tick);
  $("player").scrollIntoView({ block: "nearest", behavior: "instant" });
}

// The wipe's input: the file chosen in this tab, or the job's upload read back from the server.
function showInput(w, file, job) {
  const wipe = $("video-wipe");
  for (const part of wipe.querySelectorAll(".before, .wipe-label, .divider, .wipe-range")) part.hidden = !file;
  if (file) {
    const url = URL.createObjectURL(file);
    w.urls.push(url);
    $("source").src = url;
  }
  const name = job?.name || w.id;
  $("player-caption").textContent = file
    ? `${name}: drag across the video to compare the input (left, scaled to the output size with the ` +
      "browser's high-quality smoothing) with vinr's result (right)."
    : `${name}: the result as it is made.`;
}

// The job's upload from the server (GET /jobs/ID/input), unless it is too large to hold in the page.
async function uploaded(id, signal) {
  const response = await api(`/jobs/${id}/input`, { signal });
  if (Number(response.headers.get("Content-Length") || 0) > LIVE_LIMIT) {
    response.body?.cancel();
    return null;
  }
  return response.blob();
}

// Keep the input at the result's time (slow motion: the result runs `slowmo` times longer).
function sync(w) {
  const result = $("result");
  const source = $("source");
  if (!source.src) return;
  const target = result.currentTime / w.slowmo;
  const rateWanted = result.playbackRate / w.slowmo;
  if (source.playbackRate !== rateWanted) source.playbackRate = rateWanted;
  if (Number.isFinite(source.duration) && Math.abs(source.currentTime - target) > 0.12) {
    source.currentTime = Math.min(target, source.duration);
  }
  if (result.paused !== source.paused) {
    if (result.paused) source.pause();
    else source.play().catch(() => {});
  }
  draw(w, source, result);
  $("seek").max = String(result.duration || 0);
  if (document.activeElement !== $("seek")) $("seek").value = String(result.currentTime);
  $("clock").textContent = `${clock(result.currentTime)} / ${clock(result.duration)}`;
  $("play").textContent = result.paused ? "Play" : "Pause";
}

// The input's current frame at the result's size (the wipe's "before"), redrawn when either changes.
function draw(w, source, result) {
  const canvas = $("source-canvas");
  const width = result.videoWidth;
  const height = result.videoHeight;
  if (!width || source.readyState < 2) return;
  const key = `${width}x${height}@${source.currentTime}`;
  if (w.drawn === key) return;
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = true;
  context.imageSmoothingQuality = "high";
  context.drawImage(source, 0, 0, width, height);
  w.drawn = key;
}

// The growing result: what has arrived plays while the rest is being made.
async function follow(w) {
  const response = await api(`/jobs/${w.id}/result`, { signal: w.control.signal });
  const reader = response.body.getReader();
  const chunks = [];
  let bytes = 0;
  let shown = 0;
  let last = 0;
  const video = $("result");
  const refresh = () => {
    if (bytes === shown || page.watching !== w) return;
    const time = video.currentTime;
    const playing = !video.paused;
    const url = URL.createObjectURL(new Blob(chunks, { type: "video/mp4" }));
    w.urls.push(url);
    video.src = url;
    video.addEventListener(
      "loadedmetadata",
      () => {
        video.currentTime = Math.min(time, video.duration || time);
        if (playing) video.play().catch(() => {});
      },
      { once: true },
    );
    shown = bytes;
  };
  for (;;) {
    const { value, done: finished } = await reader.read();
    if (finished) break;
    bytes += value.length;
    if (bytes > LIVE_LIMIT) {
      reader.cancel();
      return; // too large to keep in the page: download it when it is finished
    }
    chunks.push(value);
    if (performance.now() - last > LIVE_REFRESH_MS) {
      last = performance.now();
      refresh();
    }
  }
  refresh();
}

function playPause() {
  const result = $("result");
  if (result.paused) result.play().catch(() => {});
  else result.pause();
}

// ---- wiring ----

function wireWipe(wipe, range) {
  const update = () => setSplit(wipe, Number($(range).value));
  $(range).addEventListener("input", update);
  update();
}

function wire() {
  $("file").addEventListener("change", guarded(async () => {
    await addFiles($("file").files);
    $("file").value = "";
  }, "file-error"));
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", guarded(async (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    await addFiles(event.dataTransfer.files);
  }, "file-error"));
  $("options").addEventListener("input", (event) => {
    if (event.target.id === "model") describeModel();
    updatePlan();
  });
  $("options").addEventListener("change", () => updatePlan());
  $("options").addEventListener("submit", (event) => event.preventDefault());
  for (const chip of document.querySelectorAll("[data-preset]")) {
    chip.addEventListener("click", () => {
      PRESETS[chip.dataset.preset]();
      updatePlan();
    });
  }
  $("preview-button").addEventListener("click", guarded(preview, "preview-error"));
  $("start-button").addEventListener("click", guarded(start, "start-error"));
  $("theme").addEventListener("click", toggleTheme);
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", showTheme);
  wireWipe("frame-wipe", "split");
  wireWipe("video-wipe", "video-split");
  $("play").addEventListener("click", playPause);
  $("seek").addEventListener("input", () => {
    $("result").currentTime = Number($("seek").value);
  });
  $("key-form").addEventListener("submit", guarded(async (event) => {
    event.preventDefault();
    clearError("key-error");
    sessionStorage.setItem("vinr-key", $("api-key").value.trim());
    try {
      await refreshJobs();
    } catch (error) {
      sessionStorage.removeItem("vinr-key");
      showError("key-error", error.status === 401 ? "That key was not accepted. Check it and try again." : error.message);
      return;
    }
    $("key-section").hidden = true;
    schedule(POLL_IDLE_MS);
  }, "key-error"));
  showTheme();
  updatePlan(false);
  renderJobs();
}

wire();
(async () => {
  try {
    await loadLimits();
  } catch (error) {
    showError("file-error", `The server's limits could not be read: ${error.message || error}`);
  }
  schedule(0);
})();
