// Delivers queued events to the tracemill endpoint: a WebSocket with first-frame auth, acks
// in order (one answer per frame: ack, slow_down or error), reconnect with exponential backoff
// and resend from acked_through, and plain HTTP batches when WebSockets are blocked.
// Events leave the queue only once acked, i.e. committed on the server (PROTOCOL.md).

import * as queue from "./queue.js";
import { checkedEndpoint, wsUrl } from "./config.js";
import { isConsentRefusal } from "./consent.js";

const WINDOW_EVENTS = 500; // unacked events on the wire at once
const HTTP_BATCH = 200;
const WS_FAILS_BEFORE_HTTP = 3; // failed WebSocket opens in a row, while HTTP answers
const HTTP_MODE_MS = 120000; // then HTTP for this long before trying the WebSocket again

export class Delivery {
  // host: { session(), config(), saveSession(), problem(text|null), status(patch), ensureCreated(),
  //         maySend(), consentRefused() }
  constructor(host) {
    this.host = host;
    this.ws = null;
    this.wsReady = false;
    this.inflight = []; // frames sent and not answered: [{first, last}]
    this.sentThrough = -1;
    this.attempt = 0; // consecutive failures, for the backoff
    this.wsFails = 0;
    this.httpUntil = 0;
    this.retryAt = 0;
    this.timer = null;
    this.running = false;
    this.again = false;
    this.bytesSent = 0;
    this.refusedForConsent = false; // the stream's error frame came; its close 4403 follows
    this.connects = 0; // WebSocket opens tried, for the status and the measurements
  }

  // Something may be sendable: run the loop now (or when the backoff allows).
  kick() {
    if (this.running) {
      this.again = true;
      return;
    }
    const wait = this.retryAt - Date.now();
    if (wait > 0) return this.later(wait);
    this.running = true;
    this.pump().catch((e) => this.fail(`Sending stopped on an unexpected error: ${e.message || e}`))
      .finally(() => {
        this.running = false;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  later(ms) {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.kick();
    }, Math.max(0, ms));
  }

  backoff() {
    const cap = this.host.config().backoffMaxMs || 30000;
    const base = Math.min(cap, 500 * 2 ** Math.min(this.attempt, 16));
    this.attempt += 1;
    const delay = base / 2 + Math.random() * base / 2; // jitter: clients that lost one server do not return in step
    this.retryAt = Date.now() + delay;
    this.later(delay);
    return delay;
  }

  fail(text) {
    this.host.problem(text);
    this.backoff();
  }

  async pump() {
    const s = this.host.session();
    if (!s) return this.close();
    if (!this.host.maySend()) return this.close(); // no consent: everything stays queued
    const pending = s.nextSeq - 1 > s.ackedThrough;
    if (!pending) return;
    if (!(await this.host.ensureCreated())) return this.backoff();
    if (Date.now() < this.httpUntil) return this.pumpHttp(s);
    if (!this.ws) return this.open(s);
    if (!this.wsReady) return;
    await this.fill(s);
  }

  open(s) {
    const cfg = this.host.config();
    this.connects += 1;
    this.host.status({ connection: "connecting", connects: this.connects });
    let ws;
    try {
      ws = new WebSocket(wsUrl(cfg.endpoint, s.id));
    } catch (e) {
      return this.fail(`The endpoint address cannot be used for a WebSocket: ${e.message}`);
    }
    this.ws = ws;
    this.wsReady = false;
    this.inflight = [];
    this.refusedForConsent = false;
    this.sentThrough = s.ackedThrough; // resend everything not acked; the server drops duplicates
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "auth", api_key: cfg.apiKey }));
      this.wsReady = true;
      this.wsFails = 0;
      this.host.status({ connection: "connected (WebSocket)" });
      this.kick();
    };
    ws.onmessage = (m) => this.answer(ws, m.data);
    ws.onclose = (e) => this.closed(ws, e);
  }

  async fill(s) {
    while (this.ws && this.wsReady && this.ws.readyState === WebSocket.OPEN && this.host.maySend()) {
      const unacked = this.sentThrough - s.ackedThrough;
      if (unacked >= WINDOW_EVENTS || Date.now() < this.retryAt) return;
      const cfg = this.host.config();
      const events = await queue.eventsAfter(s.id, this.sentThrough, cfg.batchEvents || 50);
      if (!events.length) return;
      const frame = JSON.stringify({ type: "events", events });
      this.ws.send(frame);
      this.bytesSent += frame.length;
      this.inflight.push({ first: events[0].seq, last: events[events.length - 1].seq });
      this.sentThrough = events[events.length - 1].seq;
    }
  }

  async answer(ws, data) {
    if (ws !== this.ws) return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (_) {
      return;
    }
    const s = this.host.session();
    if (!s) return;
    const frame = this.inflight.shift();
    if (msg.type === "ack") {
      await this.acked(s, msg.acked_through);
      this.attempt = 0;
      if (msg.gaps && msg.gaps.length && !this.inflight.length) this.sentThrough = s.ackedThrough; // fill holes
    } else if (msg.type === "slow_down") {
      // The server shed this frame: keep the events, pause, send again from acked_through.
      const ms = Math.max(50, Number(msg.retry_after_ms) || 1000);
      this.retryAt = Date.now() + ms;
      this.sentThrough = s.ackedThrough;
      this.host.status({ connection: `asked to slow down for ${ms} ms` });
      this.later(ms);
      return;
    } else if (msg.type === "error") {
      const code = msg.error && msg.error.code;
      if (code === "session_closed") return this.sessionClosed(s);
      if (isConsentRefusal(msg.error)) { // nothing of it stored: resent from acked_through after consent
        this.sentThrough = s.ackedThrough;
        this.refusedForConsent = true;
        return this.host.consentRefused();
      }
      if (frame && (code === "invalid_input" || code === "payload_too_large")) await this.replaceInvalid(s, frame, msg.error);
      this.host.problem(`The server refused a batch: ${(msg.error && msg.error.message) || code}`);
      this.sentThrough = s.ackedThrough;
    }
    this.kick();
  }

  async acked(s, through) {
    if (typeof through !== "number" || through <= s.ackedThrough) return;
    s.ackedThrough = through;
    await queue.dropThrough(s.id, through);
    await this.host.saveSession();
    this.host.problem(null);
  }

  // An event the server will never accept must not stall acked_through forever: it is replaced,
  // under its own seq, by a `custom` event that says what was dropped and why.
  async replaceInvalid(s, frame, error) {
    const events = await queue.eventsAfter(s.id, frame.first - 1, frame.last - frame.first + 1);
    const bad = new Map();
    for (const d of error.details || []) if (typeof d.seq === "number") bad.set(d.seq, d.error || "invalid");
    const replaced = events.filter((e) => bad.size === 0 || bad.has(e.seq)).map((e) => ({
      seq: e.seq, ts: e.ts, type: "custom", name: "tracemill.dropped_event",
      data: { type: String(e.type).slice(0, 64), error: String(bad.get(e.seq) || error.message || "").slice(0, 500) },
    }));
    await queue.putEvents(s.id, replaced);
  }

  async sessionClosed(s) {
    this.host.problem("The server closed this session; the events still queued for it were dropped.");
    await queue.dropSession(s.id);
    s.ackedThrough = s.nextSeq - 1;
    await this.host.saveSession();
  }

  closed(ws, e) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.wsReady = false;
    this.inflight = [];
    const s = this.host.session();
    if (e.code === 4403 && (e.reason === "consent_required" || this.refusedForConsent)) {
      this.refusedForConsent = false;
      return this.host.consentRefused(); // the gate reopens the delivery once consent is given
    }
    if (e.code === 4401 || e.code === 4403) {
      this.host.problem(e.code === 4401
        ? "The API key was refused. Check it in the options page (tracemill keys create makes one)."
        : "The API key lacks the ingest scope. Make one with: tracemill keys create --scopes ingest");
      this.retryAt = Date.now() + 60000;
      return this.later(60000);
    }
    if (e.code === 4409 && s) return this.sessionClosed(s);
    if (e.code === 4404 && s) s.created = false; // create it again (idempotent) before the next try
    if (!s || s.nextSeq - 1 <= s.ackedThrough) {
      this.host.status({ connection: "idle" });
      if (e.code === 1000 || e.code === 1001) return;
    }
    if (!e.wasClean && e.code === 1006) this.wsFails += 1;
    const delay = this.backoff();
    this.host.status({ connection: "offline" });
    this.host.problem(`The tracemill endpoint cannot be reached; retrying in ${Math.round(delay / 1000)} s. ` +
      "Recorded events wait in the browser and nothing is lost.");
    if (this.wsFails >= WS_FAILS_BEFORE_HTTP) this.probeHttp();
  }

  // Three WebSocket failures: if plain HTTP answers, a proxy blocks WebSockets: use HTTP batches.
  async probeHttp() {
    try {
      const r = await fetch(this.host.config().endpoint + "/healthz", { cache: "no-store" });
      if (r.ok) {
        this.httpUntil = Date.now() + HTTP_MODE_MS;
        this.wsFails = 0;
        this.retryAt = 0;
        this.host.status({ connection: "connected (HTTP; WebSockets seem blocked)" });
        this.kick();
      }
    } catch (_) { /* the endpoint is down altogether: keep backing off */ }
  }

  async pumpHttp(s) {
    const cfg = this.host.config();
    for (;;) {
      const events = await queue.eventsAfter(s.id, s.ackedThrough, HTTP_BATCH);
      if (!events.length) return;
      const body = JSON.stringify({ events });
      let r;
      try {
        r = await fetch(`${checkedEndpoint(cfg.endpoint)}/v1/sessions/${s.id}/events`, {
          method: "POST", body, headers: { "Content-Type": "application/json", Authorization: `Bearer ${cfg.apiKey}` },
        });
      } catch (e) {
        return this.fail("The tracemill endpoint cannot be reached over HTTP either; events wait in the browser.");
      }
      this.bytesSent += body.length;
      const answer = await r.json().catch(() => ({}));
      if (r.ok) {
        this.attempt = 0;
        await this.acked(s, answer.acked_through);
        continue;
      }
      const err = answer.error || {};
      if (r.status === 409 && err.code === "session_closed") return this.sessionClosed(s);
      if (r.status === 403 && isConsentRefusal(err)) return this.host.consentRefused();
      if (r.status === 422 || r.status === 413) {
        await this.replaceInvalid(s, { first: events[0].seq, last: events[events.length - 1].seq }, err);
        continue;
      }
      if (r.status === 401 || r.status === 403) {
        this.host.problem("The API key was refused. Check it in the options page (it needs the ingest scope).");
        this.retryAt = Date.now() + 60000;
        return this.later(60000);
      }
      const retry = Number(r.headers.get("Retry-After"));
      if (retry > 0) {
        this.retryAt = Date.now() + retry * 1000;
        return this.later(retry * 1000);
      }
      return this.fail(`The server answered ${r.status}: ${err.message || "no reason given"}`);
    }
  }

  close() {
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000);
    }
    this.wsReady = false;
    this.inflight = [];
  }
}
