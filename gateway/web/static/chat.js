// The chat page: a conversation with a served model through /v1/chat/completions, streamed.
// Conversations live in localStorage; the API key in sessionStorage (api.js). A model's output is
// Markdown rendered with every piece of raw HTML escaped, then sanitized: it is never live HTML.
"use strict";

const STORE = "enginehouse.conversations";
const CURRENT = "enginehouse.current";
const $ = (id) => document.getElementById(id);

let conversations = JSON.parse(localStorage.getItem(STORE) || "[]");
let currentId = localStorage.getItem(CURRENT);
let controller = null; // the fetch of the answer being streamed
let models = {}; // id -> state
let keys;

function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function markdown(text) {
  return DOMPurify.sanitize(marked.parse(text));
}

function save() {
  localStorage.setItem(STORE, JSON.stringify(conversations));
  localStorage.setItem(CURRENT, currentId || "");
}

function current() {
  let conversation = conversations.find((c) => c.id === currentId);
  if (!conversation) {
    conversation = { id: String(Date.now()), title: "New chat", messages: [] };
    conversations.unshift(conversation);
    currentId = conversation.id;
    save();
  }
  return conversation;
}

function statsLine(message) {
  if (message.error) return "";
  const s = message.stats;
  if (!s) return "";
  const parts = [];
  if (s.tokens != null) parts.push(s.tokens + " tokens");
  if (s.tokensPerSecond != null) parts.push(s.tokensPerSecond.toFixed(1) + " tokens/s");
  if (s.ttftMs != null) parts.push("first token " + Math.round(s.ttftMs) + " ms");
  if (s.stopped) parts.push("stopped");
  else if (s.finish) parts.push("finish: " + s.finish);
  return parts.join(" · ");
}

function messageElement(message) {
  const element = document.createElement("div");
  element.className = "message " + message.role;
  const body = document.createElement("div");
  body.className = "body";
  element.appendChild(body);
  const footer = document.createElement("div");
  footer.className = "stats";
  element.appendChild(footer);
  fillMessage(element, message);
  return element;
}

function fillMessage(element, message) {
  const body = element.querySelector(".body");
  if (message.role === "assistant") body.innerHTML = markdown(message.content);
  else body.textContent = message.content;
  if (message.error) {
    const error = document.createElement("p");
    error.className = "error";
    error.textContent = message.error;
    body.appendChild(error);
  }
  element.querySelector(".stats").textContent = statsLine(message);
}

function renderConversation() {
  const conversation = current();
  const box = $("messages");
  box.replaceChildren(...conversation.messages.map(messageElement));
  box.scrollTop = box.scrollHeight;
  const list = $("conversations");
  list.replaceChildren(
    ...conversations.map((c) => {
      const item = document.createElement("li");
      const link = document.createElement("button");
      link.type = "button";
      link.textContent = c.title;
      link.className = c.id === currentId ? "active" : "";
      link.addEventListener("click", () => {
        if (controller) return;
        currentId = c.id;
        save();
        renderConversation();
      });
      item.appendChild(link);
      return item;
    })
  );
}

function busy(on) {
  $("send").disabled = on;
  $("regenerate").disabled = on;
  $("edit-last").disabled = on;
  $("stop").disabled = !on;
}

function numberField(id) {
  const value = $(id).value.trim();
  return value === "" ? undefined : Number(value);
}

function requestBody(conversation) {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  for (const m of conversation.messages) {
    if (!m.error && (m.role !== "assistant" || m.content)) messages.push({ role: m.role, content: m.content });
  }
  const body = { model: $("model").value, messages, stream: true, stream_options: { include_usage: true } };
  for (const field of ["temperature", "top_p", "max_tokens", "seed"]) {
    const value = numberField(field);
    if (value !== undefined) body[field] = value;
  }
  return body;
}

// Stream an answer to the conversation as it stands (its last message is the user's).
async function answer() {
  const conversation = current();
  const body = requestBody(conversation);
  const message = { role: "assistant", content: "", stats: null };
  conversation.messages.push(message);
  const element = messageElement(message);
  $("messages").appendChild(element);
  const model = body.model;
  if (models[model] && models[model] !== "ready") $("model-state").textContent = "loading " + model + "…";
  controller = new AbortController();
  busy(true);
  const started = performance.now();
  let first = null;
  let usage = null;
  let finish = null;
  let pieces = 0;
  let stopped = false;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: apiHeaders(),
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) {
      message.error = await apiError(response);
      if (response.status === 401) keys.needed(message.error);
    } else {
      await readEvents(response, (event) => {
        if (event.error) {
          message.error = "Error: " + event.error.message;
          return;
        }
        if (event.usage) usage = event.usage;
        for (const choice of event.choices || []) {
          const piece = choice.delta && choice.delta.content;
          if (piece) {
            if (first === null) {
              first = performance.now();
              refreshModels();
            }
            pieces += 1;
            message.content += piece;
            fillMessage(element, message);
            $("messages").scrollTop = $("messages").scrollHeight;
          }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
      });
    }
  } catch (error) {
    if (error.name === "AbortError") stopped = true;
    else message.error = "The request failed: " + error.message;
  }
  const ended = performance.now();
  const tokens = usage ? usage.completion_tokens : pieces;
  message.stats = {
    tokens: first === null ? null : tokens,
    ttftMs: first === null ? null : first - started,
    tokensPerSecond: first !== null && ended > first && tokens > 1 ? (tokens - 1) / ((ended - first) / 1000) : null,
    finish,
    stopped,
  };
  fillMessage(element, message);
  controller = null;
  busy(false);
  if (conversation.title === "New chat") {
    const asked = conversation.messages.find((m) => m.role === "user");
    if (asked) conversation.title = asked.content.slice(0, 40);
  }
  save();
  renderConversation();
  refreshModels();
}

function send(event) {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || controller) return;
  current().messages.push({ role: "user", content: text });
  $("prompt").value = "";
  save();
  renderConversation();
  answer();
}

function dropLastAnswer(conversation) {
  while (conversation.messages.length && conversation.messages[conversation.messages.length - 1].role === "assistant") {
    conversation.messages.pop();
  }
}

function regenerate() {
  const conversation = current();
  dropLastAnswer(conversation);
  if (!conversation.messages.length) return;
  renderConversation();
  answer();
}

function editLast() {
  const conversation = current();
  dropLastAnswer(conversation);
  const last = conversation.messages.pop();
  if (last) $("prompt").value = last.content;
  save();
  renderConversation();
  $("prompt").focus();
}

async function refreshModels() {
  try {
    const listed = await apiGet("/v1/models");
    const select = $("model");
    const chosen = select.value;
    models = {};
    const options = [];
    for (const model of listed.data) {
      if (model.task && model.task !== "generate") continue;
      models[model.id] = model.state || "ready";
      const option = document.createElement("option");
      option.value = model.id;
      option.textContent = model.id + (model.state && model.state !== "ready" ? " (" + model.state + ")" : "");
      options.push(option);
    }
    if (options.length !== select.options.length || [...select.options].some((o, i) => o.textContent !== options[i].textContent)) {
      select.replaceChildren(...options);
      if (chosen && models[chosen]) select.value = chosen;
    }
    const state = models[select.value];
    $("model-state").textContent = state && state !== "ready" ? state + " (it loads on the first request)" : "";
  } catch (error) {
    if (error.status === 401) keys.needed(error.message + " Enter the key above.");
    else showNotice(error.message);
  }
}

function main() {
  marked.use({ renderer: { html: (token) => escapeHtml(token.text) } }); // raw HTML shows as text
  keys = keyBar(refreshModels);
  $("ask").addEventListener("submit", send);
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) send(event);
  });
  $("stop").addEventListener("click", () => controller && controller.abort());
  $("regenerate").addEventListener("click", regenerate);
  $("edit-last").addEventListener("click", editLast);
  $("new-chat").addEventListener("click", () => {
    if (controller) return;
    currentId = null;
    current();
    renderConversation();
  });
  $("model").addEventListener("change", refreshModels);
  busy(false);
  renderConversation();
  refreshModels();
  setInterval(refreshModels, 5000);
}

document.addEventListener("DOMContentLoaded", main);
