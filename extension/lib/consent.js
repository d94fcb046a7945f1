// Consent of the person recorded (issue 18.1): the workspace's notice, the person's answer, and
// the gate that stops capture and sending while there is no current consent. The server is the
// authority (it refuses writes with 403 consent_required); this side shows the notice before the
// first recording instead of waiting for a refusal, and stops at once when consent is withdrawn.
//
// States: "unknown" (not asked yet), "not_needed" (the notice is not required, or the key names no
// recorder: a script), "given" (current consent for the notice's version), "needed" (the notice
// must be shown), "declined", "withdrawn". Capture and sending run in "given" and "not_needed",
// and in "unknown" too: a session can only start through a check (the worker's start()), so an
// unknown state with a session is one recorded by a version before consent existed, and the
// server, which refuses writes without consent, decides whether its queue may be delivered.
// The state lives in chrome.storage.local ("consent"): it must survive the worker's suspension.

const OPEN = new Set(["given", "not_needed", "unknown"]);
const ANSWERED = new Set(["given", "not_needed"]); // what the server said, and still holds offline

export class ConsentError extends Error {}

export class Consent {
  // host: { api(path, init) -> Response, changed(state) }
  constructor(host) {
    this.host = host;
    this.state = { state: "unknown", notice: null, version: null, agreedAt: null };
  }

  async load() {
    const { consent } = await chrome.storage.local.get("consent");
    if (consent && typeof consent.state === "string") this.state = consent;
  }

  allows() {
    return OPEN.has(this.state.state);
  }

  async set(patch) {
    this.state = { ...this.state, ...patch, checkedAt: Date.now() };
    await chrome.storage.local.set({ consent: this.state });
    this.host.changed(this.state);
    return this.state;
  }

  // Ask the server for the notice and the person's consent; the new state. Unreachable: the
  // answer the server gave before stands, else a ConsentError (nobody has seen the notice).
  async check() {
    let notice, mine;
    try {
      notice = await this.host.api("/v1/consent/notice");
      mine = notice.ok ? await this.host.api("/v1/consent") : null;
    } catch (e) {
      if (ANSWERED.has(this.state.state)) return this.state;
      throw new ConsentError("The consent notice could not be fetched from the server, so recording cannot start. " +
        "Check the endpoint and try again.");
    }
    if (notice.status === 401 || (mine && mine.status === 401)) {
      throw new ConsentError("The API key was refused. Check it in the options page.");
    }
    // No consent routes (a server older than them) or a key without a recorder: the server does
    // not ask for consent, and would say so with consent_required if it did.
    if (!notice.ok) return this.set({ state: "not_needed", notice: null });
    const body = await notice.json();
    const answer = mine && mine.ok ? await mine.json() : null;
    if (!body.required || !answer || !answer.recorder_id) return this.set({ state: "not_needed", notice: body });
    const current = answer.current;
    if (current && current.version === body.version) {
      return this.set({ state: "given", notice: body, version: current.version, agreedAt: current.agreed_at });
    }
    // A person who declined or withdrew stays so until they agree; the notice is kept up to date.
    const stay = ["declined", "withdrawn"].includes(this.state.state) ? this.state.state : "needed";
    return this.set({ state: stay, notice: body, version: null, agreedAt: null });
  }

  // The person agreed to `version` (the notice they were shown). A newer notice on the server
  // (409 notice_changed) is fetched and shown instead: they have not agreed to that one.
  async agree(version) {
    const r = await this.host.api("/v1/consent", { method: "POST", body: JSON.stringify({ version }) });
    if (r.status === 201 || r.ok) {
      const record = await r.json().catch(() => ({}));
      return this.set({ state: "given", version: record.version || version, agreedAt: record.agreed_at || null });
    }
    const err = (await r.json().catch(() => ({}))).error || {};
    if (r.status === 409 && err.code === "notice_changed") {
      await this.set({ state: "needed" });
      return this.check();
    }
    throw new ConsentError(`The server did not record the consent (${r.status}): ${err.message || "no reason given"}`);
  }

  decline() {
    return this.set({ state: "declined", version: null, agreedAt: null });
  }

  // Withdrawal closes the gate first (nothing more is captured or sent), then tells the server;
  // if it cannot be reached, `pendingWithdraw` has it told at the next chance (retryWithdraw).
  async withdraw() {
    await this.set({ state: "withdrawn", version: null, agreedAt: null, pendingWithdraw: true });
    await this.retryWithdraw();
    return this.state;
  }

  async retryWithdraw() {
    if (!this.state.pendingWithdraw) return;
    try {
      const r = await this.host.api("/v1/consent", { method: "DELETE" });
      if (r.ok || r.status === 404) await this.set({ pendingWithdraw: false });
    } catch (_) { /* offline: the gate is closed anyway; told when the server is back */ }
  }

  // A write was refused with consent_required: close the gate and fetch the notice to show.
  async refused() {
    if (!this.allows()) return this.state;
    await this.set({ state: "needed", version: null, agreedAt: null });
    return this.check().catch(() => this.state);
  }
}

// Is this error answer (HTTP body's `error`, or a stream error frame's) a consent refusal?
export const isConsentRefusal = (error) => Boolean(error && error.code === "consent_required");
