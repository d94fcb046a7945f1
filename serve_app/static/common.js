// tracemill pages: what the session list, the replay page, the trends page and the dashboard
// share: the API key (from the URL fragment or the form, kept in sessionStorage, sent only as
// Authorization: Bearer), JSON calls in the one error shape, small DOM helpers, and the live
// stream (GET /v1/live) read with fetch() so that the key never goes into a URL.
// Plain JS, no dependencies, no inline code (CSP script-src 'self'), text only via textContent.
(function () {
  "use strict";

  var KEY_ITEM = "tracemill.apiKey";  // the dashboard's item: one key for every page of a tab
  var SVG_NS = "http://www.w3.org/2000/svg";
  var apiKey = null;
  // A signed-in page's access token (the dashboard's sign-in): this variable only, never storage,
  // so it dies with the page; a key, when there is one, is used instead.
  var accessToken = null;
  var delays = [];  // [{kind, session_id, ms}] of live events received, newest last

  function base() {
    var meta = document.querySelector('meta[name="tracemill-base"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function keyFromFragment() {
    var params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
    var key = params.get("key");
    if (key) {
      try { window.history.replaceState(null, "", window.location.pathname + window.location.search); } catch (e) { /* ignore */ }
    }
    return key;
  }

  function storeKey(key) {
    apiKey = key;
    try {
      if (key) { window.sessionStorage.setItem(KEY_ITEM, key); } else { window.sessionStorage.removeItem(KEY_ITEM); }
    } catch (e) { /* storage disabled: memory only */ }
  }

  function loadKey() {
    var key = keyFromFragment();
    if (key) { storeKey(key); return key; }
    try { apiKey = window.sessionStorage.getItem(KEY_ITEM); } catch (e) { apiKey = null; }
    return apiKey;
  }

  function credential() { return apiKey || accessToken; }

  function ApiError(status, body) {
    this.status = status;
    this.code = body && body.error ? body.error.code : "http_" + status;
    this.message = body && body.error && body.error.message ? body.error.message : "HTTP " + status;
  }

  function request(path, options, retried) {
    options = options || {};
    var headers = { "Authorization": "Bearer " + credential(), "Accept": options.accept || "application/json" };
    if (options.body !== undefined) { headers["Content-Type"] = "application/json"; }
    return fetch(base() + path, {
      method: options.method || "GET", headers: headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer"
    }).then(function (response) {
      if (response.status === 401 && !apiKey && accessToken && !retried) {
        // An access token that expired under the page: one refresh, then the same call again.
        return refresh().then(function (body) {
          if (body) { return request(path, options, true); }
          throw new ApiError(401, null);
        });
      }
      if (options.raw && response.ok) { return response; }
      return response.json().catch(function () { return null; }).then(function (body) {
        if (!response.ok) { throw new ApiError(response.status, body); }
        return body;
      });
    });
  }

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, text, parent) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (attrs[k] !== null && attrs[k] !== undefined) { node.setAttribute(k, String(attrs[k])); }
    });
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function svg(name, attrs, parent) {
    var node = document.createElementNS(SVG_NS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

  function qualityClass(q) {
    if (q === null || q === undefined) { return "q-none"; }
    return q >= 0.7 ? "q-good" : q >= 0.4 ? "q-fair" : "q-poor";
  }

  function qualityBadge(q) {
    return el("span", { "class": "qbadge " + qualityClass(q), "data-quality": q === null || q === undefined ? "" : q },
      q === null || q === undefined ? "–" : Number(q).toFixed(2));
  }

  function showError(message) {
    var node = $("error");
    if (!node) { return; }
    node.textContent = message || "";
    node.hidden = !message;
  }

  // --- signing in (POST v1/auth/signin) ------------------------------------------------------
  // The access token lives in `accessToken` only; the refresh token is an HttpOnly cookie
  // scoped to v1/auth/refresh. Each refresh rotates that cookie and a replayed one revokes the
  // whole sign-in, so two tabs refreshing at once would sign the person out: refreshes take a
  // Web Lock, and a tab that waited sends the cookie the refresh before it set.
  var refreshTimer = null;

  function authCall(method, path, body) {
    return fetch(base() + path, {
      method: method, cache: "no-store", credentials: "same-origin", referrerPolicy: "no-referrer",
      headers: body ? { "Content-Type": "application/json", "Accept": "application/json" } : { "Accept": "application/json" },
      body: body ? JSON.stringify(body) : undefined
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (json) {
        return { ok: response.ok, status: response.status, body: json };
      });
    });
  }

  function refreshOnce() {
    return authCall("POST", "v1/auth/refresh").then(function (r) {
      accessToken = r.ok && r.body ? r.body.access_token : null;
      return accessToken ? r.body : null;
    }, function () { accessToken = null; return null; });
  }

  // Resolves to the new token body, or null when the refresh cookie no longer signs in.
  function refresh() {
    if (navigator.locks && navigator.locks.request) {
      return navigator.locks.request("tracemill-refresh", refreshOnce);
    }
    return refreshOnce();
  }

  // Refresh a minute before the access token expires, for as long as the page is open.
  function keepSignedIn(body) {
    if (refreshTimer !== null) { window.clearTimeout(refreshTimer); }
    refreshTimer = window.setTimeout(function () {
      refresh().then(function (next) { if (next) { keepSignedIn(next); } });
    }, Math.max(30, body.expires_in - 60) * 1000);
  }

  function signOut() {
    accessToken = null;
    if (refreshTimer !== null) { window.clearTimeout(refreshTimer); refreshTimer = null; }
    return authCall("DELETE", "v1/auth/refresh").then(function () {}, function () {});
  }

  function showSignedIn(on) {
    var out = $("signout");
    if (out) { out.hidden = !on; }
  }

  function askForCredential() {
    $("key-form").hidden = false;
    var signin = $("signin-form");
    if (signin) { signin.hidden = false; }
  }

  function signedIn(body, onKey) {
    keepSignedIn(body);
    $("key-form").hidden = true;
    if ($("signin-form")) { $("signin-form").hidden = true; }
    showSignedIn(true);
    onKey();
  }

  function signInForm(onKey) {
    var form = $("signin-form");
    if (!form) { return; }
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var email = $("signin-email").value.trim();
      var password = $("signin-password").value;
      $("signin-password").value = "";
      authCall("POST", "v1/auth/signin", { email: email, password: password }).then(function (r) {
        if (r.ok && r.body) { showError(""); accessToken = r.body.access_token; signedIn(r.body, onKey); }
        else { showError(r.body && r.body.error ? r.body.error.message : "HTTP " + r.status); }
      }, function (err) { showError("cannot reach the server: " + err.message); });
    });
    $("signout").addEventListener("click", function () {
      signOut();
      showSignedIn(false);
      askForCredential();
    });
  }

  // The key and sign-in forms every page has: a key (fragment or this tab's storage) first, then
  // the refresh cookie of an earlier sign-in; ask when neither answers or the server refused.
  function keyForm(onKey) {
    var form = $("key-form");
    signInForm(onKey);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var key = $("key-input").value.trim();
      if (!key) { return; }
      $("key-input").value = "";
      storeKey(key);
      form.hidden = true;
      onKey();
    });
    $("key-forget").addEventListener("click", function () { storeKey(null); askForCredential(); });
    if (loadKey()) { onKey(); return; }
    refresh().then(function (body) { if (body) { signedIn(body, onKey); } else { askForCredential(); } });
  }

  function refused(err) {
    showError(err.message);
    if (err.status === 401 || err.status === 403) { askForCredential(); }
  }

  // --- live updates: SSE over fetch, reconnecting with Last-Event-ID -------------------------

  function live(onEvent, onState) {
    var lastId = null;
    var seen = {};
    var stopped = false;
    var attempt = 0;
    var controller = null;

    function dispatch(block) {
      var id = null, name = "message", data = [];
      block.split("\n").forEach(function (line) {
        if (line.charAt(0) === ":") { return; }
        var i = line.indexOf(":");
        var field = i < 0 ? line : line.slice(0, i);
        var value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        if (field === "id") { id = value; } else if (field === "event") { name = value; } else if (field === "data") { data.push(value); }
      });
      if (id !== null) { lastId = id; }
      if (!data.length || name === "live.ready") { return; }
      if (id !== null) {
        if (seen[id]) { return; }  // the catch-up overlap may repeat an event
        seen[id] = true;
      }
      var body = null;
      try { body = JSON.parse(data.join("\n")); } catch (e) { return; }
      // How long after the database change this page heard of it (the e2e reads these).
      if (body && body.at) { delays.push({ kind: name, session_id: body.session_id, ms: Date.now() - Date.parse(body.at) }); }
      onEvent(name, body, Number(id));
    }

    function connect() {
      if (stopped || !credential()) { return; }
      controller = new AbortController();
      // Read at each (re)connect: a refreshed access token is used from the next stream on.
      var headers = { "Authorization": "Bearer " + credential(), "Accept": "text/event-stream" };
      if (lastId !== null) { headers["Last-Event-ID"] = lastId; }
      fetch(base() + "v1/live", {
        headers: headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
        signal: controller.signal
      }).then(function (response) {
        if (!response.ok || !response.body) {
          if (response.status === 401 || response.status === 403) { onState("refused"); stopped = true; return null; }
          throw new Error("HTTP " + response.status);
        }
        attempt = 0;
        onState("live");
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) { return null; }
            buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, "\n");
            var at;
            while ((at = buffer.indexOf("\n\n")) >= 0) {
              dispatch(buffer.slice(0, at));
              buffer = buffer.slice(at + 2);
            }
            return pump();
          });
        }
        return pump();
      }).catch(function () { /* reconnect below */ }).then(function () {
        if (stopped) { return; }
        onState("reconnecting");
        attempt += 1;
        window.setTimeout(connect, Math.min(5000, 250 * attempt));
      });
    }

    connect();
    return { stop: function () { stopped = true; if (controller) { controller.abort(); } },
             lastId: function () { return lastId; } };
  }

  // A page's start: once there is a key, load its data and follow the live stream (one at a
  // time: a new key replaces the stream), showing its state in the #live-state badge.
  function start(load, onEvent, onState) {
    var conn = null;
    function badge(state) {
      var node = $("live-state");
      if (node) { node.className = "badge " + (state === "live" ? "ok" : "bad"); node.textContent = state; }
      if (onState) { onState(state); }
      // A signed-in page whose token expired: one refresh, then the stream again.
      if (state === "refused" && !apiKey && accessToken) {
        refresh().then(function (body) { if (body) { conn = live(onEvent, badge); } else { askForCredential(); } });
      }
    }
    keyForm(function () {
      load();
      if (conn) { conn.stop(); }
      conn = live(onEvent, badge);
    });
  }

  function ago(iso) {
    var s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (isNaN(s)) { return iso || "–"; }
    if (s < 120) { return s + " s ago"; }
    if (s < 7200) { return Math.round(s / 60) + " min ago"; }
    if (s < 172800) { return Math.round(s / 3600) + " h ago"; }
    return Math.round(s / 86400) + " d ago";
  }

  window.TM = {
    base: base, loadKey: loadKey, storeKey: storeKey, key: function () { return apiKey; },
    useToken: function (token) { accessToken = token || null; }, refresh: refresh, credential: credential,
    request: request, $: $, el: el, svg: svg, clear: clear, qualityBadge: qualityBadge,
    qualityClass: qualityClass, showError: showError, keyForm: keyForm, refused: refused,
    live: live, start: start, ago: ago, liveDelays: function () { return delays.slice(); }
  };
})();
