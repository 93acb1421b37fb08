// vinr's page: probe, preview, start, follow, download and list jobs through the HTTP API.
// No framework and no build step. Every API error's `detail` is shown to the person as it is.
"use strict";

const $ = (id) => document.getElementById(id);
const LIVE_LIMIT = 256 * 1024 * 1024; // bytes of a growing result kept in memory for live playback
const LIVE_REFRESH_MS = 2000; // how often the live player takes in what has arrived

const page = { file: null, info: null, limits: null, job: null, follow: null };

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function apiKey() {
  return sessionStorage.getItem("vinr-key") || "";
}

function withKey(headers = {}) {
  const key = apiKey();
  return key ? { ...headers, "X-API-Key": key } : headers;
}

function showMessage(text) {
  const box = $("message");
  box.textContent = text;
  box.hidden = !text;
}

function detailOf(status, text) {
  try {
    const body = JSON.parse(text);
    if (body && typeof body.detail === "string") return body.detail;
  } catch (_) {
    // not JSON: fall through
  }
  return `HTTP ${status}${text ? ": " + text.slice(0, 200) : ""}`;
}

function failed(status) {
  if (status === 401) $("key-section").hidden = false;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: withKey(options.headers || {}) });
  if (!response.ok) {
    failed(response.status);
    throw new ApiError(detailOf(response.status, await response.text()), response.status);
  }
  return response;
}

// POST a file as the raw body (XHR, for upload progress); resolves with the parsed JSON answer.
function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    const headers = { "Content-Type": "application/octet-stream", "X-Filename": encodeURIComponent(file.name || "") };
    for (const [name, value] of Object.entries(withKey(headers))) {
      xhr.setRequestHeader(name, value);
    }
    xhr.upload.onprogress = (event) => {
      if (onProgress && event.lengthComputable) onProgress(event.loaded / event.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        try {
          resolve(JSON.parse(xhr.responseText));
        } catch (error) {
          reject(new ApiError(`unexpected answer from ${path}`, xhr.status));
        }
      } else {
        failed(xhr.status);
        reject(new ApiError(detailOf(xhr.status, xhr.responseText), xhr.status));
      }
    };
    xhr.onerror = () => reject(new ApiError(`the server did not answer ${path}`, 0));
    xhr.send(file);
  });
}

function guarded(task) {
  return async (...args) => {
    try {
      await task(...args);
    } catch (error) {
      showMessage(error.message || String(error));
    }
  };
}

// ---- limits and key ----

async function loadLimits() {
  page.limits = await (await fetch("/limits")).json();
  const l = page.limits;
  $("scale").max = l.max_scale;
  $("fps").max = l.max_fps;
  $("limits").textContent =
    `This server takes videos up to ${formatBytes(l.max_upload_bytes)} and ${formatSeconds(l.max_input_seconds)}; ` +
    `scale 1 to ${l.max_scale}, at most ${l.max_fps} fps, ` +
    `output frames up to ${(l.max_output_pixels / 1e6).toFixed(1)} megapixels and ${l.max_output_frames} frames.`;
  const models = $("model");
  models.replaceChildren();
  for (const name of l.models) {
    const option = new Option(name, name, name === l.default_model, name === l.default_model);
    models.append(option);
  }
  if (l.api_key_required && !apiKey()) $("key-section").hidden = false;
}

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
  if (seconds == null) return "?";
  if (seconds < 90) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${round(seconds / 3600, 1)} h`;
}

// ---- the video ----

async function chooseFile(file) {
  if (!file) return;
  showMessage("");
  page.file = file;
  page.info = null;
  $("info").hidden = true;
  setBusy(true);
  try {
    page.info = await upload("/probe", file);
  } finally {
    setBusy(false);
  }
  const i = page.info;
  const rows = [
    ["File", file.name],
    ["Size", `${i.width} × ${i.height}`],
    ["Frame rate", `${round(i.fps, 3)} fps`],
    ["Duration", formatSeconds(i.duration)],
    ["Video", `${i.codec}, ${i.pix_fmt}`],
    ["Audio", i.audio.length ? i.audio.join(", ") : "none"],
  ];
  const list = $("info");
  list.replaceChildren();
  for (const [name, value] of rows) {
    const term = document.createElement("dt");
    term.textContent = name;
    const text = document.createElement("dd");
    text.textContent = value;
    list.append(term, text);
  }
  list.hidden = false;
  $("at").max = i.duration.toFixed(2);
  $("width").value = 2 * Math.round(i.width);
  updatePlan();
}

function round(value, digits) {
  return Number(value.toFixed(digits));
}

// ---- output options ----

function mode(name) {
  return document.querySelector(`input[name="${name}"]:checked`).value;
}

function params() {
  const query = new URLSearchParams();
  if (mode("size-mode") === "scale") query.set("scale", $("scale").value);
  else query.set("width", $("width").value);
  if (mode("rate-mode") === "fps") query.set("fps", $("fps").value);
  else query.set("time_factor", $("time-factor").value);
  if ($("model").value) query.set("model", $("model").value);
  return query;
}

function plannedOutput() {
  const i = page.info;
  if (!i) return null;
  let width;
  let height;
  if (mode("size-mode") === "scale") {
    const scale = Number($("scale").value);
    width = Math.round(i.width * scale);
    height = Math.round(i.height * scale);
  } else {
    width = Number($("width").value);
    height = Math.round((i.height * width) / i.width);
  }
  const fps = mode("rate-mode") === "fps" ? Number($("fps").value) : i.fps * Number($("time-factor").value);
  return { width, height, fps, frames: Math.max(1, Math.round(i.duration * fps)) };
}

function updatePlan() {
  $("scale").disabled = mode("size-mode") !== "scale";
  $("width").disabled = mode("size-mode") === "scale";
  $("time-factor").disabled = mode("rate-mode") === "fps";
  $("fps").disabled = mode("rate-mode") !== "fps";
  const plan = plannedOutput();
  if (!plan) {
    $("plan").textContent = "Choose a video to see the output it makes.";
    return;
  }
  $("plan").textContent =
    `Output: about ${plan.width} × ${plan.height} at ${round(plan.fps, 3)} fps, ${plan.frames} frames ` +
    `(${((plan.width * plan.height * plan.frames) / 1e6).toFixed(0)} megapixels in all).`;
}

// ---- preview ----

async function preview() {
  showMessage("");
  const query = params();
  query.set("at", $("at").value || "0");
  query.set("compare", "bicubic");
  $("preview-status").textContent = "Rendering…";
  const started = performance.now();
  setBusy(true);
  let shot;
  try {
    shot = await upload(`/preview?${query}`, page.file);
  } catch (error) {
    $("preview-status").textContent = "";
    throw error;
  } finally {
    setBusy(false);
  }
  $("after").src = shot.image;
  $("before").src = shot.compare;
  $("compare").hidden = false;
  $("preview-status").textContent = `Done in ${((performance.now() - started) / 1000).toFixed(1)} s.`;
  $("preview-caption").textContent =
    `Output frame ${shot.index + 1} of ${shot.frames} at ${shot.time.toFixed(3)} s, ${shot.width} × ${shot.height}.`;
  split();
}

function split() {
  const value = Number($("split").value);
  $("before").style.clipPath = `inset(0 ${100 - value}% 0 0)`;
  $("divider").style.left = `${value}%`;
}

// ---- the job ----

async function start() {
  showMessage("");
  stopFollowing();
  $("download").hidden = true;
  $("live").hidden = true;
  $("progress").value = 0;
  $("job-status").textContent = "Uploading…";
  setBusy(true);
  let job;
  try {
    job = await upload(`/upsample?${params()}`, page.file, (done) => {
      $("job-status").textContent = `Uploading… ${Math.round(done * 100)} %`;
    });
  } catch (error) {
    $("job-status").textContent = "";
    throw error;
  } finally {
    setBusy(false);
  }
  page.job = job;
  $("cancel-button").disabled = false;
  showJob(job);
  follow(job.id);
  refreshJobs().catch((error) => showMessage(error.message));
}

function showJob(job) {
  const p = job.progress || {};
  const total = p.frames_total || 0;
  const percent = job.state === "finished" ? 100 : total ? Math.min(100, (100 * p.frames_done) / total) : 0;
  $("progress").value = percent;
  const parts = [`${job.state}`, `${Math.round(percent)} %`];
  if (total) parts.push(`${p.frames_done} of ${total} frames`);
  if (p.fps) parts.push(`${p.fps.toFixed(1)} frames/s`);
  if (p.eta_s != null && job.state === "started") parts.push(`about ${formatSeconds(p.eta_s)} left`);
  $("job-status").textContent = parts.join(" · ") + (job.error ? ` — ${job.error}` : "");
}

function stopFollowing() {
  if (page.follow) page.follow.abort();
  page.follow = null;
}

function follow(id) {
  const control = new AbortController();
  page.follow = control;
  watchEvents(id, control.signal).catch((error) => {
    if (error.name !== "AbortError") showMessage(error.message);
  });
  playLive(id, control.signal).catch((error) => {
    if (error.name !== "AbortError") $("live").hidden = true;
  });
}

// Server-Sent Events through fetch (EventSource cannot send the API key header).
async function watchEvents(id, signal) {
  const response = await api(`/jobs/${id}/events`, { signal });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length) continue;
      const body = JSON.parse(data.join("\n"));
      if (event === "progress") showJob(body);
      else if (event === "unavailable") $("job-status").textContent = body.detail;
      else if (event === "end") await ended(id, body.state);
    }
  }
}

async function ended(id, state) {
  $("cancel-button").disabled = true;
  const job = await (await api(`/jobs/${id}`)).json();
  showJob(job);
  if (state === "finished") await offerDownload(id);
  refreshJobs().catch((error) => showMessage(error.message));
}

// The growing result: what has arrived plays in the <video> while the rest is being made.
async function playLive(id, signal) {
  const response = await api(`/jobs/${id}/result`, { signal });
  const reader = response.body.getReader();
  const chunks = [];
  let bytes = 0;
  let shown = 0;
  let last = 0;
  const video = $("live");
  const refresh = () => {
    if (bytes === shown) return;
    const time = video.currentTime;
    const playing = !video.paused;
    const old = video.src;
    video.src = URL.createObjectURL(new Blob(chunks, { type: "video/mp4" }));
    video.hidden = false;
    video.addEventListener(
      "loadedmetadata",
      () => {
        video.currentTime = Math.min(time, video.duration || time);
        if (playing) video.play().catch(() => {});
      },
      { once: true },
    );
    if (old) URL.revokeObjectURL(old);
    shown = bytes;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
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

function savedName(response, id) {
  // the server names a finished result after the upload and what was made of it (Content-Disposition)
  const header = response.headers.get("Content-Disposition") || "";
  const match = header.match(/filename="?([^";]+)"?/);
  return match ? match[1] : `${id}.mp4`;
}

async function offerDownload(id) {
  const response = await api(`/jobs/${id}/result`);
  const blob = await response.blob();
  const link = $("download");
  if (link.href) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(blob);
  link.download = savedName(response, id);
  link.textContent = `Download (${formatBytes(blob.size)})`;
  link.hidden = false;
}

async function cancel() {
  if (!page.job) return;
  stopFollowing();
  await api(`/jobs/${page.job.id}`, { method: "DELETE" });
  $("cancel-button").disabled = true;
  $("job-status").textContent = "canceled; its files are deleted";
  refreshJobs().catch((error) => showMessage(error.message));
}

// ---- the job list ----

async function refreshJobs() {
  const list = await (await api("/jobs?limit=20")).json();
  const body = $("jobs").querySelector("tbody");
  body.replaceChildren();
  for (const job of list.jobs) {
    const row = document.createElement("tr");
    const p = job.progress || {};
    const percent = job.state === "finished" ? 100 : p.frames_total ? (100 * p.frames_done) / p.frames_total : 0;
    const what = Object.entries(job.params || {})
      .filter(([, value]) => value != null)
      .map(([name, value]) => `${name} ${value}`)
      .join(", ");
    for (const text of [new Date(job.created_at * 1000).toLocaleString(), job.state, `${Math.round(percent)} %`, what]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    const actions = document.createElement("td");
    if (job.state === "finished") {
      const get = document.createElement("button");
      get.type = "button";
      get.textContent = "Download";
      get.addEventListener("click", guarded(() => download(job.id)));
      actions.append(get);
    }
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = job.state === "finished" || job.state === "failed" || job.state === "canceled" ? "Delete" : "Cancel";
    remove.addEventListener(
      "click",
      guarded(async () => {
        await api(`/jobs/${job.id}`, { method: "DELETE" });
        await refreshJobs();
      }),
    );
    actions.append(remove);
    row.append(actions);
    body.append(row);
  }
  $("jobs-empty").hidden = list.jobs.length > 0;
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

// ---- wiring ----

function setBusy(busy) {
  const ready = Boolean(page.info) && !busy;
  $("preview-button").disabled = !ready;
  $("start-button").disabled = !ready;
  $("file").disabled = busy;
}

function wire() {
  $("file").addEventListener("change", guarded(() => chooseFile($("file").files[0])));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener(
    "drop",
    guarded(async (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      await chooseFile(event.dataTransfer.files[0]);
    }),
  );
  $("options").addEventListener("input", updatePlan);
  $("options").addEventListener("submit", (event) => event.preventDefault());
  $("preview-button").addEventListener("click", guarded(preview));
  $("start-button").addEventListener("click", guarded(start));
  $("cancel-button").addEventListener("click", guarded(cancel));
  $("refresh-jobs").addEventListener("click", guarded(refreshJobs));
  $("split").addEventListener("input", split);
  $("key-form").addEventListener(
    "submit",
    guarded(async (event) => {
      event.preventDefault();
      sessionStorage.setItem("vinr-key", $("api-key").value.trim());
      showMessage("");
      await refreshJobs();
      $("key-section").hidden = true;
    }),
  );
  updatePlan();
}

wire();
guarded(async () => {
  await loadLimits();
  if (!page.limits.api_key_required || apiKey()) await refreshJobs();
})();
