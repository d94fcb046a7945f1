// The session page: replays a recorded session step by step (the screenshot in effect at each
// event, drawn on a canvas with the acted-on element's box), lists the events in step with the
// frame, shows the selectors and whether each was unique, the quality scores with reasons and
// suggestions, the context analysis, and lets a reviewer flag a step or the whole session.
// Data: GET /v1/sessions/{id}/replay, …/events (paged), …/screenshots/{sid}, …/flags.
(function () {
  "use strict";

  var T = window.TM;
  var PLAY_MS = 700;
  var BOX_COLOUR = "#ff00d4";
  var sessionId = decodeURIComponent(window.location.pathname.replace(/\/+$/, "").split("/").pop());
  var api = "v1/sessions/" + encodeURIComponent(sessionId);
  var bundle = null;
  var steps = [];          // events by seq
  var frames = [];         // painted screenshots by seq
  var bitmaps = {};        // screenshot_id -> Promise<ImageBitmap>
  var current = -1;
  var drawToken = 0;
  var playTimer = null;

  function loadEvents(afterSeq, into) {
    return T.request(api + "/events?limit=500&after_seq=" + afterSeq).then(function (page) {
      Array.prototype.push.apply(into, page.events);
      return page.next_after_seq === null ? into : loadEvents(page.next_after_seq, into);
    });
  }

  function bitmap(frame) {
    if (!bitmaps[frame.screenshot_id]) {
      bitmaps[frame.screenshot_id] = T.request(api + "/screenshots/" + encodeURIComponent(frame.screenshot_id),
        { raw: true, accept: "image/webp" })
        .then(function (response) { return response.blob(); })
        .then(function (blob) { return window.createImageBitmap(blob); });
    }
    return bitmaps[frame.screenshot_id];
  }

  // The frame in effect at an event: the last screenshot taken at or before it.
  function frameAt(seq) {
    var found = null;
    frames.forEach(function (f) { if (f.seq !== null && f.seq <= seq) { found = f; } });
    return found || (frames.length && frames[0].seq === null ? frames[0] : null);
  }

  function targetOf(ev) { return ev.target && typeof ev.target === "object" ? ev.target : null; }

  function draw(step) {
    var canvas = T.$("frame");
    var frame = frameAt(step.seq);
    var token = ++drawToken;
    T.$("no-frame").hidden = !!frame;
    canvas.hidden = !frame;
    if (!frame) { canvas.removeAttribute("data-frame"); return; }
    bitmap(frame).then(function (img) {
      if (token !== drawToken) { return; }
      canvas.width = img.width;
      canvas.height = img.height;
      var ctx = canvas.getContext("2d");
      ctx.drawImage(img, 0, 0);
      canvas.setAttribute("data-frame", frame.screenshot_id);
      canvas.setAttribute("data-step", String(step.seq));
      var target = targetOf(step);
      var box = target && target.bbox;
      if (!box) { canvas.removeAttribute("data-box"); return; }
      var viewportW = bundle.viewport && bundle.viewport.width ? bundle.viewport.width : img.width;
      var scale = img.width / viewportW;
      var x = Math.round(box.x * scale), y = Math.round(box.y * scale);
      var w = Math.round(box.width * scale), h = Math.round(box.height * scale);
      ctx.lineWidth = Math.max(3, Math.round(3 * scale));
      ctx.strokeStyle = BOX_COLOUR;
      ctx.strokeRect(x, y, w, h);
      canvas.setAttribute("data-box", [x, y, w, h].join(","));
    }).catch(function (err) { T.showError("screenshot " + frame.screenshot_id + ": " + err.message); });
  }

  function describe(ev) {
    var t = targetOf(ev);
    var what = t ? (t.text || (t.attributes && (t.attributes["aria-label"] || t.attributes.name)) || t.tag || "") : "";
    if (ev.type === "navigation") { what = ev.url || ""; }
    if (ev.type === "keypress") { what = ev.key || ""; }
    return what;
  }

  function ms(ts) { return typeof ts === "number" ? ts : Date.parse(ts); }  // epoch ms or RFC 3339

  function renderStep(step) {
    var intents = bundle.context ? bundle.context.intents : null;
    var dl = T.$("step-details");
    T.clear(dl);
    var t0 = steps.length ? ms(steps[0].ts) : NaN;
    var target = targetOf(step);
    [["seq", step.seq], ["type", step.type], ["at", isNaN(t0) ? step.ts : "+" + ((ms(step.ts) - t0) / 1000).toFixed(1) + " s"],
     ["intent", intents ? intents[current] : null], ["url", step.url], ["element", target ? (target.tag || "") + " " + (target.text || "") : null],
     ["value", step.value === undefined ? null : (step.masked ? "(masked) " : "") + String(step.value)]]
      .forEach(function (pair) {
        if (pair[1] === null || pair[1] === undefined || pair[1] === "") { return; }
        T.el("dt", {}, pair[0], dl);
        T.el("dd", { id: "step-" + pair[0] }, pair[1], dl);
      });
    var body = T.$("selectors").tBodies[0];
    T.clear(body);
    ((target && target.selectors) || []).forEach(function (s) {
      var tr = T.el("tr", { "data-unique": String(!!s.unique) }, null, body);
      T.el("td", {}, s.kind, tr);
      T.el("td", { "class": "mono" }, s.value, tr);
      T.el("td", { "class": s.unique ? "ok" : "bad" }, s.unique ? "unique" : "not unique", tr);
    });
    T.$("selectors").hidden = !(target && target.selectors && target.selectors.length);
  }

  function show(index) {
    if (!steps.length) { return; }
    index = Math.max(0, Math.min(steps.length - 1, index));
    var previous = document.querySelector("#events li.current");
    if (previous) { previous.classList.remove("current"); previous.removeAttribute("aria-current"); }
    current = index;
    var step = steps[index];
    T.$("scrubber").value = String(index);
    T.$("step-label").textContent = (index + 1) + " / " + steps.length + " · seq " + step.seq + " · " + step.type;
    var li = T.$("ev-" + step.seq);
    if (li) {
      li.classList.add("current");
      li.setAttribute("aria-current", "step");
      li.scrollIntoView({ block: "nearest" });
    }
    document.body.setAttribute("data-step", String(step.seq));
    renderStep(step);
    draw(step);
  }

  function togglePlay(force) {
    var playing = playTimer !== null;
    if (force === false || playing) {
      if (playTimer !== null) { window.clearInterval(playTimer); }
      playTimer = null;
      T.$("play").textContent = "▶";
      T.$("play").setAttribute("aria-label", "play");
      return;
    }
    if (current >= steps.length - 1) { show(0); }
    playTimer = window.setInterval(function () {
      if (current >= steps.length - 1) { togglePlay(false); return; }
      show(current + 1);
    }, PLAY_MS);
    T.$("play").textContent = "❚❚";
    T.$("play").setAttribute("aria-label", "pause");
  }

  function renderEvents() {
    var list = T.$("events");
    T.clear(list);
    var intents = bundle.context ? bundle.context.intents : null;
    var frustrated = {};
    ((bundle.context && bundle.context.frustration) || []).forEach(function (s) { s.seqs.forEach(function (q) { frustrated[q] = s.kind; }); });
    steps.forEach(function (ev, i) {
      var li = T.el("li", { id: "ev-" + ev.seq, "data-seq": ev.seq, "data-index": i, tabindex: "-1" }, null, list);
      T.el("span", { "class": "seq mono" }, ev.seq, li);
      T.el("span", { "class": "etype" }, ev.type, li);
      T.el("span", { "class": "what" }, describe(ev), li);
      if (intents && intents[i]) { T.el("span", { "class": "chip" }, intents[i], li); }
      if (frustrated[ev.seq]) { T.el("span", { "class": "chip bad" }, frustrated[ev.seq], li); }
      li.addEventListener("click", function () { togglePlay(false); show(i); });
    });
  }

  function renderTimeline() {
    var box = T.$("timeline");
    T.clear(box);
    var svgEl = T.svg("svg", { viewBox: "0 0 1000 16", preserveAspectRatio: "none", "class": "ticks" }, box);
    var n = Math.max(1, steps.length - 1);
    var indexOf = {};
    steps.forEach(function (ev, i) { indexOf[ev.seq] = i; });
    frames.forEach(function (f) {
      if (f.seq === null || indexOf[f.seq] === undefined) { return; }
      T.svg("rect", { x: (indexOf[f.seq] / n * 996).toFixed(1), y: 2, width: 4, height: 12, "class": "tick-frame" }, svgEl);
    });
    ((bundle.context && bundle.context.frustration) || []).forEach(function (s) {
      var i = indexOf[s.seqs[0]];
      if (i !== undefined) { T.svg("rect", { x: (i / n * 996).toFixed(1), y: 0, width: 4, height: 4, "class": "tick-bad" }, svgEl); }
    });
  }

  // The card's contact sheet (GET …/contact-sheet), drawn on a canvas: the page's CSP allows
  // images from 'self' and data: only, and the request carries the credential in a header.
  var sheetShown = null;
  function renderSheet(card) {
    var frames = (card && card.sheet_frames) || [];
    var box = T.$("card-sheet");
    if (!card || !card.sheet_key || !frames.length) { box.hidden = true; return; }
    if (sheetShown === card.sheet_key + ":" + frames.length) { return; }
    sheetShown = card.sheet_key + ":" + frames.length;
    T.request(api + "/contact-sheet", { raw: true, accept: "image/webp" })
      .then(function (response) { return response.blob(); })
      .then(function (blob) { return window.createImageBitmap(blob); })
      .then(function (img) {
        var canvas = T.$("card-sheet-canvas");
        canvas.width = img.width; canvas.height = img.height;
        canvas.getContext("2d").drawImage(img, 0, 0);
        T.$("card-sheet-note").textContent = "contact sheet: " + frames.length + " key frame" + (frames.length === 1 ? "" : "s")
          + " (steps " + frames.map(function (f) { return f.seq; }).join(", ") + ")";
        box.hidden = false;
      })
      .catch(function () { sheetShown = null; box.hidden = true; });
  }

  function renderSummary() {
    var s = bundle.session;
    var card = bundle.card;
    T.$("title").textContent = (card && card.title) || s.task || "session " + s.session_id.slice(0, 8);
    T.$("card-caption").textContent = card ? card.caption : "";
    T.$("card-caption").hidden = !card;
    var mood = bundle.sentiment;
    T.$("card-meta").textContent = card ? "card by " + (card.source === "model" ? "the model " + card.model : "the local fallback")
      + (s.task ? " · task: " + s.task : "")
      + (mood && mood.label ? " · typed text " + mood.label + " (" + mood.texts + " texts, polarity " + mood.polarity.toFixed(2) + ")" : "") : "";
    T.$("card-meta").hidden = !card;
    renderSheet(card);
    T.$("s-id").textContent = s.session_id;
    T.$("s-type").textContent = s.type;
    T.$("s-status").textContent = s.status;
    T.$("s-status").className = "status s-" + s.status;
    T.$("s-events").textContent = String(s.event_count);
    T.$("s-shots").textContent = String(s.screenshot_count);
    var q = T.$("s-quality");
    T.clear(q);
    q.appendChild(T.qualityBadge(s.quality ? s.quality.overall : null));
  }

  function renderQuality() {
    var q = bundle.session.quality;
    var scores = T.$("scores");
    T.clear(scores);
    ["overall", "completeness", "selector_reliability", "screenshot_quality", "training_value"].forEach(function (k) {
      if (!q || q[k] === null || q[k] === undefined) { return; }
      var row = T.el("div", { "class": "score", "data-score": k }, null, scores);
      T.el("span", {}, k.replace(/_/g, " "), row);
      T.el("meter", { min: 0, max: 1, low: 0.4, high: 0.7, optimum: 1, value: q[k] }, null, row);
      T.el("span", { "class": "mono" }, Number(q[k]).toFixed(2), row);
    });
    [["reasons", q ? q.reasons : []], ["suggestions", q ? q.suggestions : []]].forEach(function (pair) {
      var ul = T.$(pair[0]);
      T.clear(ul);
      (pair[1] || []).forEach(function (text) { T.el("li", {}, text, ul); });
      if (!(pair[1] || []).length) { T.el("li", { "class": "muted" }, q ? "none" : "not scored yet", ul); }
    });
  }

  function renderContext() {
    var c = bundle.context;
    T.$("nav-pattern").textContent = c ? c.navigation_pattern : "–";
    T.$("shop-style").textContent = c ? c.shopping_style : "–";
    var intents = T.$("intents");
    T.clear(intents);
    Object.keys((c && c.intent_counts) || {}).forEach(function (k) { T.el("li", { "class": "chip" }, k + " × " + c.intent_counts[k], intents); });
    var fr = T.$("frustration");
    T.clear(fr);
    ((c && c.frustration) || []).forEach(function (s) {
      var li = T.el("li", { "data-kind": s.kind }, null, fr);
      var jump = T.el("button", { type: "button", "class": "link" }, s.kind + " at seq " + s.seqs.join(", "), li);
      T.el("span", { "class": "muted" }, " — " + s.message, li);
      jump.addEventListener("click", function () {
        var i = steps.findIndex(function (e) { return e.seq === s.seqs[0]; });
        if (i >= 0) { togglePlay(false); show(i); }
      });
    });
    if (!fr.firstChild) { T.el("li", { "class": "muted" }, c ? "none" : "not analysed yet", fr); }
    var pages = T.$("pages");
    T.clear(pages);
    ((c && c.pages) || []).forEach(function (p) { T.el("li", {}, (p.title ? p.title + " — " : "") + p.url + " (" + p.visits + "×)", pages); });
  }

  function loadFlags() {
    return T.request(api + "/flags").then(function (answer) {
      var ul = T.$("flags");
      T.clear(ul);
      answer.items.forEach(function (f) {
        T.el("li", { "data-flag-id": f.flag_id, "data-seq": f.seq === null ? "" : f.seq, "data-state": f.state },
          (f.seq === null ? "session" : "step " + f.seq) + ": " + f.reason.replace(/_/g, " ") + " (" + f.state + ")" + (f.note ? " — " + f.note : ""), ul);
        if (f.seq !== null && T.$("ev-" + f.seq)) { T.$("ev-" + f.seq).classList.add("flagged"); }
      });
    }).catch(function (err) { T.$("flag-result").textContent = "flags: " + err.message; });
  }

  function flag(ev) {
    if (ev) { ev.preventDefault(); }
    var wholeSession = T.$("flag-scope").value === "session";
    var body = { seq: wholeSession || current < 0 ? null : steps[current].seq, reason: T.$("flag-reason").value,
                 note: T.$("flag-note").value.trim() || null };
    T.request(api + "/flags", { method: "POST", body: body }).then(function (created) {
      T.$("flag-result").textContent = "flagged " + (created.seq === null ? "the session" : "step " + created.seq) + " (" + created.state + ")";
      T.$("flag-note").value = "";
      return loadFlags();
    }).catch(function (err) { T.$("flag-result").textContent = "not flagged: " + err.message; });
  }

  function download(path, name) {
    T.request(api + path, { raw: true, accept: "*/*" }).then(function (r) { return r.blob(); }).then(function (blob) {
      var a = T.el("a", { href: URL.createObjectURL(blob), download: name }, null, document.body);
      a.click();
      window.setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    }).catch(function (err) { T.showError(err.message); });
  }

  function onKey(ev) {
    var tag = ev.target && ev.target.tagName;
    if (ev.ctrlKey || ev.metaKey || ev.altKey || tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") { return; }
    var handled = true;
    if (ev.key === "ArrowRight" || ev.key === "j") { togglePlay(false); show(current + 1); }
    else if (ev.key === "ArrowLeft" || ev.key === "k") { togglePlay(false); show(current - 1); }
    else if (ev.key === " ") { togglePlay(); }
    else if (ev.key === "f" || ev.key === "F") {
      togglePlay(false);
      T.$("flag-scope").value = ev.key === "F" ? "session" : "step";
      T.$("flag-reason").focus();
    } else { handled = false; }
    if (handled) { ev.preventDefault(); }
  }

  function load() {
    Promise.all([T.request(api + "/replay"), loadEvents(-1, [])]).then(function (got) {
      T.showError("");
      bundle = got[0];
      steps = got[1].slice().sort(function (a, b) { return a.seq - b.seq; });
      frames = bundle.frames.filter(function (f) { return f.status === "compressed"; });
      T.$("scrubber").max = String(Math.max(0, steps.length - 1));
      renderSummary(); renderQuality(); renderContext(); renderEvents(); renderTimeline();
      show(current < 0 ? 0 : current);
      document.body.setAttribute("data-loaded", String(Date.now()));
      return loadFlags();
    }).catch(T.refused);
  }

  function onLive(name, data) {
    if (data.session_id !== sessionId) { return; }
    T.request(api + "/replay").then(function (b) {
      bundle.session = b.session; bundle.context = b.context; bundle.frames = b.frames;
      bundle.card = b.card; bundle.sentiment = b.sentiment;
      frames = b.frames.filter(function (f) { return f.status === "compressed"; });
      renderSummary(); renderQuality(); renderContext(); renderTimeline();
    }).catch(function () { /* the next event or a reload will do */ });
  }

  function start() {
    T.$("scrubber").addEventListener("input", function () { togglePlay(false); show(Number(T.$("scrubber").value)); });
    T.$("play").addEventListener("click", function () { togglePlay(); });
    T.$("flag-form").addEventListener("submit", flag);
    T.$("dl-events").addEventListener("click", function () { download("/events?limit=500", sessionId + "-events.json"); });
    T.$("dl-archive").addEventListener("click", function () { download("/archive", sessionId + ".zip"); });
    document.addEventListener("keydown", onKey);
    T.start(load, onLive);
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
