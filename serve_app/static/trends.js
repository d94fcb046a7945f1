// The trends page: charts of GET /v1/analytics/trends drawn as SVG (no chart library): bars
// per key, a line over them when grouped by day; rates and quality on a 0–1 axis.
(function () {
  "use strict";

  var T = window.TM;
  var W = 600, H = 220, LEFT = 44, RIGHT = 8, TOP = 12, BOTTOM = 46;
  var UNIT = { mean_quality: true, rejection_rate: true, frustration_rate: true };

  function fmt(metric, v) {
    if (UNIT[metric]) { return metric === "mean_quality" ? v.toFixed(2) : Math.round(v * 100) + "%"; }
    return v >= 10000 ? Math.round(v / 1000) + "k" : String(Math.round(v * 10) / 10);
  }

  function draw(svgEl, metric, group, points) {
    T.clear(svgEl);
    svgEl.setAttribute("data-points", String(points.length));
    svgEl.setAttribute("aria-label", metric + " by " + group);
    if (!points.length) {
      T.svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", "class": "empty" }, svgEl).textContent = "no data in this range";
      return;
    }
    var max = UNIT[metric] ? 1 : Math.max.apply(null, points.map(function (p) { return p.value; }).concat([1]));
    var plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
    var slot = plotW / points.length;
    [0, 0.5, 1].forEach(function (f) {
      var y = TOP + plotH - f * plotH;
      T.svg("line", { x1: LEFT, y1: y, x2: W - RIGHT, y2: y, "class": "grid" }, svgEl);
      T.svg("text", { x: LEFT - 4, y: y + 3, "text-anchor": "end", "class": "axis" }, svgEl).textContent = fmt(metric, f * max);
    });
    var line = [];
    points.forEach(function (p, i) {
      var h = Math.max(p.value > 0 ? 1 : 0, p.value / max * plotH);
      var x = LEFT + i * slot;
      var bar = T.svg("rect", { x: (x + slot * 0.15).toFixed(1), y: (TOP + plotH - h).toFixed(1), width: (slot * 0.7).toFixed(1),
                                height: h.toFixed(1), "class": "bar", "data-key": p.key, "data-value": p.value, "data-count": p.count }, svgEl);
      T.svg("title", {}, bar).textContent = p.key + ": " + fmt(metric, p.value) + " (" + p.count + " sessions)";
      line.push((x + slot / 2).toFixed(1) + "," + (TOP + plotH - h).toFixed(1));
      if (points.length <= 16 || i % Math.ceil(points.length / 16) === 0) {
        var label = group === "day" ? p.key.slice(5, 10) : p.key.length > 14 ? p.key.slice(0, 13) + "…" : p.key;
        T.svg("text", { x: (x + slot / 2).toFixed(1), y: H - BOTTOM + 14, "text-anchor": "middle", "class": "axis" }, svgEl).textContent = label;
      }
    });
    if (group === "day" && line.length > 1) { T.svg("polyline", { points: line.join(" "), "class": "trend" }, svgEl); }
  }

  function range() {
    var params = new URLSearchParams();
    if (T.$("t-since").value) { params.set("since", T.$("t-since").value + "T00:00:00Z"); }
    if (T.$("t-until").value) {
      var d = new Date(T.$("t-until").value + "T00:00:00Z");
      d.setUTCDate(d.getUTCDate() + 1);
      params.set("until", d.toISOString().replace(".000Z", "Z"));
    }
    return params;
  }

  function loadChart(section) {
    var metric = section.getAttribute("data-metric"), group = section.getAttribute("data-group");
    var params = range();
    params.set("metric", metric);
    params.set("group_by", group);
    return T.request("v1/analytics/trends?" + params.toString()).then(function (answer) {
      draw(section.querySelector("svg"), metric, group, answer.points);
    });
  }

  function loadAll() {
    var sections = Array.prototype.slice.call(document.querySelectorAll("section.chart"));
    Promise.all(sections.map(loadChart)).then(function () {
      T.showError("");
      document.body.setAttribute("data-loaded", String(Date.now()));
    }).catch(T.refused);
  }

  function start() {
    var since = new Date(Date.now() - 13 * 86400000);
    T.$("t-since").value = since.toISOString().slice(0, 10);
    T.$("range").addEventListener("submit", function (ev) { ev.preventDefault(); loadAll(); });
    ["c-metric", "c-group"].forEach(function (id) {
      T.$(id).addEventListener("change", function () {
        var custom = T.$("custom");
        custom.setAttribute("data-metric", T.$("c-metric").value);
        custom.setAttribute("data-group", T.$("c-group").value);
        loadChart(custom).catch(T.refused);
      });
    });
    T.keyForm(loadAll);
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
