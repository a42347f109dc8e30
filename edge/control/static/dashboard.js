// edge's dashboard: plain JavaScript, no framework, everything from the daemon.
//
// It reads only what the control API serves (GET /health, /tunnel/status, /calls,
// /record/status, /mcp/servers, /plugins) and follows GET /events, re-reading
// everything whenever the event stream (re)opens or reports that it lagged.
// Its two actions (stop a capture, disconnect the tunnel) are POSTs carrying this
// run's CSRF token, read from the page's <meta name="edge-csrf"> (and read again
// from GET / when the stream reopens: a restarted daemon has a new one). Every value
// from the daemon goes into the page as text (textContent), never as HTML, and
// a field the daemon does not send is shown as "—".
"use strict";

(() => {
  const DASH = "—";
  const MAX_RECENT = 300;
  const MAX_HISTORY = 50;
  const MAX_TRANSCRIPTS = 30;
  const HEALTH_EVERY_MS = 10000;
  const CAPTURES_EVERY_MS = 2000;
  const METER_FLOOR_DB = -60;
  const RETRY_FIRST_MS = 500;
  const RETRY_CAP_MS = 5000;

  const tokenIn = (doc) => {
    const meta = doc.querySelector('meta[name="edge-csrf"]');
    return meta ? meta.getAttribute("content") || "" : "";
  };
  let csrf = tokenIn(document);

  const S = {
    health: null,
    healthAt: 0,
    tunnel: null,
    history: [],
    inFlight: new Map(),
    recent: [],
    finishedSinceOpen: new Map(), // calls the stream told of since it (re)opened
    captures: new Map(),
    mcp: new Map(),
    plugins: new Map(),
  };

  // -- small helpers ----------------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  const given = (v) => v !== undefined && v !== null && v !== "";
  const show = (v) => (given(v) ? String(v) : DASH);
  const first = (obj, ...names) => {
    if (!obj) return undefined;
    for (const name of names) if (given(obj[name])) return obj[name];
    return undefined;
  };

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("data-")) node.setAttribute(key, String(value));
      else node[key] = value;
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function toDate(value) {
    if (!given(value)) return null;
    const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    return Number.isNaN(date.getTime()) ? null : date;
  }

  function clock(value) {
    const date = toDate(value);
    return date ? date.toLocaleTimeString([], { hour12: false }) : DASH;
  }

  function span(seconds) {
    if (typeof seconds !== "number" || !Number.isFinite(seconds)) return DASH;
    const s = Math.max(0, seconds);
    if (s < 60) return `${Math.floor(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  function duration(seconds) {
    if (typeof seconds !== "number" || !Number.isFinite(seconds)) return DASH;
    if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
    if (seconds < 60) return `${seconds.toFixed(2)} s`;
    return span(seconds);
  }

  function size(chars) {
    if (typeof chars !== "number" || !Number.isFinite(chars)) return DASH;
    if (chars < 1000) return `${chars} ch`;
    if (chars < 1e6) return `${(chars / 1000).toFixed(1)} k ch`;
    return `${(chars / 1e6).toFixed(1)} M ch`;
  }

  function db(value) {
    return typeof value === "number" && Number.isFinite(value) ? `${value.toFixed(1)} dBFS` : DASH;
  }

  function badge(state) {
    const text = show(state);
    return el("span", { class: "badge", "data-state": given(state) ? state : "unknown", text });
  }

  function setBadge(node, state) {
    node.textContent = show(state);
    node.setAttribute("data-state", given(state) ? String(state) : "unknown");
  }

  function say(text) {
    const box = $("message");
    if (!text) {
      box.hidden = true;
      box.textContent = "";
      return;
    }
    box.textContent = text;
    box.hidden = false;
  }

  // One run of `fn` per `ms`, however often it is asked for.
  function debounce(fn, ms) {
    let timer = null;
    return () => {
      if (timer !== null) return;
      timer = setTimeout(() => {
        timer = null;
        fn();
      }, ms);
    };
  }

  // -- talking to the daemon ------------------------------------------------------

  async function getJSON(path) {
    const response = await fetch(path, { cache: "no-store", headers: { accept: "application/json" } });
    if (!response.ok) {
      const error = new Error(`${path}: ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  async function post(path) {
    let response;
    try {
      response = await fetch(path, { method: "POST", cache: "no-store", headers: { "X-Edge-CSRF": csrf } });
    } catch (error) {
      say(`${path}: the daemon did not answer (${error.message})`);
      return null;
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      say(`${path}: ${response.status} ${body && body.error ? body.error : response.statusText}`);
      return null;
    }
    say("");
    return body;
  }

  // The token of the daemon serving the page now (after a restart, not the page's own).
  async function readToken() {
    try {
      const response = await fetch("/", { cache: "no-store" });
      if (!response.ok) return;
      const token = tokenIn(new DOMParser().parseFromString(await response.text(), "text/html"));
      if (token) csrf = token;
    } catch (_) {
      // the next reopen tries again
    }
  }

  // -- header and health ----------------------------------------------------------

  function renderHeader() {
    const h = S.health;
    const commit = h && typeof h.commit === "string" && h.commit ? ` (${h.commit.slice(0, 10)})` : "";
    $("version").textContent = h && given(h.version) ? `${h.version}${commit}` : DASH;
    const state = first(S.tunnel, "status") ?? first(h, "tunnel");
    setBadge($("tunnel-badge"), state);
    renderUptime();
  }

  function renderUptime() {
    const h = S.health;
    if (!h || typeof h.uptime !== "number") {
      $("uptime").textContent = DASH;
      return;
    }
    $("uptime").textContent = span(h.uptime + (Date.now() - S.healthAt) / 1000);
  }

  async function readHealth() {
    try {
      S.health = await getJSON("/health");
      S.healthAt = Date.now();
    } catch (_) {
      S.health = null;
    }
    renderHeader();
  }

  // -- tunnel ----------------------------------------------------------------------

  function renderTunnel() {
    const t = S.tunnel || {};
    setBadge($("tunnel-state"), t.status);
    const since = toDate(t.since);
    $("tunnel-since").textContent = since
      ? `${clock(t.since)} (for ${span((Date.now() - since.getTime()) / 1000)})`
      : DASH;
    $("tunnel-reason").textContent = show(t.reason);
    $("tunnel-url").textContent = show(t.url);
    const retry = toDate(t.nextRetryAt);
    $("tunnel-retry").textContent = retry
      ? `${clock(t.nextRetryAt)} (in ${span(Math.max(0, (retry.getTime() - Date.now()) / 1000))})`
      : DASH;
    $("tunnel-outbox").textContent = show(t.outbox);
    $("disconnect").disabled = !given(t.status) || t.status === "disconnected";

    const list = $("tunnel-history");
    const entries = S.history.slice(0, MAX_HISTORY);
    if (!entries.length) {
      list.replaceChildren(el("li", { class: "empty", text: DASH }));
    } else {
      list.replaceChildren(
        ...entries.map((e) =>
          el(
            "li",
            {},
            el("time", { text: clock(e.at) }),
            badge(e.status),
            given(e.reason) ? ` ${e.reason}` : null,
          ),
        ),
      );
    }
    renderHeader();
  }

  function sortHistory(entries) {
    const at = (e) => (toDate(e.at) ? toDate(e.at).getTime() : 0);
    return entries.slice().sort((a, b) => at(b) - at(a));
  }

  async function readTunnel() {
    try {
      S.tunnel = await getJSON("/tunnel/status");
      if (Array.isArray(S.tunnel.history)) S.history = sortHistory(S.tunnel.history);
    } catch (_) {
      S.tunnel = null;
    }
    renderTunnel();
  }
  const rereadTunnel = debounce(readTunnel, 300);

  function onTunnelStatus(event) {
    const before = S.tunnel || {};
    S.tunnel = { ...before, status: event.status, reason: event.reason };
    if (event.status !== before.status) S.tunnel.since = event.at; // a new reason alone keeps it
    if (event.status !== "connecting") delete S.tunnel.nextRetryAt;
    S.history = sortHistory([{ status: event.status, reason: event.reason, at: event.at }, ...S.history]).slice(
      0,
      MAX_HISTORY,
    );
    renderTunnel();
    rereadTunnel();
  }

  // -- calls -----------------------------------------------------------------------

  const callKey = (c) => `${c.id}\u0000${c.started ?? ""}`;
  const finishedAt = (c) => {
    const start = toDate(c.started);
    return start ? start.getTime() + (typeof c.seconds === "number" ? c.seconds * 1000 : 0) : 0;
  };

  function callRow(call) {
    const outcome = first(call, "outcome");
    const row = el(
      "tr",
      { "data-id": call.id, "data-tool": call.tool, "data-outcome": outcome ?? "", "data-shown-at": Date.now() },
      el("td", { class: "time", text: clock(call.started) }),
      el("td", { class: "mono", text: show(call.tool) }),
      el("td", { class: "num", text: duration(call.seconds) }),
      el("td", {}, el("span", { class: "outcome", "data-outcome": outcome ?? "", text: show(outcome) })),
      el("td", { class: "num", text: size(call.chars) }),
    );
    const notes = [call.source && `source ${call.source}`, call.error, call.id && `id ${call.id}`].filter(Boolean);
    row.title = notes.join("\n");
    row.dataset.key = callKey(call);
    return row;
  }

  function renderRecent() {
    $("recent-calls").tBodies[0].replaceChildren(...S.recent.map(callRow));
    $("recent-count").textContent = String(S.recent.length);
  }

  function renderInFlight() {
    const now = Date.now();
    const rows = [...S.inFlight.values()].map((call) => {
      const start = toDate(call.started);
      const running = start ? (now - start.getTime()) / 1000 : call.seconds;
      return el(
        "tr",
        { "data-id": call.id, "data-tool": call.tool },
        el("td", { class: "time", text: clock(call.started) }),
        el("td", { class: "mono", text: show(call.tool) }),
        el("td", { class: "mono", text: show(call.id) }),
        el("td", { class: "num", text: duration(running) }),
      );
    });
    $("inflight").tBodies[0].replaceChildren(...rows);
    $("inflight-count").textContent = String(S.inFlight.size);
  }

  function addFinished(call) {
    const key = callKey(call);
    S.recent = S.recent.filter((c) => callKey(c) !== key);
    S.recent.unshift(call);
    if (S.recent.length > MAX_RECENT) S.recent.length = MAX_RECENT;
    const body = $("recent-calls").tBodies[0];
    for (const row of [...body.rows]) if (row.dataset.key === key) row.remove();
    const row = callRow(call);
    row.classList.add("fresh");
    body.prepend(row);
    while (body.rows.length > MAX_RECENT) body.lastElementChild.remove();
    $("recent-count").textContent = String(S.recent.length);
  }

  async function readCalls() {
    let data;
    try {
      data = await getJSON("/calls");
    } catch (_) {
      return; // an older daemon without GET /calls: the events still fill the table
    }
    // The answer replaces what the page knew (the daemon may have restarted), but keeps
    // what the stream told of meanwhile: the answer may predate it.
    S.inFlight = new Map((Array.isArray(data.inFlight) ? data.inFlight : []).map((c) => [callKey(c), c]));
    const merged = new Map();
    for (const c of Array.isArray(data.recent) ? data.recent : []) merged.set(callKey(c), c);
    for (const [key, c] of S.finishedSinceOpen) merged.set(key, c);
    S.recent = [...merged.values()].sort((a, b) => finishedAt(b) - finishedAt(a)).slice(0, MAX_RECENT);
    for (const key of merged.keys()) S.inFlight.delete(key);
    renderInFlight();
    renderRecent();
  }

  function onCallStarted(event) {
    S.inFlight.set(callKey(event), event);
    renderInFlight();
  }

  function onCallFinished(event) {
    S.inFlight.delete(callKey(event));
    S.finishedSinceOpen.set(callKey(event), event);
    if (S.finishedSinceOpen.size > MAX_RECENT) S.finishedSinceOpen.delete(S.finishedSinceOpen.keys().next().value);
    renderInFlight();
    addFinished(event);
  }

  // -- captures --------------------------------------------------------------------

  function captureCard(chatId) {
    const stop = el("button", { type: "button", class: "stop danger", text: "Stop" });
    stop.dataset.chat = chatId;
    stop.addEventListener("click", async () => {
      stop.disabled = true;
      const answer = await post(`/record/stop?chatId=${encodeURIComponent(chatId)}`);
      if (answer === null) stop.disabled = false;
    });
    const card = el(
      "div",
      { class: "capture", "data-chat": chatId },
      el(
        "div",
        { class: "capture-head" },
        el("span", { class: "chat mono", text: chatId }),
        el("span", { class: "source mono" }),
        el("span", { class: "badge state", "data-state": "unknown", text: DASH }),
        el("span", { class: "elapsed muted" }),
        stop,
      ),
      el("div", { class: "details" }),
      el(
        "div",
        { class: "meter", "data-rms": "", "data-peak": "", title: "RMS (bar) and peak (line), dBFS" },
        el("div", { class: "cover" }),
        el("div", { class: "peak" }),
      ),
      el("div", { class: "meter-scale" }, ...["-60", "-48", "-36", "-24", "-12", "0 dBFS"].map((t) => el("span", { text: t }))),
      el("div", { class: "meter-text", text: DASH }),
      el("ul", { class: "transcripts" }),
    );
    return card;
  }

  function cardFor(chatId) {
    const list = $("captures");
    for (const card of list.children) if (card.dataset.chat === chatId) return card;
    const card = captureCard(chatId);
    list.append(card);
    return card;
  }

  function renderCaptureCount() {
    $("capture-count").textContent = String(S.captures.size);
    $("no-captures").hidden = S.captures.size > 0;
  }

  function renderCapture(chatId) {
    const cap = S.captures.get(chatId);
    if (!cap) return;
    const card = cardFor(chatId);
    const st = cap.status || {};
    card.querySelector(".source").textContent = show(st.source);
    setBadge(card.querySelector(".state"), st.state);
    renderElapsed(card, cap);
    const asr = asrState(st.asr);
    const dropped = st.droppedFrames && typeof st.droppedFrames === "object"
      ? Object.values(st.droppedFrames).reduce((a, b) => a + (Number(b) || 0), 0)
      : undefined;
    const parts = [`file ${show(st.file)}`, `ASR ${show(asr)}`, `dropped ${show(dropped)}`];
    if (given(st.warning)) parts.push(st.warning);
    if (given(st.error)) parts.push(`error: ${st.error}`);
    card.querySelector(".details").textContent = parts.join(" · ");
    renderMeter(card, cap.level);
    renderTranscripts(card, cap.transcripts);
    renderCaptureCount();
  }

  // The ASR uplink's state in a few words ("off" when the capture streams nowhere).
  function asrState(asr) {
    if (asr === null) return "off";
    if (!asr || typeof asr !== "object" || typeof asr.connected !== "boolean") return undefined;
    let text = asr.connected ? "connected" : "reconnecting";
    if (typeof asr.backlogSeconds === "number" && asr.backlogSeconds >= 1) {
      text += ` (${asr.backlogSeconds.toFixed(1)} s behind)`;
    }
    if (!asr.connected && given(asr.lastError)) text += `: ${asr.lastError}`;
    return text;
  }

  function renderElapsed(card, cap) {
    const st = cap.status || {};
    const started = toDate(st.startedAt);
    const seconds = started ? (Date.now() - started.getTime()) / 1000 : st.seconds;
    card.querySelector(".elapsed").textContent = typeof seconds === "number" ? span(seconds) : "";
  }

  function meterShare(value) {
    if (typeof value !== "number" || !Number.isFinite(value)) return 0;
    return Math.min(1, Math.max(0, (value - METER_FLOOR_DB) / -METER_FLOOR_DB));
  }

  function renderMeter(card, level) {
    const meter = card.querySelector(".meter");
    const rms = level ? level.rmsDb : undefined;
    const peak = level ? level.peakDb : undefined;
    meter.dataset.rms = given(rms) ? String(rms) : "";
    meter.dataset.peak = given(peak) ? String(peak) : "";
    meter.dataset.updates = String((Number(meter.dataset.updates) || 0) + 1);
    // CSSOM, not a style attribute: the page's CSP allows no inline style.
    meter.querySelector(".cover").style.width = `${(100 - meterShare(rms) * 100).toFixed(1)}%`;
    meter.querySelector(".peak").style.left = `calc(${(meterShare(peak) * 100).toFixed(1)}% - 2px)`;
    card.querySelector(".meter-text").textContent = `RMS ${db(rms)} · peak ${db(peak)}`;
  }

  function renderTranscripts(card, transcripts) {
    const list = card.querySelector(".transcripts");
    list.replaceChildren(
      ...transcripts.map((t) =>
        el(
          "li",
          { class: t.final === false ? "partial" : "" },
          el("time", { text: typeof t.start === "number" ? `${t.start.toFixed(1)} s` : DASH }),
          show(t.text),
          t.backfill ? el("span", { class: "muted", text: " (backfill)" }) : null,
        ),
      ),
    );
    list.scrollTop = list.scrollHeight;
  }

  // When the stream last told of each capture starting or ending: an answer to GET
  // /record/status asked for before that is older news, for that capture.
  const toldAt = new Map();

  function dropCapture(chatId) {
    S.captures.delete(chatId);
    for (const card of [...$("captures").children]) if (card.dataset.chat === chatId) card.remove();
    renderCaptureCount();
  }

  function upsertCapture(status) {
    const chatId = status.chatId;
    if (!given(chatId)) return;
    const cap = S.captures.get(chatId) || { status: {}, level: null, transcripts: [] };
    cap.status = status;
    if (status.level && typeof status.level === "object") cap.level = status.level;
    S.captures.set(chatId, cap);
    renderCapture(chatId);
  }

  function onCaptureStarted(event) {
    const { type: _type, ...status } = event;
    toldAt.set(status.chatId, performance.now());
    upsertCapture(status);
  }

  function onCaptureEnded(event) {
    toldAt.set(event.chatId, performance.now());
    dropCapture(event.chatId);
  }

  async function readCaptures() {
    const asked = performance.now();
    let data;
    try {
      data = await getJSON("/record/status");
    } catch (_) {
      return;
    }
    const newer = (chatId) => (toldAt.get(chatId) ?? -1) > asked;
    const live = Array.isArray(data.captures) ? data.captures : [];
    const ids = new Set(live.map((c) => c.chatId));
    for (const chatId of [...S.captures.keys()]) if (!ids.has(chatId) && !newer(chatId)) dropCapture(chatId);
    for (const status of live) if (!newer(status.chatId)) upsertCapture(status);
    for (const [chatId, at] of toldAt) if (at < asked && !S.captures.has(chatId)) toldAt.delete(chatId);
    renderCaptureCount();
  }
  const rereadCaptures = debounce(readCaptures, 300);

  function onCaptureLevels(event) {
    for (const level of Array.isArray(event.captures) ? event.captures : []) {
      const cap = S.captures.get(level.chatId);
      if (!cap) {
        rereadCaptures(); // started before this page knew of it
        continue;
      }
      cap.level = { peakDb: level.peakDb, rmsDb: level.rmsDb };
      const card = cardFor(level.chatId);
      renderMeter(card, cap.level);
      renderElapsed(card, cap);
    }
  }

  function onTranscript(event) {
    const cap = S.captures.get(event.chatId);
    if (!cap) {
      rereadCaptures();
      return;
    }
    const list = cap.transcripts;
    if (list.length && list[list.length - 1].final === false) list.pop(); // a partial is replaced
    list.push(event);
    if (list.length > MAX_TRANSCRIPTS) list.splice(0, list.length - MAX_TRANSCRIPTS);
    renderTranscripts(cardFor(event.chatId), list);
  }

  // -- MCP servers and plugins ---------------------------------------------------

  function renderMcp() {
    const rows = [...S.mcp.values()]
      .sort((a, b) => String(a.name).localeCompare(String(b.name)))
      .map((s) => {
        const tools = typeof s.tools === "number" ? s.tools : Array.isArray(s.toolNames) ? s.toolNames.length : undefined;
        const row = el(
          "tr",
          { "data-server": s.name },
          el("td", { class: "mono", text: show(s.name) }),
          el("td", {}, badge(s.status)),
          el("td", { class: "num", text: show(tools) }),
          el("td", { class: "num", text: show(s.restarts) }),
          el("td", { text: show(s.lastError) }),
        );
        if (Array.isArray(s.toolNames) && s.toolNames.length) row.title = s.toolNames.join("\n");
        return row;
      });
    $("mcp-servers").tBodies[0].replaceChildren(...rows);
    $("mcp-count").textContent = String(S.mcp.size);
  }

  async function readMcp() {
    try {
      const data = await getJSON("/mcp/servers");
      S.mcp = new Map((Array.isArray(data.servers) ? data.servers : []).map((s) => [s.name, s]));
    } catch (_) {
      return;
    }
    renderMcp();
  }
  const rereadMcp = debounce(readMcp, 500);

  function onMcpStatus(event) {
    const name = first(event, "server", "name");
    if (!given(name)) return;
    const entry = { ...(S.mcp.get(name) || { name }), status: event.status };
    if ("lastError" in event) entry.lastError = event.lastError;
    S.mcp.set(name, entry);
    renderMcp();
    rereadMcp();
  }

  function renderPlugins() {
    const rows = [...S.plugins.values()]
      .sort((a, b) => String(a.id).localeCompare(String(b.id)))
      .map((p) =>
        el(
          "tr",
          { "data-plugin": p.id },
          el("td", { class: "mono", text: given(p.version) ? `${p.id} ${p.version}` : show(p.id) }),
          el("td", {}, badge(p.status)),
          el("td", { class: "num", text: show(p.pid) }),
          el("td", { class: "mono", text: Array.isArray(p.tools) && p.tools.length ? p.tools.join(", ") : DASH }),
          el("td", { class: "num", text: show(p.restarts) }),
          el("td", { text: show(p.lastError) }),
        ),
      );
    $("plugins").tBodies[0].replaceChildren(...rows);
    $("plugin-count").textContent = String(S.plugins.size);
  }

  async function readPlugins() {
    try {
      const data = await getJSON("/plugins");
      S.plugins = new Map((Array.isArray(data.plugins) ? data.plugins : []).map((p) => [p.id, p]));
    } catch (_) {
      return; // no plugin nursery: the table stays empty
    }
    renderPlugins();
  }

  function onPluginStatus(event) {
    const id = first(event, "plugin", "id");
    if (!given(id)) return;
    const entry = { ...(S.plugins.get(id) || { id }) };
    for (const key of ["status", "pid", "restarts", "tools", "lastError"]) if (key in event) entry[key] = event[key];
    S.plugins.set(id, entry);
    renderPlugins();
  }

  // -- the event stream ------------------------------------------------------------

  function readAll() {
    return Promise.allSettled([readHealth(), readTunnel(), readCalls(), readCaptures(), readMcp(), readPlugins()]);
  }

  const HANDLERS = {
    tunnel_status: onTunnelStatus,
    call_started: onCallStarted,
    call_finished: onCallFinished,
    capture_started: onCaptureStarted,
    capture_levels: onCaptureLevels,
    transcript: onTranscript,
    capture_ended: onCaptureEnded,
    mcp_status: onMcpStatus,
    plugin_status: onPluginStatus,
    lagged: () => readAll(),
  };

  function setLive(state, text) {
    const node = $("live");
    node.dataset.live = state;
    node.textContent = text;
  }

  let source = null;
  let opened = false;
  let retryMs = RETRY_FIRST_MS;

  function connect() {
    setLive(source === null ? "connecting" : "reconnecting", source === null ? "connecting…" : "reconnecting…");
    const es = new EventSource("/events");
    source = es;
    es.addEventListener("open", async () => {
      retryMs = RETRY_FIRST_MS;
      setLive("live", "live");
      const reopened = opened;
      opened = true;
      S.finishedSinceOpen.clear();
      if (reopened) await readToken(); // before the state: then a click finds the new token
      readAll();
    });
    es.addEventListener("error", () => {
      // Own the retry: the browser gives up for good on some failures.
      es.close();
      setLive("reconnecting", "reconnecting…");
      setTimeout(connect, retryMs);
      retryMs = Math.min(RETRY_CAP_MS, retryMs * 2);
    });
    for (const [type, handler] of Object.entries(HANDLERS)) {
      es.addEventListener(type, (message) => {
        let event;
        try {
          event = JSON.parse(message.data);
        } catch (_) {
          return;
        }
        handler(event);
      });
    }
  }

  // -- start -----------------------------------------------------------------------

  $("disconnect").addEventListener("click", async () => {
    if (await post("/tunnel/disconnect")) rereadTunnel();
  });
  setInterval(() => {
    renderUptime();
    if (S.inFlight.size) renderInFlight();
    if (S.tunnel && (S.tunnel.since || S.tunnel.nextRetryAt)) renderTunnel(); // "for", "in"
    for (const [chatId, cap] of S.captures) renderElapsed(cardFor(chatId), cap);
  }, 1000);
  setInterval(readHealth, HEALTH_EVERY_MS);
  // ASR link, drops and warnings have no event of their own: read them while captures run.
  setInterval(() => {
    if (S.captures.size) readCaptures();
  }, CAPTURES_EVERY_MS);
  renderCaptureCount();
  connect();
})();
