// tandem's chat page: conversations in localStorage, replies streamed from
// /v1/chat/completions (server-sent events) and rendered with markdown.js, a stop button
// that aborts the request (the server cancels the job when the connection closes), and
// the API key asked for once when the server wants one.
"use strict";

const KEYS = {conversations: "tandem.conversations", current: "tandem.current", apiKey: "tandem.apiKey",
              settings: "tandem.settings"};
const SETTINGS = ["system", "temperature", "top_p", "top_k", "min_p", "max_tokens", "think"];
const $ = (id) => document.getElementById(id);

let conversations = JSON.parse(localStorage.getItem(KEYS.conversations) || "[]");
let current = localStorage.getItem(KEYS.current);
let modelName = "";
let controller = null;  // the running request's AbortController

function save() {
  localStorage.setItem(KEYS.conversations, JSON.stringify(conversations));
  if (current) localStorage.setItem(KEYS.current, current);
  else localStorage.removeItem(KEYS.current);
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

// --- the API key: asked once, kept in localStorage ---------------------------------------
function askKey() {
  return new Promise((resolve) => {
    const dialog = $("key-dialog");
    $("key-input").value = "";
    dialog.addEventListener("close", () => {
      const key = $("key-input").value.trim();
      if (key) localStorage.setItem(KEYS.apiKey, key);
      resolve(key);
    }, {once: true});
    dialog.showModal();
  });
}

// fetch with the key; a 401 asks for the key and tries again.
async function api(path, options = {}) {
  for (;;) {
    const key = localStorage.getItem(KEYS.apiKey);
    const headers = Object.assign({}, options.headers || {});
    if (key) headers["Authorization"] = "Bearer " + key;
    const response = await fetch(path, Object.assign({}, options, {headers}));
    if (response.status !== 401) return response;
    localStorage.removeItem(KEYS.apiKey);
    if (!(await askKey())) return response;
  }
}

async function loadModel() {
  try {
    const response = await api("/v1/models");
    if (!response.ok) throw new Error("HTTP " + response.status);
    modelName = (await response.json()).data[0].id;
    $("model-name").textContent = modelName;
  } catch (e) {
    $("model-name").textContent = "(server unreachable)";
    showError("Could not read /v1/models: " + e.message);
  }
}

// --- settings ---------------------------------------------------------------------------
function loadSettings() {
  const s = JSON.parse(localStorage.getItem(KEYS.settings) || "{}");
  for (const name of SETTINGS) {
    const el = $("set-" + name);
    if (!(name in s)) continue;
    if (el.type === "checkbox") el.checked = s[name];
    else el.value = s[name];
  }
}

function readSettings() {
  const s = {};
  for (const name of SETTINGS) {
    const el = $("set-" + name);
    s[name] = el.type === "checkbox" ? el.checked : el.type === "number" ? Number(el.value) : el.value;
  }
  localStorage.setItem(KEYS.settings, JSON.stringify(s));
  return s;
}

// --- conversations ----------------------------------------------------------------------
function conversation() { return conversations.find((c) => c.id === current); }

function newConversation() {
  const c = {id: String(Date.now()) + Math.random().toString(16).slice(2, 6), title: "New chat", messages: []};
  conversations.unshift(c);
  current = c.id;
  save();
  render();
  return c;
}

function renderList() {
  const ul = $("conversations");
  ul.replaceChildren();
  for (const c of conversations) {
    const li = document.createElement("li");
    li.className = c.id === current ? "active" : "";
    li.dataset.id = c.id;
    const title = document.createElement("span");
    title.textContent = c.title;
    const del = document.createElement("button");
    del.className = "delete";
    del.title = "Delete";
    del.textContent = "×";
    del.onclick = (e) => {
      e.stopPropagation();
      conversations = conversations.filter((x) => x.id !== c.id);
      if (current === c.id) current = conversations.length ? conversations[0].id : null;
      save();
      render();
    };
    li.onclick = () => { if (!controller) { current = c.id; save(); render(); } };
    li.append(title, del);
    ul.append(li);
  }
}

function statsText(m) {
  const u = m.usage, t = m.timings;
  if (!u) return m.stopped ? "stopped" : "";
  const cached = u.prompt_tokens_details ? u.prompt_tokens_details.cached_tokens : 0;
  const fmt = (x) => (x > 0 && isFinite(x) ? x.toFixed(1) : "–");
  return "prompt " + u.prompt_tokens + " tokens (" + cached + " cached) · " + fmt(t && t.prompt_per_second) +
         " tok/s · reply " + u.completion_tokens + " tokens · " + fmt(t && t.predicted_per_second) + " tok/s";
}

// One message's element; an assistant's holds its reasoning (collapsed), answer and stats.
function messageElement(m) {
  const div = document.createElement("div");
  div.className = "message " + m.role;
  if (m.role === "user") {
    div.textContent = m.content;
    return div;
  }
  const reasoning = document.createElement("details");
  reasoning.className = "reasoning";
  reasoning.append(Object.assign(document.createElement("summary"), {textContent: "Thinking"}),
                   document.createElement("div"));
  const content = document.createElement("div");
  content.className = "content";
  const stats = document.createElement("div");
  stats.className = "stats";
  div.append(reasoning, content, stats);
  updateMessage(div, m);
  return div;
}

function updateMessage(div, m) {
  const reasoning = div.querySelector(".reasoning");
  reasoning.hidden = !m.reasoning;
  reasoning.querySelector("div").textContent = m.reasoning || "";
  div.querySelector(".content").innerHTML = renderMarkdown(m.content || "");
  const stats = div.querySelector(".stats");
  stats.textContent = statsText(m);
  stats.classList.toggle("stopped", !!m.stopped);
  if (m.stopped && m.usage) stats.textContent += " · stopped";
}

function renderMessages() {
  const box = $("messages");
  box.replaceChildren();
  const c = conversation();
  if (c) for (const m of c.messages) box.append(messageElement(m));
  box.scrollTop = box.scrollHeight;
}

function render() {
  renderList();
  renderMessages();
}

// --- sending and streaming ----------------------------------------------------------------
function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("input").disabled = busy;
}

// Reads server-sent events; calls onEvent(json) for each data line but [DONE].
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

async function send(text) {
  showError("");
  const c = conversation() || newConversation();
  if (!c.messages.length) c.title = text.slice(0, 40);
  c.messages.push({role: "user", content: text});
  const reply = {role: "assistant", content: "", reasoning: ""};
  c.messages.push(reply);
  save();
  render();
  const div = $("messages").lastElementChild;
  const s = readSettings();
  const history = c.messages.slice(0, -1).map((m) => ({role: m.role, content: m.content}));
  if (s.system) history.unshift({role: "system", content: s.system});
  const body = {model: modelName, messages: history, stream: true, stream_options: {include_usage: true},
                temperature: s.temperature, top_p: s.top_p, top_k: s.top_k, min_p: s.min_p,
                max_tokens: s.max_tokens, chat_template_kwargs: {enable_thinking: s.think}};
  controller = new AbortController();
  setBusy(true);
  let pending = false;
  const redraw = () => {
    if (pending) return;
    pending = true;
    setTimeout(() => { pending = false; updateMessage(div, reply); $("messages").scrollTop = 1e9; }, 50);
  };
  try {
    const response = await api("/v1/chat/completions", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
      signal: controller.signal});
    if (!response.ok) {
      const err = await response.json().catch(() => ({}));
      throw new Error((err.error && err.error.message) || "HTTP " + response.status);
    }
    await readEvents(response, (event) => {
      if (event.error) throw new Error(event.error.message);
      const choice = event.choices && event.choices[0];
      if (choice && choice.delta) {
        if (choice.delta.reasoning_content) reply.reasoning += choice.delta.reasoning_content;
        if (choice.delta.content) reply.content += choice.delta.content;
      }
      if (event.timings) reply.timings = event.timings;
      if (event.usage) reply.usage = event.usage;
      redraw();
    });
  } catch (e) {
    if (e.name === "AbortError") reply.stopped = true;
    else showError(e.message);
  } finally {
    controller = null;
    setBusy(false);
    save();
    updateMessage(div, reply);
    $("input").focus();
  }
}

// --- wiring -----------------------------------------------------------------------------
$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("input").value.trim();
  if (!text || controller) return;
  $("input").value = "";
  send(text);
});
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop").addEventListener("click", () => { if (controller) controller.abort(); });
$("new-chat").addEventListener("click", () => { if (!controller) newConversation(); });
$("forget-key").addEventListener("click", () => { localStorage.removeItem(KEYS.apiKey); loadModel(); });
for (const name of SETTINGS) $("set-" + name).addEventListener("change", readSettings);

loadSettings();
if (current && !conversation()) current = null;
render();
loadModel();
