// The session list: filters, full-text search, sortable columns, quality badges, cursor paging
// (GET /v1/sessions), and live updates (GET /v1/live): a listed session's status and quality
// change in place; a new session reloads the first page.
(function () {
  "use strict";

  var T = window.TM;
  var FIELDS = ["q", "status", "type", "quality_min", "quality_max", "since", "until", "site", "intent",
                "frustration", "sentiment", "review_state"];
  var INPUTS = { q: "f-q", status: "f-status", type: "f-type", quality_min: "f-qmin", quality_max: "f-qmax",
                 since: "f-since", until: "f-until", site: "f-site", intent: "f-intent",
                 frustration: "f-frustration", sentiment: "f-sentiment", review_state: "f-review" };
  var PAGE_SIZE = 25;
  var state = { filters: {}, sort: "-started_at", cursors: [null], page: 0 };
  var reloadTimer = null;

  function readUrl() {
    var params = new URLSearchParams(window.location.search);
    FIELDS.forEach(function (f) { if (params.get(f)) { state.filters[f] = params.get(f); } });
    if (params.get("sort")) { state.sort = params.get("sort"); }
    FIELDS.forEach(function (f) { T.$(INPUTS[f]).value = state.filters[f] || ""; });
  }

  function writeUrl() {
    var params = new URLSearchParams();
    FIELDS.forEach(function (f) { if (state.filters[f]) { params.set(f, state.filters[f]); } });
    if (state.sort !== "-started_at") { params.set("sort", state.sort); }
    var qs = params.toString();
    try { window.history.replaceState(null, "", window.location.pathname + (qs ? "?" + qs : "")); } catch (e) { /* ignore */ }
  }

  function nextDay(date) {
    var d = new Date(date + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + 1);
    return d.toISOString().replace(".000Z", "Z");
  }

  function query() {
    var params = new URLSearchParams();
    FIELDS.forEach(function (f) {
      var v = state.filters[f];
      if (!v) { return; }
      if (f === "since") { v = v + "T00:00:00Z"; }
      if (f === "until") { v = nextDay(v); }
      params.set(f, v);
    });
    params.set("sort", state.sort);
    params.set("limit", String(PAGE_SIZE));
    var cursor = state.cursors[state.page];
    if (cursor) { params.set("cursor", cursor); }
    return params.toString();
  }

  function cell(tr, text, cls) { return T.el("td", { "class": cls || null }, text, tr); }

  function renderRow(body, s) {
    var tr = T.el("tr", { "data-session-id": s.session_id, "data-status": s.status,
                          "data-quality": s.quality === null ? "" : s.quality }, null, body);
    var idCell = cell(tr, null, "id");
    T.el("a", { href: "sessions/" + encodeURIComponent(s.session_id) }, s.session_id.slice(0, 8), idCell);
    // The card's title (else the task, else the first page title) leads, its caption below.
    var task = cell(tr, s.card_title || s.task || s.title || "–", "task");
    if (s.card_title && s.task) { task.setAttribute("title", "task: " + s.task); } else if (s.title && s.task) { task.setAttribute("title", s.title); }
    if (s.caption) { T.el("div", { "class": "caption muted" }, s.caption, task); }
    cell(tr, s.site || "–");
    cell(tr, s.session_type || "–");
    T.el("span", { "class": "status s-" + s.status }, s.status, cell(tr, null, "status-cell"));
    var started = cell(tr, null);
    if (s.started_at) { T.el("time", { datetime: s.started_at, title: s.started_at }, T.ago(s.started_at), started); } else { started.textContent = "–"; }
    cell(tr, s.event_count, "num");
    cell(tr, null, "num quality-cell").appendChild(T.qualityBadge(s.quality));
    cell(tr, s.intent || "–");
    cell(tr, s.frustration ? String(s.frustration) : "–", s.frustration ? "num frustrated" : "num");
    var mood = cell(tr, s.sentiment || "–", s.sentiment ? "sentiment-" + s.sentiment : null);
    if (s.sentiment_polarity !== null && s.sentiment_polarity !== undefined) { mood.setAttribute("title", "polarity " + s.sentiment_polarity.toFixed(2)); }
    cell(tr, s.review_state || "none");
  }

  function renderSort() {
    Array.prototype.forEach.call(document.querySelectorAll("button.sort"), function (b) {
      var key = b.getAttribute("data-sort");
      var dir = state.sort === key ? "asc" : state.sort === "-" + key ? "desc" : "";
      b.setAttribute("data-dir", dir);
      b.setAttribute("aria-sort", dir ? (dir === "asc" ? "ascending" : "descending") : "none");
    });
  }

  function load() {
    if (!T.credential()) { return; }  // a key or a signed-in access token
    writeUrl();
    renderSort();
    T.request("v1/sessions?" + query()).then(function (page) {
      T.showError("");
      var body = T.$("sessions").tBodies[0];
      T.clear(body);
      page.items.forEach(function (s) { renderRow(body, s); });
      T.$("total").textContent = String(page.total);
      T.$("empty").hidden = page.items.length > 0;
      state.cursors[state.page + 1] = page.next_cursor;
      T.$("next").disabled = !page.next_cursor;
      T.$("prev").disabled = state.page === 0;
      T.$("page-no").textContent = "page " + (state.page + 1) + " of " + Math.max(1, Math.ceil(page.total / PAGE_SIZE));
      document.body.setAttribute("data-loaded", String(Date.now()));
    }).catch(T.refused);
  }

  function restart() {
    state.cursors = [null];
    state.page = 0;
    load();
  }

  function onLive(name, data) {
    var row = document.querySelector('tr[data-session-id="' + data.session_id + '"]');
    if (row) {
      row.setAttribute("data-status", data.status);
      var status = row.querySelector(".status");
      status.textContent = data.status;
      status.className = "status s-" + data.status;
      if (name === "session.finalized") {
        row.setAttribute("data-quality", data.quality === null ? "" : data.quality);
        var q = row.querySelector(".quality-cell");
        T.clear(q);
        q.appendChild(T.qualityBadge(data.quality));
      }
      row.classList.add("flash");
      window.setTimeout(function () { row.classList.remove("flash"); }, 1500);
      return;
    }
    if (state.page === 0 && reloadTimer === null) {  // a new session may belong on the first page
      reloadTimer = window.setTimeout(function () { reloadTimer = null; load(); }, 300);
    }
  }

  function start() {
    readUrl();
    T.$("filters").addEventListener("submit", function (ev) {
      ev.preventDefault();
      state.filters = {};
      FIELDS.forEach(function (f) { var v = T.$(INPUTS[f]).value.trim(); if (v) { state.filters[f] = v; } });
      restart();
    });
    T.$("f-reset").addEventListener("click", function () {
      FIELDS.forEach(function (f) { T.$(INPUTS[f]).value = ""; });
      state.filters = {};
      restart();
    });
    Array.prototype.forEach.call(document.querySelectorAll("button.sort"), function (b) {
      b.addEventListener("click", function () {
        var key = b.getAttribute("data-sort");
        state.sort = state.sort === "-" + key ? key : "-" + key;
        restart();
      });
    });
    T.$("next").addEventListener("click", function () { state.page += 1; load(); });
    T.$("prev").addEventListener("click", function () { state.page = Math.max(0, state.page - 1); load(); });
    T.start(load, onLive, function (state) {
      T.$("live-note").textContent = state === "live" ? "updating live" : "live updates " + state;
    });
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
