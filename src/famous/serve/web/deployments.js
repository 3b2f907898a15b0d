// Deployments: what each engine process itself reports, load / stop, and its live log.

import { api, attempt, modelPath } from "./api.js";
import { clear, el, formatBytes, formatSeconds, table } from "./util.js";

const $ = (id) => document.getElementById(id);
let logTimer = null;
let refreshTimer = null;
let logModel = null;
let logOffset = 0;

function stateBadge(text) {
  const kind = text === "ok" || text === "ready" ? "ok" : text === "down" || text === "failed" ? "bad" : "info";
  return el("span", { class: `badge ${kind}`, text: text || "–" });
}

const running = (d) => d.state === "ready" || d.state === "starting";

function action(verb, model, route, kind) {
  return el("button", {
    type: "button",
    class: kind || null,
    text: verb,
    "aria-label": `${verb} ${model}`,
    onclick: (event) => attempt(async () => {
      event.target.disabled = true;
      try {
        await api(route, { method: "POST", body: { model } });
      } finally {
        await render();
      }
    }),
  });
}

async function render() {
  const { deployments } = await api("/famous/api/deployments");
  const rows = deployments.map((d) => [
    el("strong", { text: d.model }),
    `${d.engine || ""} (${d.runtime || ""})`,
    el("span", { title: d.server_reason || "" }, d.server || "–"),
    stateBadge(d.state),
    stateBadge(d.health),
    formatBytes(d.memory_bytes),
    formatSeconds(d.uptime_s),
    String(d.requests ?? 0),
    el(
      "span",
      { class: "actions" },
      el("button", { type: "button", text: "Log", "aria-label": `Log of ${d.model}`, onclick: () => attempt(() => openLog(d.model)) }),
      running(d) ? action("Stop", d.model, "/famous/api/stop", "danger") : action("Load", d.model, "/famous/api/load"),
    ),
  ]);
  const box = clear($("deployments"));
  if (rows.length) {
    box.append(table(["Model", "Engine", "Server", "State", "Health", "Memory", "Uptime", "Requests", ""], rows, "Deployments"));
  } else {
    box.append(el("p", { class: "empty", text: "No engine has been started yet. Load a model above." }));
  }
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => attempt(render), 5000);
}

async function fillModels() {
  const list = clear($("load-models"));
  const served = await api("/v1/models");
  for (const m of served.data || []) list.append(el("option", { value: m.id }));
}

async function pollLog() {
  const query = logOffset ? `after=${logOffset}` : "tail=200";
  const data = await api(`/famous/api/deployments/${modelPath(logModel)}/logs?${query}`);
  const pre = $("logs");
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  if (data.lines.length) pre.append(data.lines.join("\n") + "\n");
  logOffset = data.offset;
  if (atBottom) pre.scrollTop = pre.scrollHeight;
  clearTimeout(logTimer);
  logTimer = setTimeout(() => attempt(pollLog), 1000);
}

async function openLog(model) {
  clearTimeout(logTimer);
  logModel = model;
  logOffset = 0;
  clear($("logs"));
  $("logs-title").textContent = `Log of ${model}`;
  $("logs-panel").hidden = false;
  await pollLog();
}

function closeLog() {
  clearTimeout(logTimer);
  logModel = null;
  $("logs-panel").hidden = true;
}

export function init() {
  $("load-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const model = $("load-model").value.trim();
    attempt(async () => {
      if (!model) throw new Error("name a model to load");
      await api("/famous/api/load", { method: "POST", body: { model } });
      await render();
    });
  });
  $("deployments-refresh").addEventListener("click", () => attempt(render));
  $("logs-close").addEventListener("click", closeLog);
}

export async function enter() {
  await Promise.all([render(), fillModels()]);
}

export function leave() {
  clearTimeout(refreshTimer);
  closeLog();
}
