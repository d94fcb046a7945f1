// The popup: start and stop a session, and what the service worker reports about it.
import { validate } from "../lib/config.js";

const $ = (id) => document.getElementById(id);

function show({ status = {}, config = {} }) {
  const s = status;
  $("state").textContent = s.recording ? "Recording" : s.finishing ? "Stopped; sending what is left"
    : s.lastSession ? "Not recording (last session delivered)" : "Not recording";
  $("state").dataset.state = s.recording ? "recording" : s.finishing ? "finishing" : "idle";
  $("session").textContent = s.sessionId || "–";
  $("recorded").textContent = String(s.recorded || 0);
  $("acked").textContent = String(s.acked || 0);
  $("queued").textContent = String(s.queued || 0);
  $("shots").textContent = String(s.shotsQueued || 0);
  $("connection").textContent = s.connection || "–";
  $("start").hidden = Boolean(s.recording);
  $("start").disabled = Boolean(s.finishing);
  $("stop").hidden = !s.recording;
  const problem = s.problem || Object.values(validate(config).errors)[0] || "";
  $("problem").textContent = problem;
  $("problem").hidden = !problem;
}

async function refresh() {
  show(await chrome.storage.local.get(["status", "config"]));
}

async function send(message) {
  const answer = await chrome.runtime.sendMessage(message);
  if (answer && !answer.ok) {
    $("problem").textContent = answer.error;
    $("problem").hidden = false;
  }
  refresh();
}

$("start").addEventListener("click", () => send({ kind: "start", task: $("task").value }));
$("stop").addEventListener("click", () => send({ kind: "stop", outcome: "success" }));
chrome.storage.onChanged.addListener((changes, area) => {
  if (area === "local" && (changes.status || changes.config)) refresh();
});
chrome.storage.local.get("config").then(({ config }) => { $("task").value = (config && config.task) || ""; });
refresh();
