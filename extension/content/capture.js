// Listens to the page while a session records and sends each event to the service worker,
// which numbers, queues and streams it. Runs in the extension's isolated world, top frame only.
//
// What is recorded: click / dblclick / contextmenu, input (debounced) and change / select,
// submit, the keys that act (Enter, Escape, Tab, arrows, Page Up/Down), scroll (throttled),
// navigation (page loads and single-page-app URL changes), modal dialogs opening and closing,
// and a dom_snapshot of the interactive elements of each new page.
"use strict";

(() => {
  const TM = (globalThis.__tracemill = globalThis.__tracemill || {});
  if (TM.captureStarted) return; // injected twice (e.g. after an extension reload)
  TM.captureStarted = true;
  const { describe, newContext, rendered } = TM.element;
  const privacy = TM.privacy;

  const INPUT_DEBOUNCE_MS = 600;
  const SCROLL_THROTTLE_MS = 500;
  const SNAPSHOT_LIMIT = 150;
  const ACTING_KEYS = new Set(["Enter", "Escape", "Tab", "ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight",
    "PageUp", "PageDown"]);
  const INTERACTIVE = "a[href],button,input:not([type=hidden]),select,textarea,summary,label,[role=button]," +
    "[role=link],[role=tab],[role=menuitem],[role=checkbox],[role=radio],[role=option],[role=switch]," +
    "[onclick],[contenteditable=true],[tabindex]:not([tabindex='-1'])";

  let recording = false;
  let lastUrl = location.href;
  let popstateSeen = false;
  let lastClickAt = 0;
  let lastLabel = null;
  let lastEnterAt = 0;
  const pendingInputs = new Map(); // element -> timer
  const lastValues = new WeakMap(); // element -> last value sent, so change does not repeat input
  let openModals = new Set();

  // Events go to the service worker through an outbox in chrome.storage.local, one key per
  // event, not through runtime.sendMessage: a message sent while the worker is suspended, by a
  // page that is navigating away (a click on a link), can be dropped before the worker starts;
  // a storage write is done by the browser whatever becomes of the page. The worker numbers the
  // events in key order (time, page, counter) and removes each key once it is queued.
  const pageId = Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
  let counter = 0;
  let tab = null; // {id, windowId}: content scripts are not told their tab, so they ask (once, when recording)
  function askTab() {
    if (!tab) chrome.runtime.sendMessage({ kind: "hello" }).then((t) => { tab = t || null; }).catch(() => {});
  }

  function send(event) {
    if (!recording) return;
    event.ts = Date.now();
    event.url = location.href;
    if (document.title) event.title = document.title.slice(0, 500);
    const key = `ob:${String(event.ts).padStart(15, "0")}:${pageId}:${String(counter++).padStart(6, "0")}`;
    try {
      chrome.storage.local.set({ [key]: { event, tab, viewport: { width: innerWidth, height: innerHeight } } })
        .catch(() => {});
    } catch (_) {
      recording = false; // the extension was reloaded: this script is orphaned
    }
  }

  // The acted-on element: the nearest interactive ancestor of what was hit (a span in a button
  // is the button), or what was hit when nothing around it is interactive.
  function actedOn(node) {
    const el = node instanceof Element ? node : node && node.parentElement;
    if (!el) return null;
    const hit = el.closest(INTERACTIVE);
    return hit && hit !== document.body ? hit : el;
  }

  // ---------------------------------------------------------------- pages and navigation

  function navigationType() {
    const entry = performance.getEntriesByType("navigation")[0];
    return entry ? entry.type : "navigate";
  }

  function pageLoaded(kind) {
    // kind: "load" (a document loaded), "spa" (same document, new URL), "start" (recording began)
    let transition = "other";
    if (kind === "load") {
      const type = navigationType();
      transition = type === "reload" ? "reload" : type === "back_forward" ? "back_forward" : "navigate";
    } else if (kind === "spa") {
      transition = popstateSeen ? "back_forward" : Date.now() - lastClickAt < 2000 ? "link" : "other";
    }
    popstateSeen = false;
    lastUrl = location.href;
    const nav = { type: "navigation", transition };
    if (document.referrer && kind === "load") nav.referrer = document.referrer;
    send(nav);
    // Let a single-page app render its new view before listing its elements.
    setTimeout(snapshot, kind === "spa" ? 300 : 50);
  }

  function snapshot() {
    const ctx = newContext();
    const elements = [];
    for (const el of document.querySelectorAll(INTERACTIVE)) {
      if (elements.length >= SNAPSHOT_LIMIT) break;
      if (!rendered(el) || privacy.isBlocked(el)) continue;
      elements.push(describe(el, ctx, 2));
    }
    send({ type: "dom_snapshot", elements });
    modalCheck(); // a page may open with a dialog already shown
  }

  function urlCheck() {
    if (location.href !== lastUrl) {
      flushInputs();
      pageLoaded("spa");
    }
  }

  // ---------------------------------------------------------------- listeners

  function onClick(e) {
    const el = actedOn(e.target);
    if (!el) return;
    // A click on a label makes the browser click its control too: one action, one event.
    if (e.type === "click" && lastLabel && lastLabel.control === el && Date.now() - lastClickAt < 100) return;
    // Enter in a form field makes the browser click the form's default button: the keypress is the act.
    if (e.type === "click" && e.detail === 0 && Date.now() - lastEnterAt < 100) return;
    lastLabel = el instanceof HTMLLabelElement ? el : null;
    flushInputs();
    lastClickAt = Date.now();
    send({ type: e.type, target: describe(el), x: Math.round(e.clientX), y: Math.round(e.clientY), button: e.button });
    setTimeout(urlCheck, 50);
  }

  function valueOf(el) {
    if (el instanceof HTMLInputElement && (el.type === "checkbox" || el.type === "radio")) return String(el.checked);
    if (el instanceof HTMLSelectElement) return [...el.selectedOptions].map((o) => o.value).join(",");
    if ("value" in el) return String(el.value);
    return el.isContentEditable ? el.innerText : "";
  }

  function sendValue(type, el) {
    const raw = valueOf(el);
    const { value, masked } = privacy.safeValue(el, raw);
    lastValues.set(el, raw);
    const event = { type, target: describe(el) };
    if (value !== null) event.value = value.slice(0, 4000);
    if (masked) { // the value said so even where the field did not: paint it in screenshots too
      event.masked = true;
      event.target.sensitive = true;
    }
    send(event);
  }

  function onInput(e) {
    const el = e.target;
    if (!(el instanceof Element)) return;
    if (el instanceof HTMLSelectElement || (el instanceof HTMLInputElement && ["checkbox", "radio", "file"].includes(el.type))) {
      return; // their change event says it all
    }
    clearTimeout(pendingInputs.get(el));
    pendingInputs.set(el, setTimeout(() => {
      pendingInputs.delete(el);
      sendValue("input", el);
    }, INPUT_DEBOUNCE_MS));
  }

  function flushInputs() {
    for (const [el, timer] of pendingInputs) {
      clearTimeout(timer);
      sendValue("input", el);
    }
    pendingInputs.clear();
  }

  function onChange(e) {
    const el = e.target;
    if (!(el instanceof Element)) return;
    if (pendingInputs.has(el)) {
      clearTimeout(pendingInputs.get(el));
      pendingInputs.delete(el);
      sendValue("input", el);
    }
    if (lastValues.get(el) === valueOf(el)) return; // the input event already carried this value
    sendValue(el instanceof HTMLSelectElement ? "select" : "change", el);
  }

  function onSubmit(e) {
    flushInputs();
    if (e.target instanceof HTMLFormElement) send({ type: "submit", target: describe(e.target) });
  }

  function onKeydown(e) {
    if (!ACTING_KEYS.has(e.key) || e.repeat) return;
    if (e.key === "Enter") {
      flushInputs();
      lastEnterAt = Date.now();
    }
    const mods = ["Alt", "Control", "Meta", "Shift"].filter((m) => e.getModifierState(m));
    const event = { type: "keypress", key: e.key };
    if (mods.length) event.modifiers = mods;
    const el = e.target instanceof Element && e.target !== document.body ? e.target : null;
    if (el) event.target = describe(el);
    send(event);
  }

  let scrollTimer = null;
  let scrollTarget = null;
  let lastScrollAt = 0;
  function onScroll(e) {
    scrollTarget = e.target;
    if (scrollTimer) return;
    const wait = Math.max(0, SCROLL_THROTTLE_MS - (Date.now() - lastScrollAt));
    scrollTimer = setTimeout(() => { // trailing: the position the scroll came to rest at
      scrollTimer = null;
      lastScrollAt = Date.now();
      const el = scrollTarget instanceof Element && scrollTarget !== document.documentElement ? scrollTarget : null;
      const event = el ? { type: "scroll", x: el.scrollLeft, y: el.scrollTop, target: describe(el) }
        : { type: "scroll", x: Math.round(scrollX), y: Math.round(scrollY) };
      send(event);
    }, wait);
  }

  // Modals: <dialog open> and [aria-modal=true] that are rendered, compared with the last check.
  function modalCheck() {
    const now = new Set([...document.querySelectorAll("dialog[open],[aria-modal=true]")].filter(rendered));
    for (const el of now) if (!openModals.has(el)) send({ type: "modal", state: "opened", target: describe(el) });
    for (const el of openModals) {
      if (!now.has(el)) {
        const event = { type: "modal", state: "closed" };
        if (el.isConnected) event.target = describe(el);
        send(event);
      }
    }
    openModals = now;
  }

  // Checked in the observer's own microtask, not later: a dialog that closes and navigates
  // away (a "View cart" button) leaves no time for a timer.
  const observer = new MutationObserver(() => {
    if (recording) modalCheck();
  });

  // Answers from the service worker: the boxes to paint before it takes a screenshot.
  chrome.runtime.onMessage.addListener((message, _sender, reply) => {
    if (message && message.kind === "boxes") {
      reply({ boxes: privacy.sensitiveBoxes(), dpr: devicePixelRatio, width: innerWidth, height: innerHeight,
              url: location.href });
    }
  });

  function setRecording(on, startedNow) {
    if (on === recording) return;
    if (!on) flushInputs(); // what was typed before the stop still belongs to the session
    recording = on;
    if (on) {
      askTab();
      observer.observe(document.documentElement, { subtree: true, childList: true, attributes: true,
        attributeFilter: ["open", "aria-modal", "hidden", "style", "class"] });
      openModals = new Set();
      pageLoaded(startedNow ? "start" : "load");
    } else {
      observer.disconnect();
    }
  }

  const opts = { capture: true };
  window.addEventListener("click", onClick, opts);
  window.addEventListener("dblclick", onClick, opts);
  window.addEventListener("contextmenu", onClick, opts);
  window.addEventListener("input", onInput, opts);
  window.addEventListener("change", onChange, opts);
  window.addEventListener("submit", onSubmit, opts);
  window.addEventListener("keydown", onKeydown, opts);
  window.addEventListener("scroll", onScroll, { capture: true, passive: true });
  window.addEventListener("focusout", (e) => {
    if (pendingInputs.has(e.target)) {
      clearTimeout(pendingInputs.get(e.target));
      pendingInputs.delete(e.target);
      sendValue("input", e.target);
    }
  }, opts);
  window.addEventListener("pagehide", flushInputs, opts);
  window.addEventListener("popstate", () => { popstateSeen = true; setTimeout(urlCheck, 0); });
  window.addEventListener("hashchange", () => setTimeout(urlCheck, 0));
  if (window.navigation) window.navigation.addEventListener("currententrychange", () => setTimeout(urlCheck, 0));
  setInterval(urlCheck, 1000); // a last resort for URL changes no event told us about

  chrome.storage.local.get(["recording", "config"]).then((s) => {
    privacy.configure(s.config && s.config.masking);
    setRecording(Boolean(s.recording && s.recording.on), false);
  });
  chrome.storage.onChanged.addListener((changes, area) => {
    if (area !== "local") return;
    if (changes.config) privacy.configure(changes.config.newValue && changes.config.newValue.masking);
    if (changes.recording) setRecording(Boolean(changes.recording.newValue && changes.recording.newValue.on), true);
  });
})();
