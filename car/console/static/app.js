// The car console page: status, live view with command overlay, drive (joystick, keyboard,
// gamepad over the teleop WebSocket), model upload and selection, calibration wizard.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.getElementById(id);
const SEND_MS = 50;
const WIZARD_REFRESH_MS = 100;
// A car that does not answer within this is gone (a dropped Wi-Fi never refuses: requests just hang).
const ANSWER_MS = 2000;
let status = null;
let offline = false;
let missed = 0;  // status polls in a row without an answer
let arriving = true;  // until the first status: what the page finds when it opens

async function api(method, path, body) {
  const init = { method, headers: { "X-CSRFToken": csrf, "Accept": "application/json" } };
  if (method === "GET") init.signal = AbortSignal.timeout(ANSWER_MS);
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) location.assign("/login");
  const data = await response.json().catch(() => ({}));
  if (!response.ok || data.success === false) throw new Error(data.reason || `HTTP ${response.status}`);
  return data;
}

function say(id, text, error = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", error);
}

function fmt(value, digits, unit = "") {
  return value === null || value === undefined ? "–" : `${Number(value).toFixed(digits)}${unit}`;
}

// Status and live view

function drawOverlay(command) {
  const canvas = $("overlay");
  const ctx = canvas.getContext("2d");
  const { width: w, height: h } = canvas;
  ctx.clearRect(0, 0, w, h);
  const angle = command.steering * Math.PI / 3;
  const length = 30 + Math.abs(command.throttle) * (h * 0.45);
  const sign = command.throttle < 0 ? -1 : 1;
  ctx.lineWidth = 6;
  ctx.lineCap = "round";
  ctx.strokeStyle = command.throttle < 0 ? "#ff6d60" : command.throttle > 0 ? "#5bea8a" : "#9aa0a6";
  ctx.beginPath();
  ctx.moveTo(w / 2, h - 12);
  ctx.lineTo(w / 2 - Math.sin(angle) * length, h - 12 - sign * Math.cos(angle) * length);
  ctx.stroke();
  ctx.font = "14px system-ui, sans-serif";
  ctx.fillStyle = "rgba(0,0,0,.55)";
  ctx.fillRect(6, 6, 170, 22);
  ctx.fillStyle = "#fff";
  ctx.fillText(`steer ${command.steering.toFixed(2)}  thr ${command.throttle.toFixed(2)}`, 12, 22);
}

// The car's idle reasons in the words of someone holding the controls.
const REASONS = {
  "idle: waiting for teleop": "ready: drive with the joystick, keys or a gamepad",
  "stopped": "stopped: press Start to drive",
  "waiting for the policy": "starting the model…",
};

// As `racer status` says it: start/stop is autonomous mode's; manual drives while teleop does.
function modeText(s) {
  if (s.mode === "autonomous") return `autonomous (${s.running ? "running" : "stopped"})`;
  if (s.mode === "manual") return `manual (${s.driven_by === "teleop" ? "driven by teleop" : "waiting for teleop"})`;
  return s.mode;
}

function showStatus(s) {
  status = s;
  const loading = s.loading.isModelLoading === "loading" ? ` · ${s.loading.job} ${s.loading.progress}%` : "";
  const estop = s.emergency_stop ? " · EMERGENCY STOP (Start releases)"
    : s.start_needed ? ` · STOPPED: ${s.latched} (Start${s.mode === "manual" ? ", or let go of the throttle," : ""} to drive again)`
    : "";
  const reason = s.start_needed ? "" : ` · ${REASONS[s.reason] || s.reason}`;
  // the mode has its own row below (and its buttons): the header says what is happening
  $("status-line").textContent = `${s.model} · ${fmt(s.fps, 1)} fps${estop}${reason}${loading}`;
  $("status-line").classList.toggle("alarm", s.emergency_stop || s.start_needed);
  $("t-mode").textContent = modeText(s);
  $("t-model").textContent = s.model;
  $("t-fps").textContent = fmt(s.fps, 1);
  $("t-latency").textContent = fmt(s.latency_ms, 1, " ms");
  $("t-battery").textContent = fmt(s.battery_level, 0);
  $("t-watchdog").textContent = s.watchdog || "–";
  $("t-command").textContent = `${s.command.steering.toFixed(2)} / ${s.command.throttle.toFixed(2)}`;
  $("t-shift").textContent = fmt(s.domain_shift, 2);
  $("t-uncertainty").textContent = fmt(s.uncertainty, 3);
  $("t-warning").textContent = fmt(s.warning, 2);
  $("t-caution").textContent = s.caution || "–";
  $("estop").classList.toggle("latched", s.emergency_stop);
  $("estop").textContent = s.emergency_stop ? "STOPPED" : "STOP";
  $("mode-auto").classList.toggle("active", s.mode === "autonomous");
  $("mode-manual").classList.toggle("active", s.mode === "manual");
  $("start").classList.toggle("active", s.running && s.mode === "autonomous");
  $("start").classList.toggle("attention", s.start_needed);
  if (document.activeElement !== $("max-speed")) {
    $("max-speed").value = Math.round(s.max_speed * 100);
    $("max-speed-value").textContent = `${Math.round(s.max_speed * 100)}%`;
  }
  if (!$("wizard").hidden && s.mode !== "calibration") {
    $("wizard").hidden = true;
    $("calib-start").disabled = false;
    say("calib-message", "calibration mode ended; steps not saved yet were dropped");
  } else if (arriving && s.mode === "calibration" && !wizard.opening) {
    // Only what the page finds on arrival: later, calibration mode is this page's own wizard (or another's).
    openWizard("the car is still in calibration mode from an earlier visit: carry on, or Cancel to leave it");
  }
  arriving = false;
  drawOverlay(s.command);
}

// A car that stops answering: say so where the state was, blank what is no longer known, and make the
// controls inert until it answers again.
function setOffline(reason) {
  $("offline-reason").textContent = reason;
  if (offline) return;
  offline = true;
  status = null;
  document.body.classList.add("lost");
  $("status-line").classList.remove("alarm");
  $("offline").hidden = false;
  document.querySelector("main").inert = true;
  $("status-line").textContent = "CONNECTION LOST";
  for (const dd of document.querySelectorAll(".telemetry dd")) dd.textContent = "–";
  for (const el of document.querySelectorAll("main .active, main .attention")) el.classList.remove("active", "attention");
  $("estop").classList.remove("latched");
  $("estop").textContent = "STOP";
  $("overlay").getContext("2d").clearRect(0, 0, $("overlay").width, $("overlay").height);
  input.keys.clear();
  releaseStick();
}

function setOnline() {
  if (!offline) return;
  offline = false;
  document.body.classList.remove("lost");
  $("offline").hidden = true;
  document.querySelector("main").inert = false;
  $("camera").src = `/api/camera.mjpg?t=${Date.now()}`;  // the old stream ended with the connection
}

async function pollStatus() {
  try {
    const s = await api("GET", "/api/status");
    missed = 0;
    setOnline();
    showStatus(s);
  } catch (error) {
    // fetch's own errors (refused, unreachable) are TypeErrors; an error answer carries its reason.
    // Two misses in a row: one slow answer from a busy car is not a lost car.
    missed += 1;
    if (missed >= 2) {
      setOffline(error.name === "TimeoutError" ? `no answer for ${ANSWER_MS / 1000} s`
        : error.name === "TypeError" ? "cannot reach it" : error.message);
    }
  }
  setTimeout(pollStatus, 300);
}

// Drive

async function act(promise) {
  try {
    await promise;
    say("drive-message", "");
  } catch (error) {
    say("drive-message", error.message, true);
  }
}

$("estop").addEventListener("click", () => act(api("POST", "/api/emergency_stop")));
$("logout").addEventListener("click", async () => {
  try { await api("POST", "/logout"); } catch (error) { /* the session ends with the page either way */ }
  location.assign("/login");
});
for (const id of ["mode-auto", "mode-manual"]) {
  $(id).addEventListener("click", () => act(api("POST", "/api/drive_mode", { drive_mode: $(id).dataset.mode })));
}
$("start").addEventListener("click", () => act(api("POST", "/api/start_stop", { start_stop: "start" })));
$("stop").addEventListener("click", () => act(api("POST", "/api/start_stop", { start_stop: "stop" })));
$("max-speed").addEventListener("input", () => { $("max-speed-value").textContent = `${$("max-speed").value}%`; });
$("max-speed").addEventListener("change", () =>
  act(api("POST", "/api/max_nav_throttle", { throttle: Number($("max-speed").value) })));

const input = { keys: new Set(), joystick: null, gamepad: null };
const KEYS = { ArrowUp: "up", KeyW: "up", ArrowDown: "down", KeyS: "down", ArrowLeft: "left", KeyA: "left",
               ArrowRight: "right", KeyD: "right" };

function typing(event) {
  return ["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName) && event.target.type !== "range";
}

document.addEventListener("keydown", (event) => {
  if (typing(event)) return;
  if (event.code === "Escape") { act(api("POST", "/api/emergency_stop")); return; }
  if (event.code === "Space") { input.keys.clear(); event.preventDefault(); return; }
  if (KEYS[event.code]) { input.keys.add(KEYS[event.code]); event.preventDefault(); }
});
document.addEventListener("keyup", (event) => { if (KEYS[event.code]) input.keys.delete(KEYS[event.code]); });
window.addEventListener("blur", () => { input.keys.clear(); input.joystick = null; });

const stick = $("joystick");
const knob = stick.querySelector(".knob");
function moveStick(event) {
  const box = stick.getBoundingClientRect();
  const radius = box.width / 2;
  let x = (event.clientX - box.left - radius) / radius;
  let y = (event.clientY - box.top - radius) / radius;
  const norm = Math.hypot(x, y);
  if (norm > 1) { x /= norm; y /= norm; }
  knob.style.left = `${50 + x * 50}%`;
  knob.style.top = `${50 + y * 50}%`;
  input.joystick = { steering: -x, throttle: -y };
}
function releaseStick() {
  input.joystick = null;
  knob.style.left = knob.style.top = "50%";
}
stick.addEventListener("pointerdown", (event) => { stick.setPointerCapture(event.pointerId); moveStick(event); });
stick.addEventListener("pointermove", (event) => { if (stick.hasPointerCapture(event.pointerId)) moveStick(event); });
stick.addEventListener("pointerup", releaseStick);
stick.addEventListener("pointercancel", releaseStick);

function readGamepad() {
  const pad = [...(navigator.getGamepads ? navigator.getGamepads() : [])].find(Boolean);
  if (!pad) { input.gamepad = null; return; }
  const dead = (v) => (Math.abs(v) < 0.12 ? 0 : v);
  const triggers = (pad.buttons[7]?.value || 0) - (pad.buttons[6]?.value || 0);
  input.gamepad = { steering: -dead(pad.axes[0] || 0), throttle: triggers || -dead(pad.axes[1] || 0) };
  if (pad.buttons[1]?.pressed) act(api("POST", "/api/emergency_stop"));
}

function command() {
  if (input.joystick) return input.joystick;
  if (input.gamepad && (input.gamepad.steering || input.gamepad.throttle)) return input.gamepad;
  const k = input.keys;
  return { steering: (k.has("left") ? 1 : 0) - (k.has("right") ? 1 : 0),
           throttle: (k.has("up") ? 1 : 0) - (k.has("down") ? 1 : 0) };
}

const clamp = (v) => Math.max(-1, Math.min(1, v));
let socket = null;
let wasDriving = false;
function openTeleop() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/api/teleop?csrf=${encodeURIComponent(csrf)}`);
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "error" || message.type === "deadman") say("drive-message", message.reason, true);
  });
  socket.addEventListener("close", () => { socket = null; setTimeout(openTeleop, 1000); });
}

function sendTeleop() {
  readGamepad();
  const c = command();
  const driving = c.steering !== 0 || c.throttle !== 0;
  if (!offline && status && status.mode === "manual" && socket && socket.readyState === WebSocket.OPEN &&
      (driving || wasDriving)) {
    socket.send(JSON.stringify({ steering: clamp(c.steering), throttle: clamp(c.throttle) }));
    wasDriving = driving;
  }
}

// Models

async function loadModels() {
  const data = await api("GET", "/api/models");
  const body = $("model-list");
  body.replaceChildren();
  for (const m of data.models) {
    const row = document.createElement("tr");
    row.dataset.model = m.model_folder_name;
    row.classList.toggle("loaded", m.model_folder_name === data.loaded_model);
    for (const text of [m.model_folder_name, `${m.model_action_space_type}, ${m.model_training_algorithm}`,
                        m.model_sensors.join(", ")]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    const actions = document.createElement("td");
    actions.className = "actions";
    const load = document.createElement("button");
    load.textContent = "Load";
    load.disabled = m.is_select_disabled;
    load.title = m.reason || "";
    load.addEventListener("click", () => loadModel(m));
    actions.append(load);
    if (!m.startup) {  // the model the car started with stays, so the user can always go back to it
      const remove = document.createElement("button");
      remove.textContent = "Delete";
      remove.addEventListener("click", () => deleteModel(m));
      actions.append(remove);
    }
    row.append(actions);
    body.append(row);
  }
}

// The job's progress until the returned function is called. A poll the server answered while the job ran can
// arrive after the job's own answer (another connection): once stopped, its answer is dropped.
function watchLoading() {
  let watching = true;
  const timer = setInterval(async () => {
    try {
      const s = await api("GET", "/api/isModelLoading");
      if (watching && s.isModelLoading === "loading") {
        $("upload-progress").hidden = false;
        $("upload-progress").value = s.progress;
        say("upload-message", `${s.model}: ${s.stage} (${s.progress}%)`);
      }
    } catch (error) { /* the final answer comes with the request itself */ }
  }, 300);
  return () => {
    watching = false;
    clearInterval(timer);
  };
}

async function loadModel(m) {
  const stop = watchLoading();
  say("upload-message", `loading ${m.model_folder_name}…`);
  try {
    await api("PUT", `/api/models/${encodeURIComponent(m.model_folder_name)}/${encodeURIComponent(m.model_name)}`);
    say("upload-message", `${m.model_folder_name} loaded; the car is stopped until you start it`);
  } catch (error) {
    say("upload-message", `${m.model_folder_name} not loaded: ${error.message}`, true);
  } finally {
    stop();
    $("upload-progress").hidden = true;
    loadModels();
  }
}

async function deleteModel(m) {
  if (!confirm(`Delete ${m.model_folder_name} from the car?`)) return;
  try {
    await api("POST", "/api/deleteModels", { filenames: [m.model_folder_name] });
    say("upload-message", `${m.model_folder_name} deleted`);
  } catch (error) {
    say("upload-message", error.message, true);
  }
  loadModels();
}

$("upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = $("upload-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  const xhr = new XMLHttpRequest();
  const bar = $("upload-progress");
  let stopWatching = () => {};
  bar.hidden = false;
  bar.value = 0;
  $("upload-button").disabled = true;
  xhr.upload.addEventListener("progress", (e) => {
    if (e.lengthComputable) {
      bar.value = Math.round(100 * e.loaded / e.total);
      say("upload-message", `uploading ${file.name}: ${bar.value}%`);
    }
  });
  xhr.upload.addEventListener("load", () => { stopWatching = watchLoading(); });
  xhr.addEventListener("loadend", () => {
    stopWatching();
    bar.hidden = true;
    $("upload-button").disabled = false;
    let data = {};
    try { data = JSON.parse(xhr.responseText); } catch (error) { /* not JSON: report the status */ }
    if (xhr.status === 200 && data.success) {
      say("upload-message", `${data.model_folder_name} installed: press Load to drive with it`);
      $("upload-form").reset();
    } else {
      say("upload-message", `upload refused: ${data.reason || `HTTP ${xhr.status}`}`, true);
    }
    loadModels();
  });
  xhr.open("POST", "/api/uploadModels");
  xhr.setRequestHeader("X-CSRFToken", csrf);
  xhr.setRequestHeader("Accept", "application/json");
  xhr.send(form);
});

// Calibration wizard: centre, then each end, for steering and then throttle; saved per output.

const STEPS = [
  { kind: "angle", key: "mid", text: "Steering: set the wheels straight ahead." },
  { kind: "angle", key: "plus", text: "Steering: turn the wheels fully LEFT, no further than they go freely." },
  { kind: "angle", key: "minus", text: "Steering: turn the wheels fully RIGHT." },
  { kind: "throttle", key: "mid", text: "Throttle (wheels off the ground!): find the value where the wheels stop." },
  { kind: "throttle", key: "plus", text: "Throttle: the fastest FORWARD you want." },
  { kind: "throttle", key: "minus", text: "Throttle: the fastest REVERSE you want." },
];
// The console's calibration units (calibration/servo.py): microseconds of pulse per unit, around 1.5 ms.
const UNIT_US = { angle: 10, throttle: 4.5 };
const UNITS = {
  angle: "steering servo; each unit is 10 µs of pulse, 0 = 1.5 ms; + and − move the wheels one way and the other",
  throttle: "ESC; each unit is 4.5 µs of pulse, 0 = 1.5 ms; the car keeps it within a gentle band around stopped",
};
// accepted: the value the car last took for this step (what the wizard holds it at); a refused one is never saved.
const wizard = { step: 0, values: {}, accepted: null, request: 0, opening: false };

function wizardValue() { return Number($("calib-value").value); }

function showValue(value) {
  const kind = STEPS[wizard.step].kind;
  $("calib-value").value = value;
  $("calib-pulse").textContent = `${((1500 + value * UNIT_US[kind]) / 1000).toFixed(3)} ms`;
}

// Show the field's value on the car; true when it took it. Only the latest request speaks: an answer that
// arrives late (another step's, or a value clicked past) changes nothing. A refused value stays in the field
// with the reason, while the car holds the last value it took.
async function adjust(refresh = false) {
  const step = STEPS[wizard.step];
  const value = refresh && wizard.accepted !== null ? wizard.accepted : wizardValue();
  const request = refresh ? wizard.request : ++wizard.request;
  try {
    await api("PUT", `/api/adjust_calibrating_wheels/${step.kind}`, { pwm: value });
    if (!refresh && request === wizard.request) {
      wizard.accepted = value;
      if (wizardValue() === value) showValue(value);  // not over a value the user typed since
      say("calib-message", "");
    }
    return true;
  } catch (error) {
    if (!refresh && request === wizard.request) say("calib-message", `${value} refused: ${error.message}`, true);
    return false;
  }
}

// The car drops a raw pulse after its 250 ms deadman: hold the shown value while the wizard is open,
// so a phone that drops off the network leaves the wheels still.
setInterval(() => { if (!$("wizard").hidden && !offline) adjust(true); }, WIZARD_REFRESH_MS);

function showStep() {
  const step = STEPS[wizard.step];
  $("wizard-step").textContent = `${wizard.step + 1}/${STEPS.length} ${step.text}`;
  $("calib-unit").textContent = UNITS[step.kind];
  wizard.accepted = null;
  wizard.request += 1;  // answers for the previous step are stale now
  showValue(Math.round(wizard.values[step.kind][step.key]));
  adjust();
}

async function finishOutput(kind) {
  const v = wizard.values[kind];
  if ((v.plus - v.mid) * (v.minus - v.mid) >= 0) throw new Error("the two ends must lie on both sides of the centre");
  await api("PUT", `/api/set_calibration/${kind}`, {
    mid: v.mid, min: Math.min(v.plus, v.minus), max: Math.max(v.plus, v.minus), polarity: v.plus > v.mid ? 1 : -1 });
}

async function endWizard(message, error = false) {
  $("wizard").hidden = true;
  $("calib-start").disabled = false;
  try { await api("POST", "/api/drive_mode", { drive_mode: "manual" }); } catch (e) { /* reported below */ }
  say("calib-message", message, error);
}

// Into calibration mode (again, after a reload) with the car's current values, from step 1.
async function openWizard(message) {
  wizard.opening = true;
  try {
    await api("POST", "/api/set_calibration_mode");
    for (const kind of ["angle", "throttle"]) {
      const c = await api("GET", `/api/get_calibration/${kind}`);
      wizard.values[kind] = { mid: c.mid, plus: c.polarity === 1 ? c.max : c.min,
                              minus: c.polarity === 1 ? c.min : c.max };
    }
  } catch (error) {
    say("calib-message", error.message, true);
    return;
  } finally {
    wizard.opening = false;
  }
  wizard.step = 0;
  $("wizard").hidden = false;
  $("calib-start").disabled = true;
  $("wizard-note").textContent = message;
  showStep();
}

$("calib-start").addEventListener("click", () => openWizard(""));
$("calib-minus").addEventListener("click", () => { $("calib-value").value = wizardValue() - 1; adjust(); });
$("calib-plus").addEventListener("click", () => { $("calib-value").value = wizardValue() + 1; adjust(); });
$("calib-value").addEventListener("change", () => adjust());
$("calib-cancel").addEventListener("click",
  () => endWizard("calibration cancelled; steps not saved yet were dropped"));
$("calib-next").addEventListener("click", async () => {
  const step = STEPS[wizard.step];
  // Only a value the car takes now is kept: a refused one stays on screen with the reason.
  const value = wizardValue();
  if (!(await adjust())) return;
  wizard.values[step.kind][step.key] = value;
  const next = STEPS[wizard.step + 1];
  if (!next || next.kind !== step.kind) {
    try {
      await finishOutput(step.kind);
    } catch (error) {
      say("calib-message", `${step.kind}: ${error.message}`, true);
      return;
    }
  }
  if (!next) { endWizard("calibration saved"); return; }
  wizard.step += 1;
  showStep();
});
// A closed tab leaves calibration mode (the request outlives the page); a reload offers the wizard again.
window.addEventListener("pagehide", () => {
  if ($("wizard").hidden) return;
  fetch("/api/drive_mode", { method: "POST", keepalive: true, body: JSON.stringify({ drive_mode: "manual" }),
                             headers: { "X-CSRFToken": csrf, "Content-Type": "application/json" } });
});

openTeleop();
setInterval(sendTeleop, SEND_MS);
pollStatus();
loadModels().catch((error) => say("upload-message", error.message, true));
