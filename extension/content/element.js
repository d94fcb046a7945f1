// Describes an element as PROTOCOL.md's Element: tag, visible text, key attributes, ranked
// selectors (each checked for uniqueness against the live DOM now), bbox and context.
//
// Selector ranking follows Playwright's (test id < role+name < label < placeholder < text <
// css id < css path < xpath): the ones that survive page changes best come first, and unique
// ones come before ambiguous ones of any kind. Values:
//   testid       the data-testid value                 role   `button[name="Add to cart"]`
//   label        the text of the control's <label>     placeholder  the placeholder text
//   text         the element's own visible text        css    `#id` or a `>` path   xpath  absolute
// User-facing kinds (role, label, placeholder, text) count only rendered elements, as
// Playwright's locators do; testid, css and xpath count every element.
"use strict";

(() => {
  const TM = (globalThis.__tracemill = globalThis.__tracemill || {});
  const P = () => TM.privacy;
  const KEY_ATTRIBUTES = ["id", "name", "role", "aria-label", "data-testid", "type", "href", "placeholder",
    "alt", "title", "for", "autocomplete", "aria-pressed", "aria-expanded", "aria-modal"];
  const NAME_FROM_CONTENT = new Set(["button", "link", "heading", "checkbox", "radio", "option", "tab",
    "menuitem", "cell", "columnheader", "rowheader", "switch", "treeitem", "tooltip"]);
  const INPUT_ROLES = { button: "button", submit: "button", reset: "button", image: "button", checkbox: "checkbox",
    radio: "radio", range: "slider", number: "spinbutton", search: "searchbox" };
  const TAG_ROLES = { button: "button", textarea: "textbox", h1: "heading", h2: "heading", h3: "heading",
    h4: "heading", h5: "heading", h6: "heading", nav: "navigation", main: "main", dialog: "dialog",
    ul: "list", ol: "list", li: "listitem", table: "table", tr: "row", td: "cell", th: "columnheader",
    option: "option", article: "article", fieldset: "group", details: "group", summary: "button",
    progress: "progressbar", meter: "meter", output: "status" };
  const MAX_TEXT = 200;
  const PHONE = /^\+?[\d\s().-]{7,}$/;

  const norm = (s) => String(s || "").replace(/\s+/g, " ").trim();
  const quote = (s) => '"' + String(s).replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';

  function role(el) {
    const explicit = norm(el.getAttribute("role")).split(" ")[0];
    if (explicit) return explicit;
    const tag = el.localName;
    if (tag === "a" || tag === "area") return el.hasAttribute("href") ? "link" : null;
    if (tag === "input") {
      if (el.type === "hidden") return null;
      if (INPUT_ROLES[el.type]) return INPUT_ROLES[el.type];
      return el.hasAttribute("list") ? "combobox" : "textbox";
    }
    if (tag === "select") return el.multiple || el.size > 1 ? "listbox" : "combobox";
    if (tag === "img") return el.getAttribute("alt") === "" ? "presentation" : "img";
    if (tag === "form" || tag === "section") { // landmarks only when named (never from content)
      const named = el.getAttribute("aria-label") || el.getAttribute("aria-labelledby") || el.title;
      return named ? (tag === "form" ? "form" : "region") : null;
    }
    return TAG_ROLES[tag] || null;
  }

  // A reduced accname: labelledby, aria-label, labels, alt/value, content (for roles that take
  // their name from it), title, placeholder.
  function accessibleName(el) {
    const ids = norm(el.getAttribute("aria-labelledby"));
    if (ids) {
      const text = ids.split(" ").map((id) => document.getElementById(id)).filter(Boolean)
        .map((n) => norm(n.innerText || n.textContent)).join(" ");
      if (norm(text)) return norm(text);
    }
    const label = norm(el.getAttribute("aria-label"));
    if (label) return label;
    const tag = el.localName;
    if ((tag === "input" || tag === "select" || tag === "textarea") && el.labels && el.labels.length) {
      const text = norm([...el.labels].map(labelOwnText).join(" "));
      if (text) return text;
    }
    if (tag === "img" || (tag === "input" && el.type === "image")) return norm(el.getAttribute("alt") || el.title);
    if (tag === "input" && ["submit", "reset", "button"].includes(el.type)) {
      return norm(el.value) || (el.type === "submit" ? "Submit" : el.type === "reset" ? "Reset" : "");
    }
    const r = role(el);
    if (r && NAME_FROM_CONTENT.has(r)) {
      const text = norm(el.innerText);
      if (text) return text;
    }
    return norm(el.title || el.getAttribute("placeholder"));
  }

  // A label's text without the value of a control nested in it.
  function labelOwnText(label) {
    const copy = label.cloneNode(true);
    copy.querySelectorAll("input,select,textarea").forEach((c) => c.remove());
    return copy.textContent;
  }

  function rendered(el) {
    return typeof el.checkVisibility === "function" ? el.checkVisibility() : el.getClientRects().length > 0;
  }

  // Per-capture caches: the role and name of every element are computed once per snapshot.
  function newContext() {
    return { roles: null, all: null };
  }

  function allRendered(ctx) {
    if (!ctx.all) ctx.all = [...document.querySelectorAll("body *")].filter(rendered);
    return ctx.all;
  }

  function countRole(ctx, r, name) {
    if (!ctx.roles) {
      ctx.roles = new Map();
      for (const el of allRendered(ctx)) {
        const k = role(el);
        if (!k) continue;
        if (!ctx.roles.has(k)) ctx.roles.set(k, []);
        ctx.roles.get(k).push(el);
      }
    }
    return (ctx.roles.get(r) || []).filter((el) => accessibleName(el) === name).length;
  }

  function count(css) {
    try {
      return document.querySelectorAll(css).length;
    } catch (_) {
      return 0;
    }
  }

  function ownText(el) {
    return norm(el.innerText);
  }

  // Elements whose whole visible text is `text` and that hold no smaller such element.
  function countText(ctx, text) {
    return allRendered(ctx).filter((el) => ownText(el) === text &&
      ![...el.children].some((c) => rendered(c) && ownText(c) === text)).length;
  }

  function cssPath(el) {
    const steps = [];
    for (let node = el; node && node.nodeType === 1 && node.localName !== "html"; node = node.parentElement) {
      if (node !== el && node.id && count("#" + CSS.escape(node.id)) === 1) {
        steps.unshift("#" + CSS.escape(node.id));
        break;
      }
      let step = node.localName;
      const same = node.parentElement ? [...node.parentElement.children].filter((c) => c.localName === node.localName) : [];
      if (same.length > 1) step += ":nth-of-type(" + (same.indexOf(node) + 1) + ")";
      steps.unshift(step);
    }
    return steps.join(" > ");
  }

  function xpath(el) {
    const steps = [];
    for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
      const same = node.parentElement ? [...node.parentElement.children].filter((c) => c.localName === node.localName) : [node];
      steps.unshift(node.localName + (same.length > 1 ? "[" + (same.indexOf(node) + 1) + "]" : ""));
    }
    return "/" + steps.join("/");
  }

  function selectors(el, ctx, text) {
    const out = [];
    const add = (kind, value, n) => value && out.push({ kind, value, unique: n === 1 });
    const privacy = P();
    // Values the server would redact anyway (emails, cards, phone numbers such as a "+1 555 0100"
    // placeholder) make selectors that can never match again: leave them out.
    const ok = (s) => s && s.length <= 200 && !privacy.looksSensitive(s) && !PHONE.test(s);
    const testid = el.getAttribute("data-testid");
    if (ok(testid)) add("testid", testid, count("[data-testid=" + quote(testid) + "]"));
    const r = role(el);
    const name = r ? accessibleName(el) : "";
    if (r && ok(name) && !privacy.isBlocked(el)) add("role", r + "[name=" + quote(name) + "]", countRole(ctx, r, name));
    if (el.labels && el.labels.length) {
      const label = norm(labelOwnText(el.labels[0]));
      if (ok(label)) {
        add("label", label, allRendered(ctx).filter((c) => c.labels && c.labels.length &&
          norm(labelOwnText(c.labels[0])) === label).length);
      }
    }
    const placeholder = norm(el.getAttribute("placeholder"));
    if (ok(placeholder)) add("placeholder", placeholder, count("[placeholder=" + quote(el.getAttribute("placeholder")) + "]"));
    // Only where the element itself is the smallest holder of its text: else the text finds a child.
    if (text && text.length <= 80 && ok(text) && !(el instanceof HTMLInputElement) &&
        ![...el.children].some((c) => rendered(c) && ownText(c) === text)) add("text", text, countText(ctx, text));
    if (el.id) add("css", "#" + CSS.escape(el.id), count("#" + CSS.escape(el.id)));
    const path = cssPath(el);
    add("css", path, count(path));
    add("xpath", xpath(el), 1); // absolute with positions: one element by construction
    return out.filter((s, i) => s.unique).concat(out.filter((s) => !s.unique));
  }

  function attributes(el) {
    const out = {};
    const privacy = P();
    for (const name of KEY_ATTRIBUTES) {
      const v = el.getAttribute(name);
      if (v === null || v.length > 512) continue;
      out[name] = privacy.looksSensitive(v) && name !== "type" ? "*" : v;
    }
    if (el instanceof HTMLInputElement && ["submit", "button", "reset"].includes(el.type)) out.value = el.value;
    return out;
  }

  function visibleText(el) {
    if (el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement) return null; // a value is not text
    if (el instanceof HTMLSelectElement) return null;
    const t = norm(el.innerText || el.textContent);
    return t ? t.slice(0, MAX_TEXT) : null;
  }

  function bbox(el) {
    const r = el.getBoundingClientRect();
    const round = (v) => Math.round(v * 10) / 10;
    return { x: round(r.x), y: round(r.y), width: round(r.width), height: round(r.height) };
  }

  function brief(el) {
    const b = { tag: el.localName };
    if (el.id) b.id = el.id;
    const testid = el.getAttribute("data-testid");
    if (testid) b.testid = testid;
    const r = role(el);
    if (r) b.role = r;
    const cls = [...el.classList].slice(0, 2).join(" ");
    if (cls) b.class = cls;
    return b;
  }

  function context(el, depth) {
    const ancestors = [];
    for (let a = el.parentElement; a && a !== document.body && ancestors.length < depth; a = a.parentElement) {
      ancestors.push(brief(a));
    }
    const nearby = [];
    const safe = (s) => s && !P().looksSensitive(s) ? s.slice(0, MAX_TEXT) : null;
    if (el.labels && el.labels.length) {
      const t = safe(norm(labelOwnText(el.labels[0])));
      if (t) nearby.push({ tag: "label", text: t, relation: "label" });
    }
    const fieldset = el.closest("fieldset");
    const legend = fieldset && fieldset.querySelector("legend");
    if (legend && safe(norm(legend.textContent))) nearby.push({ tag: "legend", text: safe(norm(legend.textContent)), relation: "legend" });
    const heading = precedingHeading(el);
    if (heading) nearby.push({ tag: heading.localName, text: safe(norm(heading.innerText)) || "", relation: "heading" });
    const out = { ancestors, nearby };
    const form = el.form || el.closest("form");
    if (form) {
      const f = { tag: "form", fields: form.elements.length };
      for (const k of ["id", "name", "method"]) if (form.getAttribute(k)) f[k] = form.getAttribute(k);
      if (form.getAttribute("data-testid")) f.testid = form.getAttribute("data-testid");
      if (form.getAttribute("action")) f.action = form.getAttribute("action").split("?")[0];
      out.form = f;
    }
    return out;
  }

  function precedingHeading(el) {
    const all = [...document.querySelectorAll("h1,h2,h3,h4,h5,h6")];
    let found = null;
    for (const h of all) {
      if (h.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING || h.contains(el)) found = h;
    }
    return found;
  }

  // The Element for `el`. `depth` bounds the ancestors listed (snapshots use fewer).
  function describe(el, ctx = newContext(), depth = 6) {
    const privacy = P();
    const blocked = privacy.isBlocked(el);
    const masked = privacy.isMasked(el);
    const shown = privacy.safeText(el, visibleText(el));
    const out = { tag: el.localName };
    if (shown.text) out.text = shown.text;
    out.attributes = attributes(el);
    out.selectors = selectors(el, ctx, blocked || shown.masked ? null : shown.text);
    out.bbox = bbox(el);
    out.context = context(el, depth);
    if (blocked || masked || shown.masked) {
      out.sensitive = true;
      out.masked = true;
    }
    return out;
  }

  TM.element = { describe, newContext, role, accessibleName, rendered };
})();
