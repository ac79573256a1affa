// The botrunner chat page: no build step, no dependencies. Talks to the same API as any client:
// GET /bots, GET|POST|DELETE /bots/{name}/chat/{session}, streamed as NDJSON.
"use strict";

const $ = (id) => document.getElementById(id);
const store = window.localStorage;
const state = { bot: null, bots: [], busy: false };

function randomId(prefix) {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Without API keys each browser is its own user; with a key, the key decides who you are.
const userId = store.getItem("botrunner.user") || randomId("web-");
store.setItem("botrunner.user", userId);
const apiKey = () => store.getItem("botrunner.key") || "";
const sessionKey = () => "botrunner.session." + state.bot.name;
function session() {
  let id = store.getItem(sessionKey());
  if (!id) { id = randomId("page-"); store.setItem(sessionKey(), id); }
  return id;
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body) {
  const headers = { Accept: "application/x-ndjson, application/json" };
  if (apiKey()) headers.Authorization = "Bearer " + apiKey();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const url = apiKey() ? path : path + (path.includes("?") ? "&" : "?") + "user=" + encodeURIComponent(userId);
  const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) {
    let code = "http_" + response.status, message = response.statusText || "Request failed";
    try { const data = await response.json(); code = data.error.code; message = data.error.message; } catch (_) {}
    if (response.status === 401) $("key-form").hidden = false;
    throw new ApiError(response.status, code, message);
  }
  return response;
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  div.appendChild(body);
  $("messages").appendChild(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

function addLine(bubble, cls, text) {
  const span = document.createElement("span");
  span.className = cls;
  span.textContent = text;
  bubble.appendChild(span);
}

function chatPath() {
  return "/bots/" + encodeURIComponent(state.bot.name) + "/chat/" + encodeURIComponent(session());
}

async function loadConversation() {
  $("messages").replaceChildren();
  $("bot-name").textContent = state.bot.name;
  $("bot-description").textContent = state.bot.description || "";
  document.title = state.bot.name + " · botrunner";
  showError(state.bot.problem ? state.bot.problem.message : "");
  const data = await (await api("GET", chatPath())).json();
  if (!data.messages.length && state.bot.greeting) addMessage("bot greeting", state.bot.greeting);
  for (const m of data.messages) {
    if (m.text) addMessage(m.role === "user" ? "user" : "bot", m.text);
  }
}

async function start() {
  try {
    const data = await (await api("GET", "/bots")).json();
    state.bots = data.bots;
    if (!state.bots.length) { showError("No bots are loaded on this server."); return; }
    const select = $("bot-select");
    select.replaceChildren(...state.bots.map((b) => new Option(b.name, b.name)));
    select.hidden = state.bots.length < 2;
    const wanted = store.getItem("botrunner.bot");
    state.bot = state.bots.find((b) => b.name === wanted) || state.bots[0];
    select.value = state.bot.name;
    await loadConversation();
    $("key-form").hidden = true;
  } catch (err) {
    showError(err.message);
  }
}

async function send(text) {
  state.busy = true;
  $("send").disabled = true;
  addMessage("user", text);
  const bubble = addMessage("bot streaming", "");
  const out = bubble.querySelector(".text");
  try {
    const response = await api("POST", chatPath(), { message: text, user: apiKey() ? undefined : { id: userId } });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl).trim();
        buffer = buffer.slice(nl + 1);
        if (!line) continue;
        const event = JSON.parse(line);
        if (event.delta !== undefined) out.textContent += event.delta;
        else if (event.tool_call) addLine(bubble, "note", "[using " + event.tool_call.name + "]");
        else if (event.error) { bubble.classList.add("failed"); addLine(bubble, "problem", event.error.message); }
        bubble.scrollIntoView({ block: "end" });
      }
    }
    state.bot.problem = null;
    showError("");
  } catch (err) {
    bubble.classList.add("failed");
    addLine(bubble, "problem", err.message);
    if (err.status === 503 || err.status === 401) showError(err.message);
  } finally {
    bubble.classList.remove("streaming");
    state.busy = false;
    $("send").disabled = false;
  }
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("input").value;
  if (!text.trim() || state.busy || !state.bot) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
});
$("reset").addEventListener("click", async () => {
  if (!state.bot) return;
  try {
    await api("DELETE", chatPath());
    store.removeItem(sessionKey());
    await loadConversation();
  } catch (err) { showError(err.message); }
});
$("bot-select").addEventListener("change", async (e) => {
  state.bot = state.bots.find((b) => b.name === e.target.value);
  store.setItem("botrunner.bot", state.bot.name);
  try { await loadConversation(); } catch (err) { showError(err.message); }
});
$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  store.setItem("botrunner.key", $("key").value.trim());
  $("key").value = "";
  start();
});
start();
