// The web inbox: a little JavaScript over the inbox API. Everything shown from the API goes in
// through textContent (never innerHTML), and every write carries X-Requested-With (the API
// refuses a cookie-authenticated write without it).
"use strict";
const T = JSON.parse(document.getElementById("strings").textContent);
const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const init = {method, headers: {"X-Requested-With": "tistis-inbox"}, credentials: "same-origin"};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const answer = await fetch(path, init);
  if (answer.status === 401 && !path.endsWith("/auth/login")) {
    location.href = "/inbox";
    throw new Error("logged out");
  }
  if (!answer.ok) {
    const problem = await answer.json().catch(() => ({}));
    const error = new Error(problem.detail || T.error);
    error.status = answer.status;
    throw error;
  }
  return answer.status === 204 ? null : answer.json();
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(document.documentElement.lang, {dateStyle: "short", timeStyle: "short"});
}

// ------------------------------------------------------------------ login
const loginForm = $("login-form");
if (loginForm) {
  loginForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    $("login-error").textContent = "";
    try {
      await api("POST", "/api/v1/auth/login", {
        tenant: $("tenant").value.trim(), email: $("email").value.trim(), password: $("password").value,
      });
      location.href = "/inbox" + location.search;
    } catch (err) {
      $("login-error").textContent = err.status === 429 ? T.too_many : T.login_failed;
    }
  });
  $("email").focus();
}

// ------------------------------------------------------------------ inbox
const state = {filter: "open", cursor: null, open: null, me: null, templates: [], canned: []};

async function loadList(append) {
  const params = new URLSearchParams({filter: state.filter});
  if ($("search").value.trim()) params.set("q", $("search").value.trim());
  if ($("channel").value) params.set("channel", $("channel").value);
  if (append && state.cursor) params.set("cursor", state.cursor);
  const page = await api("GET", "/api/v1/inbox/conversations?" + params);
  const list = $("conversations");
  if (!append) list.replaceChildren();
  for (const c of page.conversations) list.append(row(c));
  if (!list.children.length) list.append(el("li", {class: "empty"}, T.no_conversations));
  state.cursor = page.next_cursor;
  $("more").hidden = !page.next_cursor;
  for (const [k, v] of Object.entries(page.unread)) {
    const badge = document.querySelector(`[data-count="${k}"]`);
    if (badge) badge.textContent = v ? String(v) : "";
  }
}

function row(c) {
  const button = el("button", {type: "button", class: "conv", "data-id": c.id},
    el("span", {class: "name"}, c.lead_name || c.phone || c.platform_user_id),
    el("span", {class: `channel ${c.channel}`}, c.channel),
    el("span", {class: `badge ${c.status}`}, T["status_" + c.status] || c.status),
    c.unread ? el("span", {class: "unread", title: T.unread}, String(c.unread)) : "",
    el("span", {class: "preview"}, c.last_message || ""),
    el("span", {class: "meta"}, [c.assignee_name, when(c.activity)].filter(Boolean).join(" · ")),
  );
  if (state.open === c.id) button.setAttribute("aria-current", "true");
  button.addEventListener("click", () => openConversation(c.id));
  return el("li", {}, button);
}

async function openConversation(id) {
  state.open = id;
  $("inbox-page").dataset.view = "conversation";
  await showConversation();
  api("POST", `/api/v1/inbox/conversations/${id}/seen`).then(() => loadList(false)).catch(() => {});
  $("reply-text").focus();
}

async function showConversation() {
  if (!state.open) return;
  const detail = await api("GET", `/api/v1/inbox/conversations/${state.open}`);
  const c = detail.conversation;
  $("empty").hidden = true;
  $("conversation").hidden = false;
  $("conversation").dataset.id = c.id;
  $("conv-title").textContent = `${c.lead_name || c.platform_user_id} · ${c.channel}`;
  $("conv-status").textContent = T["status_" + c.status] || c.status;
  $("conv-status").className = `badge ${c.status}`;
  $("conv-assignee").textContent = `${T.assigned_to}: ${c.assignee_name || T.nobody}`;
  const mine = state.me && c.assigned_to === state.me.id;
  $("take").hidden = mine && c.status !== "active";
  $("handback").hidden = c.status === "active" && !c.assigned_to;
  $("close").hidden = c.closed;
  $("reopen").hidden = !c.closed;
  const list = $("messages");
  list.replaceChildren(...detail.messages.map((m) => el("li",
    {class: `msg ${m.direction} ${m.sender_type}`, "data-status": m.status},
    el("span", {class: "who"}, T["sent_by_" + m.sender_type] || m.sender_type),
    el("span", {class: "text"}, m.content || `[${m.kind}]`),
    el("span", {class: "meta"}, `${when(m.created_at)} · ${m.status}`))));
  list.scrollTop = list.scrollHeight;
  $("notes").replaceChildren(...detail.notes.map((n) =>
    el("li", {}, el("strong", {}, n.author_name || ""), " ", n.body, " ", el("small", {}, when(n.created_at)))));
  $("labels-text").value = c.labels.join(", ");
  const closedWindow = !c.window_open && c.channel === "whatsapp";
  $("reply-form").hidden = closedWindow;
  $("template-form").hidden = !closedWindow;
  if (closedWindow) fillTemplates();
}

function fillTemplates() {
  const select = $("template-name");
  const approved = state.templates.filter((t) => t.status === "APPROVED");
  select.replaceChildren(...approved.map((t) =>
    el("option", {value: `${t.name}|${t.language}`}, `${t.name} (${t.language})`)));
  showParams();
}

function chosenTemplate() {
  const [name, language] = $("template-name").value.split("|");
  return state.templates.find((t) => t.name === name && t.language === language);
}

function showParams() {
  const t = chosenTemplate();
  const box = $("template-params");
  box.replaceChildren();
  if (!t) return;
  for (let n = 1; n <= t.params; n++) {
    const id = `template-param-${n}`;
    box.append(el("label", {htmlFor: id}, `${T.param} {{${n}}}`),
               el("input", {id, class: "param", required: true}));
  }
  preview();
}

function preview() {
  const t = chosenTemplate();
  if (!t) return;
  let text = t.body || "";
  document.querySelectorAll("#template-params .param").forEach((input, i) => {
    text = text.replace(`{{${i + 1}}}`, input.value || `{{${i + 1}}}`);
  });
  $("template-preview").textContent = text;
}

async function act(path, body) {
  $("action-error").textContent = "";
  try {
    await api("POST", `/api/v1/inbox/conversations/${state.open}/${path}`, body);
  } catch (err) {
    $("action-error").textContent = err.message;
    throw err;
  }
  await Promise.all([showConversation(), loadList(false)]);
  // The services apply a write a moment later (the dispatcher stores the message, the AI
  // responder the hand-back): look again shortly, whatever the stream brings meanwhile.
  setTimeout(() => refreshSoon(state.open), 1000);
  setTimeout(() => refreshSoon(state.open), 3000);
}

let refreshTimer = null;
function refreshSoon(conversationId) {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    loadList(false).catch(() => {});
    if (!conversationId || conversationId === state.open) showConversation().catch(() => {});
  }, 250);
}

function listen() {
  const source = new EventSource("/api/v1/events/stream");  // the session cookie goes along
  source.onopen = () => { $("live").textContent = T.live; $("live").className = "live on"; };
  source.onerror = () => { $("live").textContent = T.offline; $("live").className = "live"; };
  const kinds = ["message.received", "message.outbound", "message.status", "conversation.escalated",
                 "conversation.released", "lead.created", "lead.classified"];
  for (const kind of kinds) {
    source.addEventListener(kind, (e) => {
      let id = null;
      try { id = JSON.parse(e.data).conversation_id || null; } catch (_) { /* keep null */ }
      refreshSoon(id);
    });
  }
}

function showPage() {
  const page = (location.hash || "#inbox").slice(1);
  for (const name of ["inbox", "appointments", "reports"]) {
    $(`${name}-page`).hidden = name !== page;
    $(`nav-${name}`).setAttribute("aria-current", name === page ? "page" : "false");
  }
  if (page === "appointments" && window.loadAppointments) window.loadAppointments();
  if (page === "reports" && window.loadReports) window.loadReports();
}

async function startInbox() {
  const me = await api("GET", "/api/v1/me");
  state.me = me.user;
  $("clinic").textContent = me.tenant_name;
  $("me").textContent = me.user ? me.user.name : "";
  document.querySelectorAll(".tab").forEach((tab) => tab.addEventListener("click", () => {
    document.querySelectorAll(".tab").forEach((t) => t.setAttribute("aria-selected", "false"));
    tab.setAttribute("aria-selected", "true");
    state.filter = tab.dataset.filter;
    loadList(false);
  }));
  let searchTimer = null;
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => loadList(false), 250);
  });
  $("channel").addEventListener("change", () => loadList(false));
  $("more").addEventListener("click", () => loadList(true));
  $("back").addEventListener("click", () => { $("inbox-page").dataset.view = "list"; });
  $("take").addEventListener("click", () => act("take"));
  $("handback").addEventListener("click", () => act("handback"));
  $("close").addEventListener("click", () => act("close"));
  $("reopen").addEventListener("click", () => act("reopen"));
  $("reply-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("reply-text").value.trim();
    if (!text) return;
    await act("reply", {text, client_message_id: crypto.randomUUID()});
    $("reply-text").value = "";
  });
  $("reply-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("reply-form").requestSubmit();
  });
  $("canned").addEventListener("change", () => {
    const reply = state.canned.find((r) => r.id === $("canned").value);
    if (reply) $("reply-text").value = reply.body;
    $("canned").value = "";
    $("reply-text").focus();
  });
  $("template-name").addEventListener("change", showParams);
  $("template-params").addEventListener("input", preview);
  $("template-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const t = chosenTemplate();
    if (!t) return;
    const params = [...document.querySelectorAll("#template-params .param")].map((i) => i.value);
    await act("template", {name: t.name, language: t.language, params,
                           client_message_id: crypto.randomUUID()});
  });
  $("note-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = $("note-text").value.trim();
    if (!body) return;
    await act("notes", {body});
    $("note-text").value = "";
  });
  $("labels-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const labels = $("labels-text").value.split(",").map((s) => s.trim()).filter(Boolean);
    $("action-error").textContent = "";
    await api("PUT", `/api/v1/inbox/conversations/${state.open}/labels`, {labels});
    await showConversation();
  });
  $("logout").addEventListener("click", async () => {
    await api("POST", "/api/v1/auth/logout").catch(() => {});
    location.href = "/inbox";
  });
  window.addEventListener("hashchange", showPage);
  const [templates, canned] = await Promise.all([
    api("GET", "/api/v1/inbox/templates"), api("GET", "/api/v1/inbox/canned-replies")]);
  state.templates = templates.templates;
  state.canned = canned.replies;
  $("canned").append(...state.canned.map((r) => el("option", {value: r.id}, `/${r.shortcut}`)));
  showPage();
  await loadList(false);
  listen();
}

if ($("inbox-page")) startInbox();
