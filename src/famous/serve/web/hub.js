// Search the Hub and pull a result (its progress shows under Models).

import { api, attempt } from "./api.js";
import { startPull } from "./models.js";
import { clear, el, formatBytes, table } from "./util.js";

const $ = (id) => document.getElementById(id);

async function search(event) {
  event.preventDefault();
  const params = new URLSearchParams({ q: $("hub-q").value.trim(), limit: $("hub-limit").value });
  if ($("hub-format").value) params.set("format", $("hub-format").value);
  const box = clear($("hub-results"));
  box.append(el("p", { text: "Searching…" }));
  let hits;
  try {
    ({ hits } = await api(`/famous/api/hub/search?${params}`));
  } finally {
    clear(box);
  }
  if (!hits.length) {
    box.append(el("p", { class: "empty", text: "Nothing found." }));
    return;
  }
  const rows = hits.map((h) => [
    el("strong", { text: h.repo_id }),
    (h.downloads ?? 0).toLocaleString(),
    String(h.likes ?? 0),
    (h.formats || []).join(", ") || "–",
    h.size_bytes ? formatBytes(h.size_bytes) : "–",
    el("button", {
      type: "button",
      class: "primary",
      text: "Pull",
      "aria-label": `Pull ${h.repo_id}`,
      onclick: () => attempt(async () => {
        await startPull({ model: h.repo_id });
        document.querySelector('.tab[data-view="models"]').click();
      }),
    }),
  ]);
  box.append(table(["Model", "Downloads", "Likes", "Formats", "Size", ""], rows, "Results"));
}

export function init() {
  $("hub-form").addEventListener("submit", (event) => attempt(() => search(event)));
}

export async function enter() {
  $("hub-q").focus();
}
