// Screenshots: captured with chrome.tabs.captureVisibleTab on navigation, click and modal,
// sensitive fields painted over in the browser before the image leaves it, encoded as WebP
// (uploaded with the list of painted boxes, X-Painted-Boxes),
// queued in IndexedDB and uploaded with PUT (PROTOCOL.md "Screenshots"); a failed upload stays
// queued and is tried again with the events' backoff.
//
// Chrome allows about two captureVisibleTab calls a second per extension: captures are at
// least MIN_GAP_MS apart, and requests that arrive meanwhile are merged (the newest wins).

import * as queue from "./queue.js";
import { checkedEndpoint } from "./config.js";
import { isConsentRefusal } from "./consent.js";

const MIN_GAP_MS = 600;
const MAX_WIDTH = 1280; // the server's default compress.max_width: wider captures are re-encoded there
const MARGIN = 2; // px painted beyond each sensitive box
const MAX_LISTED = 200; // X-Painted-Boxes holds at most this many boxes
const PRIORITY = { navigation: 3, modal: 2, click: 1, input: 0, other: 0 };

export class Shots {
  // host: { session(), config(), record(event) -> seq, ensureCreated(), problem(text), status(patch),
  //         mayRecord(), maySend(), consentRefused() }
  constructor(host) {
    this.host = host;
    this.pending = null; // {tabId, windowId, trigger, at}
    this.lastCapture = 0;
    this.timer = null;
    this.uploading = false;
    this.uploadRetryAt = 0;
    this.attempt = 0;
    this.bytesSent = 0;
  }

  request(tabId, windowId, trigger, delayMs) {
    const at = Date.now() + delayMs;
    const p = this.pending;
    if (p && p.tabId === tabId && PRIORITY[p.trigger] > PRIORITY[trigger]) {
      p.at = Math.max(p.at, at); // keep the stronger reason, but show the later state
    } else {
      this.pending = { tabId, windowId, trigger, at };
    }
    this.schedule();
  }

  schedule() {
    if (this.timer || !this.pending) return;
    const when = Math.max(this.pending.at, this.lastCapture + MIN_GAP_MS);
    this.timer = setTimeout(() => {
      this.timer = null;
      const p = this.pending;
      this.pending = null;
      this.capture(p).catch(() => {}).finally(() => this.schedule());
    }, Math.max(0, when - Date.now()));
  }

  async capture(p) {
    if (!p || !this.host.session() || !this.host.mayRecord()) return;
    const tab = await chrome.tabs.get(p.tabId).catch(() => null);
    if (!tab || !tab.active) return; // only what the person sees
    // No answer from the page means no way to know what to paint over: no screenshot.
    const page = await withTimeout(chrome.tabs.sendMessage(p.tabId, { kind: "boxes" }), 1000).catch(() => null);
    if (!page || !page.width) return;
    this.lastCapture = Date.now();
    let dataUrl;
    try {
      dataUrl = await chrome.tabs.captureVisibleTab(tab.windowId, { format: "png" });
    } catch (e) {
      return; // the quota, or a page the browser does not let extensions capture
    }
    const capturedAt = Date.now();
    const { bytes, type, painted } = await paint(dataUrl, page);
    const id = "shot-" + crypto.randomUUID();
    const seq = await this.host.record({ type: "screenshot", screenshot_id: id, trigger: p.trigger, ts: capturedAt,
                                         url: page.url, title: tab.title ? tab.title.slice(0, 500) : undefined });
    if (seq === null) return;
    const s = this.host.session();
    await queue.putShot({ id, sid: s.id, seq, capturedAt, trigger: p.trigger, type, bytes, painted });
    this.upload();
  }

  // Upload what is queued, oldest first; stop at the first failure and try again later.
  async upload() {
    if (this.uploading || Date.now() < this.uploadRetryAt || !this.host.maySend()) return;
    this.uploading = true;
    try {
      for (;;) {
        const batch = await queue.shots(10);
        if (!batch.length) break;
        for (const shot of batch) {
          if (!(await this.put(shot))) return this.retryLater();
        }
      }
      this.attempt = 0;
    } finally {
      this.uploading = false;
      this.host.status({ shotsQueued: await queue.countShots() });
    }
    this.host.shotsDone(); // a stopped session may have waited only for its screenshots
  }

  retryLater() {
    const cap = this.host.config().backoffMaxMs || 30000;
    const delay = Math.min(cap, 1000 * 2 ** Math.min(this.attempt++, 16));
    this.uploadRetryAt = Date.now() + delay;
    setTimeout(() => this.upload(), delay);
  }

  // true when the shot is done with (stored, or refused for good), false to retry later
  async put(shot) {
    const cfg = this.host.config();
    const s = this.host.session();
    if (s && s.id === shot.sid && !(await this.host.ensureCreated())) return false;
    const q = new URLSearchParams({ seq: String(shot.seq), captured_at: String(shot.capturedAt), trigger: shot.trigger });
    const headers = { "Content-Type": shot.type, Authorization: `Bearer ${cfg.apiKey}` };
    // The boxes painted before encoding; shots queued by an older version have none (full path).
    if (Array.isArray(shot.painted)) headers["X-Painted-Boxes"] = JSON.stringify(shot.painted);
    let r;
    try {
      r = await fetch(`${checkedEndpoint(cfg.endpoint)}/v1/sessions/${shot.sid}/screenshots/${shot.id}?${q}`, {
        method: "PUT", body: shot.bytes, headers,
      });
    } catch (_) {
      return false;
    }
    if (r.ok) {
      this.bytesSent += shot.bytes.byteLength;
      await queue.dropShot(shot.id);
      return true;
    }
    const answer = await r.json().catch(() => ({}));
    if (r.status === 403 && isConsentRefusal(answer.error)) {
      await this.host.consentRefused(); // kept; uploaded once consent is given
      return false;
    }
    if ([400, 404, 409, 413, 415, 422].includes(r.status)) { // it will never be accepted
      this.host.problem(`A screenshot was refused (${r.status}): ${(answer.error && answer.error.message) || ""}`);
      await queue.dropShot(shot.id);
      return true;
    }
    if (r.status === 401 || r.status === 403) this.host.problem("The API key was refused for a screenshot upload.");
    return false;
  }
}

function withTimeout(promise, ms) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), ms))]);
}

// Paint the sensitive boxes (CSS px, scaled to the image) and encode as WebP, no wider than the
// server stores screenshots (its default compress.max_width): such a WebP, with the list of boxes
// painted, is stored as uploaded, without a second encode (PROTOCOL.md "Screenshots").
async function paint(dataUrl, page) {
  // Decoded by hand: fetch() of a data: URL is outside the CSP's connect-src, on purpose.
  const [head, b64] = dataUrl.split(",", 2);
  const raw = atob(b64);
  const data = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) data[i] = raw.charCodeAt(i);
  const blob = new Blob([data], { type: head.slice(5).split(";")[0] });
  const bitmap = await createImageBitmap(blob);
  const shrink = Math.min(1, MAX_WIDTH / bitmap.width);
  const width = Math.max(1, Math.round(bitmap.width * shrink));
  const height = Math.max(1, Math.round(bitmap.height * shrink));
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, 0, 0, width, height);
  const scale = width / page.width;
  ctx.fillStyle = "#000";
  const painted = [];
  for (const b of page.boxes) {
    // Whole pixels, outwards, plus a margin: lossy encoding blurs a box's edge by a pixel or two,
    // and the server checks the pixels of every listed box before it believes the list.
    const left = Math.floor(b.x * scale) - MARGIN, top = Math.floor(b.y * scale) - MARGIN;
    const right = Math.ceil((b.x + b.width) * scale) + MARGIN, bottom = Math.ceil((b.y + b.height) * scale) + MARGIN;
    ctx.fillRect(left, top, right - left, bottom - top);
    painted.push([left, top, right - left, bottom - top]);
  }
  const out = await canvas.convertToBlob({ type: "image/webp", quality: 0.8 });
  // PNG where WebP encoding is missing. Listing fewer boxes than painted is safe: the server
  // paints whatever it knows of that no listed box covers.
  return { bytes: await out.arrayBuffer(), type: out.type, painted: painted.slice(0, MAX_LISTED) };
}
