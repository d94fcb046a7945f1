// tracemill operations dashboard: polls /v1/stats and draws it. Plain JS, no dependencies,
// no inline code (the page's CSP is script-src 'self'), text only through textContent.
(function () {
  "use strict";

  var POLL_MS = 2000;
  var SPARK_WINDOW_MS = 60000;
  var SVG_NS = "http://www.w3.org/2000/svg";
  var STATUSES = ["recording", "finalizing", "ready", "rejected", "failed"];

  var rates = [];        // [{t: ms, v: events/s}] of the last minute, kept client-side
  var timer = null;
  var apiKey = null;

  function $(id) { return document.getElementById(id); }

  function setText(id, value) {
    var el = $(id);
    if (el) { el.textContent = value === null || value === undefined ? "–" : String(value); }
  }

  function clear(el) { while (el.firstChild) { el.removeChild(el.firstChild); } }

  function svg(name, attrs, parent) {
    var el = document.createElementNS(SVG_NS, name);
    Object.keys(attrs || {}).forEach(function (k) { el.setAttribute(k, String(attrs[k])); });
    if (parent) { parent.appendChild(el); }
    return el;
  }

  // The key: from the URL fragment (#key=…, never sent to the server), else sessionStorage;
  // pages/common.js keeps it, for every page of the tab.
  function storeKey(key) {
    apiKey = key;
    window.TM.storeKey(key);
  }

  function loadKey() { return window.TM.loadKey(); }

  function showError(message) {
    var el = $("error");
    el.textContent = message;
    el.hidden = !message;
  }

  function setConnection(state, text) {
    var el = $("connection");
    el.className = "badge " + state;
    el.textContent = text;
  }

  function askForKey() {
    $("key-form").hidden = false;
    $("signin-form").hidden = false;
    $("key-input").focus();
  }

  // --- rendering -------------------------------------------------------------------------

  function renderStatuses(statuses) {
    STATUSES.forEach(function (s) { setText("status-" + s, statuses[s]); });
  }

  function renderEvents(events) {
    setText("events-per-s", Number(events.per_s_10s).toFixed(1));
    setText("events-per-s-60", Number(events.per_s_60s).toFixed(1));
    setText("events-last-60s", events.last_60s);
    var now = Date.now();
    rates.push({ t: now, v: Number(events.per_s_10s) });
    while (rates.length && rates[0].t < now - SPARK_WINDOW_MS) { rates.shift(); }
    drawSparkline($("events-sparkline"), rates, now);
  }

  function drawSparkline(el, points, now) {
    var w = 300, h = 60, pad = 3;
    clear(el);
    svg("line", { x1: 0, y1: h - pad, x2: w, y2: h - pad, "class": "baseline" }, el);
    if (!points.length) { return; }
    var max = Math.max.apply(null, points.map(function (p) { return p.v; }).concat([1]));
    var coords = points.map(function (p) {
      var x = (p.t - (now - SPARK_WINDOW_MS)) / SPARK_WINDOW_MS * w;
      var y = h - pad - (p.v / max) * (h - 2 * pad);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    if (coords.length === 1) { coords.unshift("0," + coords[0].split(",")[1]); }
    svg("polyline", { points: coords.join(" ") }, el);
    var title = svg("title", {}, el);
    title.textContent = "peak " + max.toFixed(1) + " events/s in the last minute";
  }

  function renderQuality(q) {
    setText("quality-sessions", q.sessions);
    setText("quality-ready", q.ready);
    setText("quality-rejected", q.rejected);
    setText("quality-failed", q.failed);
    setText("quality-mean", q.mean === null ? "–" : Number(q.mean).toFixed(2));
    var el = $("quality-histogram");
    var w = 400, h = 160, left = 8, right = 8, top = 14, bottom = 22;
    var bins = q.bins || [];
    clear(el);
    var max = Math.max.apply(null, bins.map(function (b) { return b.count; }).concat([1]));
    var slot = (w - left - right) / Math.max(1, bins.length);
    var plotH = h - top - bottom;
    svg("line", { x1: left, y1: h - bottom, x2: w - right, y2: h - bottom, "class": "axis" }, el);
    bins.forEach(function (b, i) {
      var bh = b.count ? Math.max(1, (b.count / max) * plotH) : 0;
      var rect = svg("rect", {
        "class": "bar",
        x: (left + i * slot + 2).toFixed(1), y: (h - bottom - bh).toFixed(1),
        width: (slot - 4).toFixed(1), height: bh.toFixed(1),
        "data-lo": b.lo, "data-hi": b.hi, "data-count": b.count
      }, el);
      var title = svg("title", {}, rect);
      title.textContent = b.lo.toFixed(1) + "–" + b.hi.toFixed(1) + ": " + b.count;
      if (b.count) {
        var label = svg("text", { x: (left + i * slot + slot / 2).toFixed(1), y: (h - bottom - bh - 3).toFixed(1), "text-anchor": "middle" }, el);
        label.textContent = String(b.count);
      }
    });
    [0, 0.5, 1].forEach(function (v) {
      var t = svg("text", { x: (left + v * (w - left - right)).toFixed(1), y: h - 6, "text-anchor": v === 0 ? "start" : v === 1 ? "end" : "middle" }, el);
      t.textContent = String(v);
    });
  }

  function ago(iso, nowIso) {
    var s = Math.max(0, Math.round((Date.parse(nowIso) - Date.parse(iso)) / 1000));
    if (isNaN(s)) { return iso; }
    if (s < 120) { return s + " s ago"; }
    if (s < 7200) { return Math.round(s / 60) + " min ago"; }
    return Math.round(s / 3600) + " h ago";
  }

  function renderLive(live, generatedAt) {
    setText("live-count", live.count);
    var body = $("sessions-table").tBodies[0];
    clear(body);
    live.recent.forEach(function (s) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-session-id", s.session_id);
      [[s.session_id, "id"], [s.type, ""], [s.status, ""], [s.event_count, "num"], [s.screenshot_count, "num"]]
        .forEach(function (cell) {
          var td = document.createElement("td");
          if (cell[1]) { td.className = cell[1]; }
          td.textContent = String(cell[0]);
          tr.appendChild(td);
        });
      var td = document.createElement("td");
      var time = document.createElement("time");
      time.setAttribute("datetime", s.updated_at);
      time.textContent = ago(s.updated_at, generatedAt);
      td.appendChild(time);
      tr.appendChild(td);
      body.appendChild(tr);
    });
    $("sessions-empty").hidden = live.recent.length > 0;
  }

  function renderJobs(jobs) {
    var list = $("jobs");
    clear(list);
    jobs.forEach(function (j) {
      var li = document.createElement("li");
      li.textContent = j.kind + " " + (j.job_id || "?") + ": " + (j.status || "unknown") +
        (j.created_at ? " (" + j.created_at + ")" : "");
      list.appendChild(li);
    });
    $("jobs-empty").hidden = jobs.length > 0;
  }

  var MODEL_COLUMNS = ["queued_lines", "open_batches", "calls", "batch_lines", "tokens_in", "tokens_out"];

  function renderModels(models) {
    var body = $("models");
    clear(body);
    models.forEach(function (m) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-kind", m.kind);
      var name = document.createElement("td");
      name.textContent = m.kind;
      tr.appendChild(name);
      MODEL_COLUMNS.concat(["cost_usd"]).forEach(function (key) {
        var td = document.createElement("td");
        td.className = "num";
        td.setAttribute("data-col", key);
        td.textContent = key === "cost_usd" ? m.cost_usd.toFixed(4) : String(m[key]);
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function render(stats) {
    renderStatuses(stats.statuses);
    renderEvents(stats.events);
    setText("backlog", stats.backlog.finalizing);
    renderModels(stats.backlog.models || []);
    renderQuality(stats.quality);
    renderLive(stats.live, stats.generated_at);
    renderJobs(stats.jobs || []);
    var updated = $("updated-at");
    updated.setAttribute("datetime", stats.generated_at);
    updated.textContent = new Date(Date.parse(stats.generated_at)).toLocaleTimeString();
  }

  // --- polling ---------------------------------------------------------------------------

  function errorMessage(body, status) {
    if (body && body.error && body.error.message) { return body.error.message; }
    return "HTTP " + status;
  }

  function schedule() {
    if (timer !== null) { window.clearTimeout(timer); }
    timer = window.setTimeout(poll, POLL_MS);
  }

  function poll() {
    timer = null;
    if (!apiKey && !access) { askForKey(); return; }
    fetch("v1/stats", {
      headers: { "Authorization": "Bearer " + (apiKey || access), "Accept": "application/json" },
      cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer"
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (body) {
        if (response.ok && body) {
          showError("");
          setConnection("ok", "live");
          render(body);
          schedule();
          followLive();
        } else if (response.status === 401 && access && !apiKey) {
          refreshAccess(poll, askForKey);  // an expired access token: one refresh, then ask
        } else if (response.status === 401 || response.status === 403) {
          // A wrong key stays wrong: stop polling until another one is entered.
          showError(errorMessage(body, response.status));
          setConnection("bad", response.status === 401 ? "unauthenticated" : "forbidden");
          askForKey();
        } else {
          showError(errorMessage(body, response.status));
          setConnection("bad", "error " + response.status);
          schedule();
        }
      });
    }).catch(function (err) {
      showError("cannot reach the server: " + err.message);
      setConnection("bad", "offline");
      schedule();
    });
  }

  // Between polls, a session created or finalised (GET /v1/live, pages/common.js) polls at once.
  var live = null;
  function followLive() {
    if (live || (!apiKey && !access)) { return; }  // the key, or the token common.js holds in memory
    live = window.TM.live(function () {
      if (timer !== null) { window.clearTimeout(timer); }
      timer = window.setTimeout(poll, 200);
    }, function (state) {
      // Refused (an expired or revoked token, a revoked key): the next good poll follows again.
      if (state === "refused") { live = null; if (access && !apiKey) { refreshAccess(poll, askForKey); } }
    });
  }

  // Signing in (POST v1/auth/signin): the access token stays in this variable only, never in
  // storage; the refresh token is an HttpOnly cookie scoped to v1/auth/refresh, which the
  // browser sends there alone and no script can read. A key, when given, is used instead.
  var access = null;
  var refreshTimer = null;

  function useTokens(body) {
    access = body.access_token;
    window.TM.useToken(access);
    $("signin-form").hidden = true;
    $("key-form").hidden = true;
    if (refreshTimer !== null) { window.clearTimeout(refreshTimer); }
    // Refresh a minute before the access token expires.
    refreshTimer = window.setTimeout(function () { refreshAccess(function () {}, askForKey); },
                                     Math.max(30, body.expires_in - 60) * 1000);
  }

  function authCall(method, path, body) {
    return fetch(path, {
      method: method, cache: "no-store", credentials: "same-origin", referrerPolicy: "no-referrer",
      headers: body ? { "Content-Type": "application/json", "Accept": "application/json" } : { "Accept": "application/json" },
      body: body ? JSON.stringify(body) : undefined
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (json) {
        return { ok: response.ok, status: response.status, body: json };
      });
    });
  }

  // Through common.js, which lets one tab refresh at a time (a replayed cookie signs out).
  function refreshAccess(then, otherwise) {
    window.TM.refresh().then(function (body) {
      if (body) { useTokens(body); then(); } else { forgetAccess(); otherwise(); }
    }, function () { forgetAccess(); otherwise(); });
  }

  function forgetAccess() {
    access = null;
    window.TM.useToken(null);
    if (live && !apiKey) { live.stop(); live = null; }
  }

  function signIn(ev) {
    ev.preventDefault();
    var email = $("signin-email").value.trim();
    var password = $("signin-password").value;
    $("signin-password").value = "";
    authCall("POST", "v1/auth/signin", { email: email, password: password }).then(function (r) {
      if (r.ok && r.body) { showError(""); useTokens(r.body); $("signout").hidden = false; rates = []; poll(); }
      else { showError(errorMessage(r.body, r.status)); }
    }).catch(function (err) { showError("cannot reach the server: " + err.message); });
  }

  function signOut() {
    forgetAccess();
    if (refreshTimer !== null) { window.clearTimeout(refreshTimer); refreshTimer = null; }
    authCall("DELETE", "v1/auth/refresh").then(function () {}, function () {});
    $("signout").hidden = true;
    setConnection("idle", "not connected");
    askForKey();
  }

  function start() {
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", signOut);
    $("key-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var key = $("key-input").value.trim();
      if (!key) { return; }
      $("key-input").value = "";
      storeKey(key);
      $("key-form").hidden = true;
      rates = [];
      poll();
    });
    $("key-forget").addEventListener("click", function () {
      storeKey(null);
      if (live) { live.stop(); live = null; }
      if (timer !== null) { window.clearTimeout(timer); timer = null; }
      setConnection("idle", "not connected");
      askForKey();
    });
    apiKey = loadKey();
    // No key: a refresh cookie from an earlier sign-in signs this page in again.
    if (apiKey) { poll(); } else { refreshAccess(function () { $("signout").hidden = false; poll(); }, askForKey); }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
