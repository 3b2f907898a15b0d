// Chat: a model picker, streaming answers (SSE over fetch) rendered as Markdown, stop,
// regenerate, image attachments, and the conversations kept in this browser.

import { api, attempt, errorOf, headers, showError } from "./api.js";
import { renderMarkdown } from "./markdown.js";
import { clear, el } from "./util.js";

const STORE_KEY = "famous.conversations";
let conversations = [];
let active = null;
let controller = null;
let pendingImages = [];

const $ = (id) => document.getElementById(id);

function load() {
  try {
    conversations = JSON.parse(localStorage.getItem(STORE_KEY) || "[]");
  } catch {
    conversations = [];
  }
  if (!Array.isArray(conversations)) conversations = [];
}

function save() {
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify(conversations));
  } catch (error) {
    showError(`this conversation could not be kept in the browser: ${error.message}`);
  }
}

function newConversation() {
  active = { id: String(Date.now()), title: "New conversation", messages: [] };
  conversations.unshift(active);
  save();
  renderList();
  renderMessages();
  $("chat-input").focus();
}

function renderList() {
  const list = clear($("conversation-list"));
  for (const conv of conversations) {
    const open = el("button", {
      type: "button",
      class: "conv-open",
      "aria-current": conv === active ? "true" : null,
      text: conv.title,
      onclick: () => {
        active = conv;
        $("chat-system").value = conv.system || "";
        renderList();
        renderMessages();
      },
    });
    const remove = el("button", {
      type: "button",
      class: "conv-delete",
      "aria-label": `Delete conversation ${conv.title}`,
      text: "×",
      onclick: () => {
        conversations = conversations.filter((c) => c !== conv);
        if (active === conv) active = conversations[0] || null;
        save();
        renderList();
        renderMessages();
      },
    });
    list.append(el("li", {}, open, remove));
  }
}

function textOf(content) {
  if (typeof content === "string") return content;
  return content.filter((p) => p.type === "text").map((p) => p.text).join("\n");
}

function imagesOf(content) {
  if (typeof content === "string") return [];
  return content.filter((p) => p.type === "image_url").map((p) => p.image_url.url);
}

function statsText(stats) {
  if (!stats) return "";
  const parts = [];
  if (stats.ttft !== null && stats.ttft !== undefined) parts.push(`first token ${stats.ttft.toFixed(2)} s`);
  if (stats.tokens) parts.push(`${stats.tokens} tokens`);
  if (stats.tps) parts.push(`${stats.tps.toFixed(1)} tokens/s`);
  if (stats.stopped) parts.push("stopped");
  return parts.join(" · ");
}

function messageNode(message) {
  const body = el("div", { class: "message-body" });
  if (message.role === "assistant") body.innerHTML = renderMarkdown(message.content || "");
  else body.textContent = textOf(message.content);
  const figures = imagesOf(message.content).map((src) => el("img", { src, alt: "attached image", class: "thumb" }));
  return el(
    "article",
    { class: `message ${message.role}` },
    el("h2", { class: "message-role", text: message.role === "user" ? "You" : message.model || "Assistant" }),
    figures.length ? el("div", { class: "attachments" }, figures) : null,
    body,
    message.role === "assistant" ? el("p", { class: "stats", text: statsText(message.stats) }) : null,
  );
}

function renderMessages() {
  const box = clear($("messages"));
  if (!active) return;
  for (const message of active.messages) box.append(messageNode(message));
  box.scrollTop = box.scrollHeight;
}

async function refreshModels() {
  const select = $("chat-model");
  const previous = select.value;
  const names = new Map();
  const served = await api("/v1/models");
  for (const m of served.data || []) names.set(m.id, "served");
  try {
    const catalog = await api("/famous/api/catalog");
    for (const m of catalog.models || []) {
      if (m.installed && !names.has(m.name)) names.set(m.name, "installed");
    }
  } catch (error) {
    showError(error);
  }
  clear(select);
  for (const [name, how] of names) select.append(el("option", { value: name, text: `${name} (${how})` }));
  if (names.has(previous)) select.value = previous;
  else if (active && active.model && names.has(active.model)) select.value = active.model;
}

function requestMessages() {
  const system = $("chat-system").value.trim();
  const messages = system ? [{ role: "system", content: system }] : [];
  for (const m of active.messages) messages.push({ role: m.role, content: m.content });
  return messages;
}

function setBusy(busy) {
  $("chat-stop").disabled = !busy;
  $("chat-send").disabled = busy;
  $("chat-regenerate").disabled = busy;
  $("messages").setAttribute("aria-busy", String(busy));
}

function parseEvents(buffer, onData) {
  const events = buffer.split(/\r?\n\r?\n/);
  const rest = events.pop();
  for (const event of events) {
    const data = event
      .split(/\r?\n/)
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).trimStart())
      .join("\n");
    if (data && data !== "[DONE]") onData(JSON.parse(data));
  }
  return rest;
}

async function streamAnswer() {
  const model = $("chat-model").value;
  if (!model) throw new Error("pick a model first (none is running or installed)");
  const answer = { role: "assistant", content: "", model, stats: null };
  active.messages.push(answer);
  active.model = model;
  active.system = $("chat-system").value;
  const node = messageNode(answer);
  $("messages").append(node);
  const bodyNode = node.querySelector(".message-body");
  const statsNode = node.querySelector(".stats");
  const started = performance.now();
  let first = null;
  let usage = null;
  let pieces = 0;
  controller = new AbortController();
  setBusy(true);
  const body = {
    model,
    messages: requestMessages().slice(0, -1),
    stream: true,
    stream_options: { include_usage: true },
    temperature: Number($("chat-temperature").value),
    max_tokens: Number($("chat-max-tokens").value),
  };
  let stopped = false;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) throw await errorOf(response);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer = parseEvents(buffer + decoder.decode(value, { stream: true }), (chunk) => {
        if (chunk.error) throw new Error(chunk.error.message || "the stream ended with an error");
        if (chunk.usage) usage = chunk.usage;
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) {
          if (first === null) first = performance.now();
          pieces += 1;
          answer.content += delta.content;
        }
      });
      bodyNode.innerHTML = renderMarkdown(answer.content);
      statsNode.textContent = first === null ? "waiting for the first token…" : `${pieces} tokens so far`;
    }
  } catch (error) {
    if (error.name !== "AbortError") {
      if (!answer.content) active.messages.pop();
      throw error;
    }
    stopped = true;
  } finally {
    controller = null;
    setBusy(false);
    const end = performance.now();
    const tokens = usage ? usage.completion_tokens : pieces;
    const decodeSeconds = first === null ? 0 : (end - first) / 1000;
    answer.stats = {
      ttft: first === null ? null : (first - started) / 1000,
      tokens,
      tps: decodeSeconds > 0 ? tokens / decodeSeconds : null,
      stopped,
    };
    save();
    renderMessages();
  }
}

async function send(event) {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text && !pendingImages.length) return;
  if (!active) newConversation();
  const content = pendingImages.length
    ? [{ type: "text", text }, ...pendingImages.map((url) => ({ type: "image_url", image_url: { url } }))]
    : text;
  active.messages.push({ role: "user", content });
  if (active.title === "New conversation") active.title = text.slice(0, 40) || "Image";
  input.value = "";
  pendingImages = [];
  renderAttachments();
  renderList();
  renderMessages();
  save();
  await attempt(streamAnswer);
  renderMessages();
}

async function regenerate() {
  if (!active || !active.messages.length) return;
  if (active.messages[active.messages.length - 1].role === "assistant") active.messages.pop();
  renderMessages();
  await attempt(streamAnswer);
}

function renderAttachments() {
  const box = clear($("attachments"));
  pendingImages.forEach((url, index) => {
    box.append(
      el(
        "span",
        { class: "attachment" },
        el("img", { src: url, alt: `attachment ${index + 1}`, class: "thumb" }),
        el("button", {
          type: "button",
          "aria-label": `Remove attachment ${index + 1}`,
          text: "×",
          onclick: () => {
            pendingImages.splice(index, 1);
            renderAttachments();
          },
        }),
      ),
    );
  });
}

function attach(event) {
  for (const file of event.target.files) {
    const reader = new FileReader();
    reader.addEventListener("load", () => {
      pendingImages.push(String(reader.result));
      renderAttachments();
    });
    reader.addEventListener("error", () => showError(`could not read ${file.name}`));
    reader.readAsDataURL(file);
  }
  event.target.value = "";
}

export function init() {
  load();
  active = conversations[0] || null;
  if (active) $("chat-system").value = active.system || "";
  $("new-chat").addEventListener("click", newConversation);
  $("chat-form").addEventListener("submit", send);
  $("chat-stop").addEventListener("click", () => controller && controller.abort());
  $("chat-regenerate").addEventListener("click", regenerate);
  $("chat-image").addEventListener("change", attach);
  $("chat-attach").addEventListener("click", () => $("chat-image").click());
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
}

export async function enter() {
  renderList();
  renderMessages();
  await refreshModels();
}
