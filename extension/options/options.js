// The options page: endpoint, API key, session type, task and masking rules, each checked
// with a message that says what to do; "Test the connection" asks the server itself. The key is
// saved to the extension's IndexedDB (lib/secret.js), the rest to chrome.storage.local.
import { DEFAULTS, storedConfig, validate } from "../lib/config.js";
import { loadApiKey, saveApiKey } from "../lib/secret.js";

const $ = (id) => document.getElementById(id);
const FIELDS = ["endpoint", "apiKey", "sessionType", "task", "maskClasses", "blockClasses", "maskSelectors"];

function isSelector(s) {
  try {
    document.createDocumentFragment().querySelector(s);
    return true;
  } catch (_) {
    return false;
  }
}

function read() {
  return {
    endpoint: $("endpoint").value, apiKey: $("apiKey").value, sessionType: $("sessionType").value, task: $("task").value,
    masking: { maskClasses: $("maskClasses").value, blockClasses: $("blockClasses").value,
               maskSelectors: $("maskSelectors").value.split("\n"), maskAllInputs: $("maskAllInputs").checked },
  };
}

function fill(c) {
  $("endpoint").value = c.endpoint;
  $("apiKey").value = c.apiKey;
  $("sessionType").value = c.sessionType;
  $("task").value = c.task;
  $("maskClasses").value = c.masking.maskClasses.join(", ");
  $("blockClasses").value = c.masking.blockClasses.join(", ");
  $("maskSelectors").value = c.masking.maskSelectors.join("\n");
  $("maskAllInputs").checked = c.masking.maskAllInputs;
}

function check() {
  const { config, errors } = validate(read(), isSelector);
  for (const f of FIELDS) $(`${f}-error`).textContent = errors[f] || "";
  return Object.keys(errors).length ? null : config;
}

function say(text, ok) {
  $("result").textContent = text;
  $("result").className = ok ? "saved" : "error";
}

$("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const config = check();
  if (!config) return say("Not saved: fix the fields marked above.", false);
  const { config: old } = await chrome.storage.local.get("config");
  await saveApiKey(config.apiKey); // first: the worker reads it when the config below changes
  // savedAt: the worker hears of every save, a new key with an otherwise unchanged config too.
  await chrome.storage.local.set({ config: storedConfig({ ...DEFAULTS, ...(old || {}), ...config,
                                                          savedAt: Date.now() }) });
  say("Saved.", true);
});

$("test").addEventListener("click", async () => {
  const config = check();
  if (!config) return say("Fix the fields marked above first.", false);
  try {
    const health = await fetch(config.endpoint + "/healthz", { cache: "no-store" });
    if (!health.ok) return say(`The endpoint answered ${health.status} to /healthz: is it a tracemill server?`, false);
  } catch (_) {
    return say(`Nothing answers at ${config.endpoint}. Is the server running (tracemill up) and the address right?`, false);
  }
  // An unknown session: 404 means the key is known; 401 it is not; 403 it lacks a scope.
  const r = await fetch(`${config.endpoint}/v1/sessions/00000000-0000-4000-8000-000000000000`,
    { headers: { Authorization: `Bearer ${config.apiKey}` } }).catch(() => null);
  if (!r) return say("The endpoint stopped answering.", false);
  if (r.status === 401) return say("The server does not know this API key.", false);
  say("The server answers and knows the key.", true);
});

Promise.all([chrome.storage.local.get("config"), loadApiKey()]).then(([{ config }, apiKey]) => {
  const merged = { ...DEFAULTS, ...(config || {}), apiKey };
  fill(validate(merged).config);
});
