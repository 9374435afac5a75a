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

// Times in the clinic's zone (the tenant's; a branch's for its appointments), not the browser's.
function when(iso, timeZone) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(document.documentElement.lang,
    {dateStyle: "short", timeStyle: "short", timeZone: timeZone || state.tz});
}

function wallClock(iso, timeZone) {  // "YYYY-MM-DDTHH:MM" in that zone, for datetime-local
  return new Date(iso).toLocaleString("sv-SE", {timeZone}).replace(" ", "T").slice(0, 16);
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
const state = {filter: "open", cursor: null, open: null, me: null, templates: [], canned: [],
               tz: undefined, branches: []};

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

// A message's file, by a short-lived signed link: a thumbnail for an image, else a link; a
// click asks for a fresh link, so one left open past its expiry still opens.
const FILE_KINDS = new Set(["image", "audio", "video", "document", "sticker", "media"]);

function fileLink(messageId) {
  const path = `/api/v1/inbox/messages/${messageId}/media`;
  const link = el("a", {class: "file", target: "_blank", rel: "noopener"}, T.open_file);
  link.hidden = true;
  api("GET", path).then((file) => {
    if (!file.url) return;
    link.href = file.url;
    link.dataset.expires = file.expires_at;
    if ((file.mime_type || "").startsWith("image/")) {
      link.replaceChildren(el("img", {src: file.url, alt: file.filename || T.open_file}));
    } else if (file.filename) {
      link.textContent = `${T.open_file}: ${file.filename}`;
    }
    link.hidden = false;
  }).catch(() => {});
  link.addEventListener("click", async (e) => {
    if (Date.now() / 1000 < Number(link.dataset.expires) - 5) return;
    e.preventDefault();
    const file = await api("GET", path);
    if (file.url) window.open(file.url, "_blank", "noopener");
  });
  return link;
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
    FILE_KINDS.has(m.kind) ? fileLink(m.id) : "",
    el("span", {class: "meta"}, `${when(m.created_at)} · ${m.status}`))));
  list.scrollTop = list.scrollHeight;
  $("notes").replaceChildren(...detail.notes.map((n) =>
    el("li", {}, el("strong", {}, n.author_name || ""), " ", n.body, " ", el("small", {}, when(n.created_at)))));
  $("labels-text").value = c.labels.join(", ");
  if ($("lead-box").dataset.id !== c.lead_id) showLead(c.lead_id).catch(() => {});
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
  paramInputs($("template-params"), t, "template-param");
  if (t) preview();
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
  state.tz = me.tenant_timezone;
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
  setupOutreach();
  showPage();
  await loadList(false);
  listen();
}

if ($("inbox-page")) startInbox();

// ------------------------------------------------------------------ the lead, a new number
async function showLead(leadId) {
  const view = await api("GET", `/api/v1/inbox/leads/${leadId}`);
  $("lead-box").dataset.id = leadId;
  $("lead-summary").textContent =
    `${T.score} ${view.score} · ${T.band} ${view.classification}${view.spam ? " · spam" : ""}`;
  $("lead-channels").replaceChildren(...view.leads.map((l) =>
    el("li", {}, `${l.channel}: ${l.name || l.platform_user_id}${l.phone ? " · " + l.phone : ""}`)));
  $("lead-history").replaceChildren(...view.score_history.slice(0, 10).map((h) =>
    el("li", {}, `${when(h.created_at)} ${h.signal} ${h.points > 0 ? "+" : ""}${h.points} → ${h.score_after}` +
                 (h.reason ? ` (${h.reason})` : ""))));
}

function paramInputs(box, template, prefix) {
  box.replaceChildren();
  for (let n = 1; template && n <= template.params; n++) {
    const id = `${prefix}-${n}`;
    box.append(el("label", {htmlFor: id}, `${T.param} {{${n}}}`), el("input", {id, class: "param", required: true}));
  }
}

function setupOutreach() {
  const select = $("outreach-template");
  const approved = state.templates.filter((t) => t.status === "APPROVED");
  select.replaceChildren(...approved.map((t) => el("option", {value: `${t.name}|${t.language}`}, `${t.name} (${t.language})`)));
  const chosen = () => {
    const [name, language] = select.value.split("|");
    return state.templates.find((t) => t.name === name && t.language === language);
  };
  const refresh = () => paramInputs($("outreach-params"), chosen(), "outreach-param");
  select.addEventListener("change", refresh);
  refresh();
  $("outreach-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const t = chosen();
    $("outreach-error").textContent = "";
    try {
      await api("POST", "/api/v1/inbox/outreach", {
        phone: $("outreach-phone").value.trim(), name: $("outreach-name").value.trim() || null,
        template: {name: t.name, language: t.language, client_message_id: crypto.randomUUID(),
                   params: [...document.querySelectorAll("#outreach-params .param")].map((i) => i.value)}});
      $("outreach").open = false;
      state.filter = "mine";
      document.querySelectorAll(".tab").forEach((x) => x.setAttribute("aria-selected", String(x.dataset.filter === "mine")));
      await loadList(false);
    } catch (err) {
      $("outreach-error").textContent = err.message;
    }
  });
  $("merge-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const q = $("merge-search").value.trim();
    if (!q) return;
    const me = $("lead-box").dataset.id;
    const found = await api("GET", "/api/v1/inbox/conversations?" + new URLSearchParams({filter: "all", q}));
    $("merge-results").replaceChildren(...found.conversations.filter((c) => c.lead_id !== me).map((c) => {
      const button = el("button", {type: "button"}, T.same_person);
      button.addEventListener("click", async () => {
        try {
          await api("POST", `/api/v1/inbox/leads/${me}/merge`, {lead_id: c.lead_id});
          $("merge-results").replaceChildren();
          await showLead(me);
        } catch (err) {
          $("action-error").textContent = err.message;
        }
      });
      return el("li", {}, `${c.lead_name || c.platform_user_id} · ${c.channel} `, button);
    }));
  });
}

// ------------------------------------------------------------------ appointments
window.loadAppointments = async function () {
  const branch = $("appt-branch");
  if (!branch.options.length) {
    const {branches} = await api("GET", "/api/v1/inbox/branches");
    state.branches = branches;
    branch.append(...branches.map((b) => el("option", {value: b.id}, b.name)));
    $("appt-date").value = wallClock(new Date().toISOString(), state.tz).slice(0, 10);
    branch.addEventListener("change", window.loadAppointments);
    $("appt-date").addEventListener("change", window.loadAppointments);
  }
  if (!branch.value) return;
  const day = await api("GET", `/api/v1/inbox/appointments?branch_id=${branch.value}&date=${$("appt-date").value}`);
  const list = $("appointments");
  const tz = (state.branches.find((b) => b.id === branch.value) || {}).timezone || state.tz;
  list.replaceChildren(...day.appointments.map((a) => {
    const at = el("input", {type: "datetime-local", value: wallClock(a.scheduled_at, tz),
                            "aria-label": T.reschedule});
    const move = el("button", {type: "button"}, T.reschedule);
    // the branch's wall clock, sent without an offset: the API reads it in the branch's zone
    move.addEventListener("click", () => apptAction(a.id, "reschedule", {scheduled_at: at.value}));
    const cancel = el("button", {type: "button"}, T.cancel);
    cancel.addEventListener("click", () => apptAction(a.id, "cancel"));
    const done = el("button", {type: "button"}, T.mark_completed);
    done.addEventListener("click", () => apptAction(a.id, "outcome", {status: "completed"}));
    const missed = el("button", {type: "button"}, T.mark_no_show);
    missed.addEventListener("click", () => apptAction(a.id, "outcome", {status: "no_show"}));
    const booked = a.status === "booked";
    return el("li", {"data-id": a.id},
      el("strong", {}, new Date(a.scheduled_at).toLocaleTimeString(document.documentElement.lang,
                                                                    {timeStyle: "short", timeZone: tz})),
      el("span", {}, a.lead_name || a.phone || ""), el("span", {}, a.service_name || ""),
      el("span", {class: `badge ${a.status}`}, T["appt_" + a.status] || a.status),
      booked ? at : "", booked ? move : "", booked ? cancel : "",
      booked ? done : "", booked ? missed : "");
  }));
  if (!day.appointments.length) list.append(el("li", {class: "empty"}, T.no_appointments));
};

async function apptAction(id, action, body) {
  $("appt-error").textContent = "";
  try {
    await api("POST", `/api/v1/inbox/appointments/${id}/${action}`, body);
    setTimeout(window.loadAppointments, 1500);
  } catch (err) {
    $("appt-error").textContent = err.message;
  }
}

// ------------------------------------------------------------------ reports
window.loadReports = async function () {
  if (!$("report-to").value) {
    const today = wallClock(new Date().toISOString(), state.tz).slice(0, 10);
    $("report-to").value = today;
    $("report-from").value = new Date(Date.parse(today) - 6 * 86400000).toISOString().slice(0, 10);
    $("report-from").addEventListener("change", window.loadReports);
    $("report-to").addEventListener("change", window.loadReports);
  }
  const report = await api("GET", `/api/v1/inbox/reports?start=${$("report-from").value}&end=${$("report-to").value}`);
  const secs = (s) => (s == null ? "–" : s < 90 ? `${Math.round(s)} s` : `${Math.round(s / 60)} min`);
  const pct = (x) => (x == null ? "–" : `${Math.round(x * 100)}%`);
  const head = [T.day, T.channel, T.conversations, T.first_response, T.share, T.escalations, T.bookings, T.no_shows];
  document.querySelector("#report thead").replaceChildren(el("tr", {}, ...head.map((h) => el("th", {scope: "col"}, h))));
  document.querySelector("#report tbody").replaceChildren(...report.rows.map((r) => el("tr", {},
    el("td", {}, r.day), el("td", {}, r.channel), el("td", {}, String(r.conversations)),
    el("td", {}, `${secs(r.first_response_p50)} / ${secs(r.first_response_p90)}`),
    el("td", {}, `${pct(r.share_ai)} / ${pct(r.share_fallback)} / ${pct(r.share_staff)}`),
    el("td", {}, Object.entries(r.escalations).map(([k, v]) => `${k}: ${v}`).join(", ")),
    el("td", {}, String(r.bookings)), el("td", {}, String(r.no_shows)))));
};
