// The service worker: owns the session (start/stop from the popup), numbers events (`seq`),
// queues them persistently, batches them (every ~250 ms or 50 events) into the delivery, and
// asks for screenshots. Everything it must not forget lives in chrome.storage.local (the
// session's counters) and IndexedDB (the events and images), because Chrome suspends an idle
// service worker at any time and restarts it on the next event, alarm or message. The API key
// is the exception: it lives in the extension's IndexedDB (lib/secret.js), never in
// chrome.storage, which the content scripts in every page can read.

import { DEFAULTS, checkedEndpoint, storedConfig, validate } from "./lib/config.js";
import { loadApiKey, saveApiKey } from "./lib/secret.js";
import * as queue from "./lib/queue.js";
import { Delivery } from "./lib/delivery.js";
import { Shots } from "./lib/shots.js";
import { Consent, ConsentError, isConsentRefusal } from "./lib/consent.js";

const CLIENT = { name: "tracemill-extension", version: chrome.runtime.getManifest().version };
const SHOT_DELAY = { navigation: 500, click: 300, modal: 300 };
const ACTS = new Set(["click", "dblclick", "submit", "keypress", "input", "change", "select"]); // what causes a navigation
const STOP_GRACE_MS = 300; // events the pages flush as recording stops

let config = { ...DEFAULTS };
let session = null; // {id, type, task, startedAt, nextSeq, ackedThrough, created, viewport, finish}
let status = {};
const tabs = new Map(); // tabId -> the last event of that tab, to name a navigation's transition

const host = {
  session: () => session,
  config: () => config,
  saveSession,
  ensureCreated,
  record,
  problem(text) {
    if (text === (status.problem || null)) return;
    publish({ problem: text, problemAt: text ? Date.now() : null });
  },
  status: publish,
  shotsDone: () => maybeFinish(),
  // The consent gate (lib/consent.js): nothing is captured or sent while it is closed.
  mayRecord: () => consent.allows(),
  maySend: () => consent.allows(),
  consentRefused: () => consent.refused(),
};
const delivery = new Delivery(host);
const shots = new Shots(host);
const consent = new Consent({ api: (path, init) => api(path, init), changed: consentChanged });

// The config the worker runs with: what chrome.storage.local holds, plus the key. A key found in
// chrome.storage.local (written by an older version of the extension) is moved out of it first.
async function adoptConfig(stored) {
  stored = stored || {};
  if (stored.apiKey) {
    await saveApiKey(stored.apiKey);
    stored = storedConfig(stored);
    await chrome.storage.local.set({ config: stored });
  }
  return { ...DEFAULTS, ...stored, apiKey: await loadApiKey() };
}

const ready = (async () => {
  const s = await chrome.storage.local.get(["config", "session", "status"]);
  config = await adoptConfig(s.config);
  await consent.load();
  session = s.session || null;
  status = s.status || {};
  if (session) { // a suspension or a crash may have left events stored past the saved counter
    session.nextSeq = Math.max(session.nextSeq, (await queue.lastSeq(session.id)) + 1, session.ackedThrough + 1);
  }
})();

// ------------------------------------------------------------------ status for the popup

let publishTimer = null;
function publish(patch = {}) {
  Object.assign(status, patch);
  if (publishTimer) return;
  publishTimer = setTimeout(() => {
    publishTimer = null;
    const s = session;
    Object.assign(status, {
      recording: Boolean(s && !s.finish), finishing: Boolean(s && s.finish), sessionId: s ? s.id : status.sessionId,
      recorded: s ? s.nextSeq : status.recorded, acked: s ? s.ackedThrough + 1 : status.acked,
      queued: s ? s.nextSeq - 1 - s.ackedThrough : 0,
      bytesEvents: delivery.bytesSent, bytesShots: shots.bytesSent, updatedAt: Date.now(),
    });
    chrome.storage.local.set({ status });
  }, 200);
}

async function saveSession() {
  await chrome.storage.local.set({ session });
  publish();
  maybeFinish();
}

// ------------------------------------------------------------------ recording

let chain = Promise.resolve();
// Number and store one event; resolves to its seq (null when not recording). Serialised, so
// seqs are dense and in the order the events arrived.
function record(event, tab) {
  const p = chain.then(() => recordNow(event, tab));
  chain = p.catch(() => {});
  return p;
}

async function recordNow(event, tab) {
  await ready;
  if (!consent.allows()) return null; // withdrawn or refused: not captured, from this moment
  if (!session || session.finish && event.type !== "screenshot") return null;
  if (session.finish && event.ts > session.finish.ended_at) return null;
  if (event.type === "navigation") event.transition = transition(event, tab);
  event.seq = session.nextSeq;
  session.nextSeq += 1;
  if (session.finish) session.finish.last_seq = event.seq;
  await queue.putEvent(session.id, event);
  await chrome.storage.local.set({ session });
  publish();
  if (event.seq - delivery.sentThrough >= config.batchEvents) delivery.kick();
  else setTimeout(() => delivery.kick(), config.flushMs);
  if (tab && ACTS.has(event.type)) tabs.set(tab.id, { type: event.type, target: event.target, at: Date.now() });
  return event.seq;
}

function transition(event, tab) {
  if (event.transition !== "navigate") return event.transition;
  const last = tab && tabs.get(tab.id);
  if (!last || Date.now() - last.at > 10000) return event.referrer ? "link" : "typed";
  if (last.type === "submit" || (last.type === "keypress" && last.target && last.target.context &&
      last.target.context.form)) return "form_submit";
  const t = last.target;
  if ((last.type === "click" || last.type === "keypress") && t &&
      (t.tag === "a" || (t.attributes && t.attributes.role === "link"))) return "link";
  return "other";
}

chrome.runtime.onMessage.addListener((message, sender, reply) => {
  if (!message || typeof message !== "object") return false;
  if (message.kind === "hello" && sender.tab && sender.frameId === 0) {
    reply({ id: sender.tab.id, windowId: sender.tab.windowId });
    return false;
  }
  if (message.kind === "start") {
    ready.then(() => start(message)).then(reply, (e) => reply({ ok: false, error: String(e.message || e) }));
    return true;
  }
  if (message.kind === "stop") {
    ready.then(() => stop(message.outcome)).then(reply, (e) => reply({ ok: false, error: String(e.message || e) }));
    return true;
  }
  if (message.kind === "consent" || message.kind === "withdraw") {
    ready.then(() => (message.kind === "withdraw" ? withdraw() : answerNotice(message)))
      .then(reply, (e) => reply({ ok: false, error: String(e.message || e) }));
    return true;
  }
  return false;
});

// The pages' outbox (see content/capture.js): drained in key order, each key removed once its
// event is queued, so that nothing is taken twice and nothing is dropped while the worker sleeps.
let drainPromise = null;
let drainAgain = false;
function drainOutbox() {
  if (drainPromise) {
    drainAgain = true; // the running drain goes round once more
    return drainPromise;
  }
  drainPromise = (async () => {
    try {
      do {
        drainAgain = false;
        const all = await chrome.storage.local.get(null);
        for (const key of Object.keys(all).filter((k) => k.startsWith("ob:")).sort()) {
          const entry = all[key];
          await onPageEvent(entry, entry.tab || (await activeTabAt(entry.event.url)));
          await chrome.storage.local.remove(key);
        }
      } while (drainAgain);
    } finally {
      drainPromise = null;
    }
  })();
  return drainPromise;
}

// A page whose tab was not known yet: the active tab showing its URL, if any.
async function activeTabAt(url) {
  const tabs = await chrome.tabs.query({ active: true }).catch(() => []);
  const t = tabs.find((x) => x.url === url);
  return t ? { id: t.id, windowId: t.windowId } : null;
}

async function onPageEvent({ event, viewport }, tab) {
  await ready;
  if (!session || session.finish) return;
  if (viewport && !session.viewport) session.viewport = viewport;
  const seq = await record(event, tab);
  if (seq === null) return;
  const trigger = event.type === "navigation" ? "navigation" : event.type === "click" || event.type === "dblclick"
    ? "click" : event.type === "modal" && event.state === "opened" ? "modal" : null;
  if (trigger && tab) shots.request(tab.id, tab.windowId, trigger, SHOT_DELAY[trigger]);
}

async function start({ task, type }) {
  const { config: checked, errors } = validate(config);
  const first = Object.values(errors)[0];
  if (first) return { ok: false, error: `${first} (Options page)` };
  // The notice before the first recording (and whenever the person declined or withdrew).
  if (["declined", "withdrawn"].includes(consent.state.state)) await consent.set({ state: "needed" });
  try {
    await consent.check();
  } catch (e) {
    if (e instanceof ConsentError) return { ok: false, error: e.message };
    throw e;
  }
  if (!consent.allows()) return { ok: false, consent: consent.state.state, notice: consent.state.notice };
  if (session && !session.finish) return { ok: true, sessionId: session.id };
  if (session && session.finish) {
    return { ok: false, error: "The last session is still being sent; start again once it is delivered." };
  }
  session = {
    id: crypto.randomUUID(), type: type || checked.sessionType, task: task === undefined ? checked.task : String(task).trim(),
    startedAt: Date.now(), nextSeq: 0, ackedThrough: -1, created: false, viewport: null, finish: null,
  };
  status = { connection: "starting" };
  await saveSession();
  await chrome.storage.local.set({ recording: { on: true, sessionId: session.id } });
  chrome.alarms.create("tracemill", { periodInMinutes: 0.5 });
  return { ok: true, sessionId: session.id };
}

// The popup's Agree / Decline. Agreeing resumes a session paused by a refusal, or starts one.
async function answerNotice({ answer, version, task, type }) {
  if (answer !== "agree") {
    await consent.decline();
    return { ok: true, consent: consent.state.state };
  }
  await consent.agree(String(version || ""));
  if (!consent.allows()) return { ok: false, consent: consent.state.state, notice: consent.state.notice,
                                  error: "The notice changed meanwhile: read the new one." };
  if (session) return { ok: true, sessionId: session.id, consent: consent.state.state };
  return { ...(await start({ task, type })), consent: consent.state.state };
}

// Withdrawal: the gate closes first (nothing more captured or sent from here), then the open
// session ends where it stands; what it queued stays in the browser, unsent, until consent is
// given again (then it is delivered and the session finished) or it is discarded.
async function withdraw() {
  const withdrawn = consent.withdraw();
  await chrome.storage.local.set({ recording: { on: false } });
  if (session && !session.finish) {
    session.finish = { ended_at: Date.now(), last_seq: session.nextSeq - 1 };
    await saveSession();
  }
  await withdrawn;
  if (consent.state.pendingWithdraw) chrome.alarms.create("tracemill", { periodInMinutes: 0.5 }); // tell it later
  return { ok: true, consent: consent.state.state, told: !consent.state.pendingWithdraw };
}

// What the gate does when consent changes: pages stop or resume capturing; sending stops at
// once, or resumes without waiting out a backoff.
function consentChanged(state) {
  publish({ consent: state.state });
  const open = Boolean(session && !session.finish);
  if (open) chrome.storage.local.set({ recording: { on: consent.allows(), sessionId: session.id } });
  if (!consent.allows()) {
    delivery.close();
    if (session) host.problem("Not recording: the person recorded has not agreed to the current notice. " +
      "What was recorded before is kept in the browser, unsent.");
    return;
  }
  host.problem(null);
  delivery.retryAt = 0;
  delivery.attempt = 0;
  shots.uploadRetryAt = 0;
  delivery.kick();
  shots.upload();
  maybeFinish();
}

async function stop(outcome) {
  if (!session || session.finish) return { ok: true };
  await chrome.storage.local.set({ recording: { on: false } });
  await new Promise((r) => setTimeout(r, STOP_GRACE_MS));
  await drainOutbox(); // what the pages wrote before they saw the stop
  await chain;
  session.finish = { ended_at: Date.now(), last_seq: session.nextSeq - 1,
                     outcome: ["success", "abandoned", "failure"].includes(outcome) ? outcome : undefined };
  await saveSession();
  delivery.kick();
  return { ok: true, sessionId: session.id };
}

// ------------------------------------------------------------------ the server side of a session

async function api(path, init = {}) {
  const headers = { Authorization: `Bearer ${config.apiKey}`, ...(init.body ? { "Content-Type": "application/json" } : {}) };
  return fetch(checkedEndpoint(config.endpoint) + path, { ...init, headers });
}

// POST /v1/sessions (idempotent with our own id), once, before the first event or screenshot.
async function ensureCreated() {
  await ready;
  if (!session || !consent.allows()) return false;
  if (session.created) return true;
  const body = { session_id: session.id, type: session.type, client: CLIENT, user_agent: navigator.userAgent,
                 started_at: session.startedAt };
  if (session.task) body.task = session.task;
  if (session.viewport) body.viewport = session.viewport;
  let r;
  try {
    r = await api("/v1/sessions", { method: "POST", body: JSON.stringify(body) });
  } catch (e) {
    host.problem(e.name === "EndpointRefused" ? `${e.message} Events are kept; fix the endpoint in the options page.`
      : `The tracemill endpoint ${config.endpoint} cannot be reached. Events are kept and sent when it is back.`);
    return false;
  }
  if (r.ok) {
    session.created = true;
    await saveSession();
    return true;
  }
  const err = ((await r.json().catch(() => ({}))).error) || {};
  if (r.status === 403 && isConsentRefusal(err)) {
    await consent.refused();
    return false;
  }
  host.problem(r.status === 401 ? "The API key was refused. Check it in the options page."
    : r.status === 403 ? "The API key lacks the ingest scope (tracemill keys create --scopes ingest)."
    : `The server refused to start the session (${r.status}): ${err.message || "no reason given"}`);
  return false;
}

let finishing = false;
async function maybeFinish() {
  const s = session;
  if (!s || !s.finish || finishing || s.ackedThrough < s.finish.last_seq || !consent.allows()) return;
  if ((await queue.shots(50)).some((shot) => shot.sid === s.id)) return shots.upload();
  finishing = true;
  try {
    if (!(await ensureCreated())) return;
    const r = await api(`/v1/sessions/${s.id}/finish`, { method: "POST", body: JSON.stringify(s.finish) });
    if (r.status === 403 && isConsentRefusal((await r.clone().json().catch(() => ({}))).error)) await consent.refused();
    if (r.status === 202 || r.status === 409) {
      delivery.close();
      session = null;
      await chrome.storage.local.set({ session: null });
      publish({ connection: "idle", lastSession: { id: s.id, events: s.nextSeq, finishedAt: Date.now() } });
      chrome.alarms.clear("tracemill");
    }
  } catch (_) {
    host.problem("The session is recorded but the server could not be told it ended; retrying.");
  } finally {
    finishing = false;
  }
}

// ------------------------------------------------------------------ waking up

chrome.alarms.onAlarm.addListener(() => ready.then(() => {
  consent.retryWithdraw();
  delivery.kick();
  shots.upload();
  maybeFinish();
}));
chrome.runtime.onStartup.addListener(() => ready.then(() => delivery.kick()));
chrome.storage.onChanged.addListener((changes, area) => {
  if (area !== "local") return;
  if (Object.keys(changes).some((k) => k.startsWith("ob:") && changes[k].newValue)) drainOutbox();
  if (!changes.config) return;
  adoptConfig(changes.config.newValue).then((fresh) => {
    config = fresh;
    delivery.close(); // a new endpoint or key: connect again now, without waiting out a backoff
    delivery.retryAt = 0;
    delivery.kick();
  });
});
ready.then(() => {
  // Alarms need not outlive a browser restart: while a session is open, keep one.
  if (session) chrome.alarms.create("tracemill", { periodInMinutes: 0.5 });
  drainOutbox();
  delivery.kick();
  shots.upload();
  maybeFinish();
});

// For the DevTools console (and the e2e tests' diagnostics): the live objects, read-only use.
self.tracemill = { delivery, shots, host, consent };
