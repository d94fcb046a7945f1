// The popup: start and stop a session, the consent notice (Agree / Decline, Withdraw), and what
// the service worker reports about it.
import { validate } from "../lib/config.js";

const $ = (id) => document.getElementById(id);
const CONSENT_TEXT = {
  unknown: "Consent: not asked yet (the notice is shown when you start).",
  not_needed: "Consent: not asked by this server for this key.",
  given: "Consent given",
  needed: "Consent needed: read the notice below. Nothing is recorded until you agree.",
  declined: "You declined the notice: nothing is recorded.",
  withdrawn: "Consent withdrawn: nothing is recorded or sent.",
};
let shownVersion = null; // the notice version on screen: Agree agrees to that one

function list(el, items) {
  el.replaceChildren(...(items || []).map((text) => Object.assign(document.createElement("li"), { textContent: text })));
}

function showConsent(c) {
  const state = (c && c.state) || "unknown";
  const open = !["needed", "declined", "withdrawn"].includes(state);
  $("consent").textContent = CONSENT_TEXT[state] + (state === "given" && c.version ? ` (notice ${c.version})` : "") +
    (state === "withdrawn" && c.pendingWithdraw ? " The server is told when it can be reached." : "");
  $("consent").dataset.state = state;
  $("withdraw").hidden = state !== "given";
  const notice = c && c.notice;
  const showNotice = state === "needed" && Boolean(notice);
  $("notice").hidden = !showNotice;
  if (showNotice) {
    shownVersion = notice.version;
    $("notice-text").textContent = notice.text || "";
    list($("notice-recorded"), notice.recorded);
    list($("notice-masked"), notice.masked);
    $("notice-retention").textContent = notice.retention_days == null ? "Kept until deleted (no retention period set)."
      : `Kept for ${notice.retention_days} days, then deleted.`;
    $("notice-version").textContent = notice.version;
  }
  return open;
}

function show({ status = {}, config = {}, consent = null }) {
  const s = status;
  const open = showConsent(consent);
  const held = (s.queued || 0) + (s.shotsQueued || 0);
  $("state").textContent = !open && (s.recording || s.finishing)
    ? `Not recording: no consent. ${held} item(s) held in this browser, not sent.`
    : s.recording ? "Recording" : s.finishing ? "Stopped; sending what is left"
    : s.lastSession ? "Not recording (last session delivered)" : "Not recording";
  $("state").dataset.state = !open && (s.recording || s.finishing) ? "held"
    : s.recording ? "recording" : s.finishing ? "finishing" : "idle";
  $("session").textContent = s.sessionId || "–";
  $("recorded").textContent = String(s.recorded || 0);
  $("acked").textContent = String(s.acked || 0);
  $("queued").textContent = String(s.queued || 0);
  $("shots").textContent = String(s.shotsQueued || 0);
  $("connection").textContent = s.connection || "–";
  $("start").hidden = Boolean(s.recording) || !$("notice").hidden;
  $("start").disabled = Boolean(s.finishing);
  $("stop").hidden = !s.recording || !open;
  const problem = s.problem || Object.values(validate(config).errors)[0] || "";
  $("problem").textContent = problem;
  $("problem").hidden = !problem;
}

async function refresh() {
  show(await chrome.storage.local.get(["status", "config", "consent"]));
}

async function send(message) {
  const answer = await chrome.runtime.sendMessage(message);
  if (answer && !answer.ok && answer.error) {
    $("problem").textContent = answer.error;
    $("problem").hidden = false;
  }
  refresh();
}

$("start").addEventListener("click", () => send({ kind: "start", task: $("task").value }));
$("stop").addEventListener("click", () => send({ kind: "stop", outcome: "success" }));
$("agree").addEventListener("click", () => !$("notice").hidden && send({ kind: "consent", answer: "agree", version: shownVersion,
                                                  task: $("task").value }));
$("decline").addEventListener("click", () => send({ kind: "consent", answer: "decline" }));
$("withdraw").addEventListener("click", () => send({ kind: "withdraw" }));
chrome.storage.onChanged.addListener((changes, area) => {
  if (area === "local" && (changes.status || changes.config || changes.consent)) refresh();
});
chrome.storage.local.get("config").then(({ config }) => { $("task").value = (config && config.task) || ""; });
refresh();
