// Models: the catalog, one model's engines (score, per-device reasons, memory per variant),
// pin / unpin, pulls with live progress (cancel, resume) and removal.

import { api, attempt, modelPath } from "./api.js";
import { clear, definitionList, el, formatBytes, formatSeconds, table } from "./util.js";

const $ = (id) => document.getElementById(id);
let pollTimer = null;
let openModel = null;
let wasRunning = false;

function badge(text, kind) {
  return el("span", { class: `badge ${kind || ""}`, text });
}

async function renderCatalog() {
  const { models } = await api("/famous/api/catalog");
  const rows = models.map((m) => [
    el("button", { type: "button", class: "link", text: m.name, onclick: () => attempt(() => showModel(m.name)) }),
    m.summary || "",
    m.source || "",
    el(
      "span",
      { class: "badges" },
      m.installed ? badge("installed", "ok") : null,
      m.running ? badge("running", "ok") : null,
      m.pinned ? badge(`pinned: ${m.pinned}`, "info") : null,
    ),
  ]);
  clear($("catalog")).append(table(["Model", "Summary", "Source", "State"], rows, "Catalog"));
}

function deviceList(devices) {
  return el(
    "ul",
    { class: "devices" },
    (devices || []).map((d) =>
      el(
        "li",
        { class: d.matched ? "matched" : "unmatched" },
        el("strong", { text: `${d.group}: ` }),
        `${d.requirement || ""} → ${d.device || "no device"} `,
        badge(d.matched ? "matches" : "no match", d.matched ? "ok" : "bad"),
        el("ul", { class: "reasons" }, (d.reasons || []).map((r) => el("li", { text: r }))),
      ),
    ),
  );
}

function memoryList(memory) {
  return el(
    "ul",
    { class: "memory" },
    (memory || []).map((m) =>
      el(
        "li",
        {},
        el("strong", { text: `${m.variant || m.option || "default"}: ` }),
        badge(m.fits ? "fits" : "does not fit", m.fits ? "ok" : "bad"),
        ` ${m.explain || ""}`,
      ),
    ),
  );
}

function engineCard(name, engine, pinned) {
  const isPinned = pinned && pinned.engine === engine.engine;
  const force = el("input", { type: "checkbox", id: `force-${engine.engine}` });
  const actions = el(
    "div",
    { class: "actions" },
    isPinned
      ? el("button", {
          type: "button",
          text: "Unpin",
          onclick: () => attempt(async () => {
            await api(`/famous/api/catalog/${modelPath(name)}/pin`, { method: "DELETE" });
            await showModel(name);
          }),
        })
      : el("button", {
          type: "button",
          text: "Pin",
          onclick: () => attempt(async () => {
            await api(`/famous/api/catalog/${modelPath(name)}/pin`, {
              method: "PUT",
              body: { engine: engine.engine, force: force.checked },
            });
            await showModel(name);
          }),
        }),
    el("label", { for: force.id }, force, " force"),
    el("button", {
      type: "button",
      class: "primary",
      text: "Pull",
      onclick: () => attempt(() => startPull({ model: name, engine: engine.engine })),
    }),
  );
  return el(
    "article",
    { class: `engine ${engine.compatible ? "compatible" : "incompatible"}`, "data-engine": engine.engine },
    el(
      "h3",
      {},
      engine.engine,
      " ",
      engine.selected ? badge("selected", "ok") : null,
      isPinned ? badge(pinned.forced ? "pinned (forced)" : "pinned", "info") : null,
    ),
    definitionList([
      ["Vendor", engine.vendor],
      ["Runtime", engine.runtime],
      ["Verdict", engine.verdict],
      ["Score", engine.score === null || engine.score === undefined ? "–" : String(engine.score)],
      ["Option", engine.option],
    ]),
    engine.summary ? el("p", { text: engine.summary }) : null,
    engine.reasons && engine.reasons.length
      ? el("ul", { class: "reasons why-not" }, engine.reasons.map((r) => el("li", { text: r })))
      : null,
    el("h4", { text: "Devices" }),
    deviceList(engine.devices),
    el("h4", { text: "Memory" }),
    memoryList(engine.memory),
    actions,
  );
}

async function showModel(name) {
  openModel = name;
  const data = await api(`/famous/api/catalog/${modelPath(name)}`);
  const detail = clear($("model-detail"));
  const installed = (data.installed || []).map((row) => [
    row.engine || "",
    row.variant || "",
    formatBytes(row.size_bytes ?? row.size),
    row.path || "",
  ]);
  detail.append(
    el("h2", { id: "model-detail-title", text: name }),
    el("p", { text: (data.model && (data.model.description || data.model.summary)) || "" }),
    el(
      "div",
      { class: "actions" },
      el("button", { type: "button", class: "primary", text: "Pull", onclick: () => attempt(() => startPull({ model: name })) }),
      installed.length
        ? el("button", { type: "button", class: "danger", text: "Remove installed files", onclick: () => attempt(() => remove(name)) })
        : null,
      el("button", { type: "button", text: "Close", onclick: () => { clear(detail); openModel = null; } }),
    ),
    installed.length ? table(["Engine", "Variant", "Size", "Path"], installed, "Installed") : el("p", { text: "Not installed." }),
    el("h3", { text: "Engines" }),
    el("div", { class: "engines" }, (data.engines || []).map((e) => engineCard(name, e, data.pinned))),
  );
  detail.focus();
}

async function remove(name) {
  if (!window.confirm(`Remove the installed files of ${name}?`)) return;
  const { removed } = await api(`/famous/api/installed/${modelPath(name)}`, { method: "DELETE" });
  await renderCatalog();
  const stillListed = [...$("catalog").querySelectorAll("button.link")].some((b) => b.textContent === name);
  if (openModel === name && stillListed) await showModel(name);
  else if (openModel === name) {
    clear($("model-detail")).append(
      el("h2", { text: name }),
      el("p", { class: "status", text: `Removed ${removed.length} installed item(s); ${name} is no longer in the catalog.` }),
    );
  }
}

export async function startPull(body) {
  await api("/famous/api/pulls", { method: "POST", body });
  await renderPulls();
}

function pullFacts(pull) {
  const total = pull.total_bytes;
  const percent = total ? Math.floor((100 * pull.done_bytes) / total) : null;
  const running = pull.state === "running";
  return [
    `${formatBytes(pull.done_bytes)} of ${total ? formatBytes(total) : "?"}`,
    percent !== null ? `${percent} %` : null,
    running && pull.rate_bytes_per_s ? `${formatBytes(pull.rate_bytes_per_s)}/s` : null,
    running && pull.eta_s !== null && pull.eta_s !== undefined ? `ETA ${formatSeconds(pull.eta_s)}` : null,
    pull.state === "done" && pull.engine ? `installed for ${pull.engine}${pull.variant ? ` (${pull.variant})` : ""}` : null,
  ].filter(Boolean).join(" · ");
}

function pullActions(pull) {
  if (pull.state === "running") {
    return el("button", {
      type: "button",
      text: "Cancel",
      "aria-label": `Cancel the download of ${pull.model}`,
      onclick: () => attempt(async () => {
        await api(`/famous/api/pulls/${encodeURIComponent(pull.id)}`, { method: "DELETE" });
        await renderPulls();
      }),
    });
  }
  if (pull.state === "done" || pull.resumable === false) return null;
  return el("button", {
    type: "button",
    text: "Resume",
    "aria-label": `Resume the download of ${pull.model}`,
    onclick: () => attempt(() => startPull({ model: pull.model, engine: pull.engine || undefined, variant: pull.variant || undefined })),
  });
}

/** Update the row of ``pull`` in place (a row rebuilt every poll would lose the focus). */
function updatePull(node, pull) {
  const bar = node.querySelector("progress");
  bar.max = pull.total_bytes || 1;
  if (pull.total_bytes) bar.value = pull.done_bytes;
  else if (pull.state === "done") bar.value = 1;
  node.querySelector(".pull-facts").textContent = pullFacts(pull);
  if (node.dataset.state !== pull.state) {
    node.dataset.state = pull.state;
    node.className = `pull ${pull.state}`;
    const kind = pull.state === "failed" ? "bad" : pull.state === "done" ? "ok" : "info";
    clear(node.querySelector(".pull-head .badge")).append(pull.state);
    node.querySelector(".pull-head .badge").className = `badge ${kind}`;
    clear(node.querySelector(".actions")).append(pullActions(pull) || "");
  }
  const files = node.querySelector(".pull-files ul");
  clear(files).append(
    ...(pull.files || []).map((f) => el("li", { text: `${f.name}: ${formatBytes(f.done)} of ${f.total ? formatBytes(f.total) : "?"}` })),
  );
  node.querySelector(".pull-files").hidden = !(pull.files && pull.files.length);
  const error = node.querySelector(".pull-error");
  error.textContent = pull.error || "";
  error.hidden = !pull.error;
}

function pullNode(pull) {
  const node = el(
    "li",
    { class: "pull", "data-pull": pull.id },
    el("div", { class: "pull-head" }, el("strong", { text: pull.model }), " ", el("span", { class: "badge" })),
    el("progress", { max: 1, "aria-label": `Download of ${pull.model}` }),
    el("p", { class: "pull-facts" }),
    el("details", { class: "pull-files" }, el("summary", { text: "Files" }), el("ul")),
    el("p", { class: "pull-error" }),
    el("div", { class: "actions" }),
  );
  updatePull(node, pull);
  return node;
}

export async function renderPulls() {
  const { pulls } = await api("/famous/api/pulls");
  const box = $("pulls");
  let list = box.querySelector(".pull-list");
  if (pulls.length && !list) {
    list = el("ul", { class: "pull-list" });
    box.append(el("h2", { text: "Downloads" }), list);
  }
  const known = new Map(list ? [...list.children].map((n) => [n.dataset.pull, n]) : []);
  pulls.forEach((pull, index) => {
    const node = known.get(pull.id) || pullNode(pull);
    updatePull(node, pull);
    if (list.children[index] !== node) list.insertBefore(node, list.children[index] || null);
    known.delete(pull.id);
  });
  for (const gone of known.values()) gone.remove();
  clearTimeout(pollTimer);
  const running = pulls.some((p) => p.state === "running");
  if (running) pollTimer = setTimeout(() => attempt(renderPulls), 500);
  else if (wasRunning && !$("view-models").hidden) attempt(renderCatalog);
  wasRunning = running;
}

export function init() {}

export async function enter() {
  await Promise.all([renderCatalog(), renderPulls()]);
}

export function leave() {
  clearTimeout(pollTimer);
}
