// What both pages share: the API key (kept in sessionStorage, sent as a Bearer token), calls to the
// public API, and the messages its errors carry.
"use strict";

const KEY_ITEM = "enginehouse.key";

function apiKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

function apiHeaders(extra) {
  const headers = Object.assign({ "Content-Type": "application/json" }, extra || {});
  const key = apiKey();
  if (key) headers.Authorization = "Bearer " + key;
  return headers;
}

// The error an answer carries, in words: OpenAI's {error: {message}}, or {detail}.
async function apiError(response) {
  let text = "";
  try {
    const body = await response.json();
    text = (body.error && body.error.message) || body.detail || JSON.stringify(body);
  } catch (e) {
    text = response.statusText;
  }
  if (response.status === 401) return "The server refused the API key (401): " + text;
  if (response.status === 403) return "This key may not do that (403): " + text;
  if (response.status === 429) return "Rate limited (429): " + text;
  return "Error " + response.status + ": " + text;
}

async function apiGet(path) {
  const response = await fetch(path, { headers: apiHeaders() });
  if (!response.ok) {
    const error = new Error(await apiError(response));
    error.status = response.status;
    throw error;
  }
  return response.json();
}

// Server-sent events of a fetch response: calls onEvent(parsed JSON) per data line, until [DONE].
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of block.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

function showNotice(text) {
  const notice = document.getElementById("notice");
  notice.textContent = text;
  notice.hidden = !text;
}

// The key bar: shown when the server answers 401, or when a key is already in use.
function keyBar(onSaved) {
  const bar = document.getElementById("keybar");
  const input = document.getElementById("key");
  input.value = apiKey();
  bar.hidden = !apiKey();
  document.getElementById("key-save").addEventListener("click", () => {
    setApiKey(input.value.trim());
    showNotice("");
    onSaved();
  });
  return {
    needed(message) {
      bar.hidden = false;
      showNotice(message);
    },
  };
}
