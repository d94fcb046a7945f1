// Settings of the extension: defaults, validation with messages a person can act on, and
// the plain-words text of problems. Shared by the service worker, the popup and the options page.

export const DEFAULTS = Object.freeze({
  endpoint: "http://127.0.0.1:8000",
  apiKey: "",
  sessionType: "human",
  task: "",
  masking: { maskClasses: [], blockClasses: [], maskSelectors: [], maskAllInputs: false },
  // Delivery tuning; the measurement script shortens the backoff cap, people need not.
  flushMs: 250,
  batchEvents: 50,
  backoffMaxMs: 30000,
});

export const SESSION_TYPES = ["human", "automated", "hybrid"];

const CLASS_NAME = /^[A-Za-z_-][\w-]*$/;

// Plain http:// and ws:// carry the API key and everything recorded unencrypted, so they are
// allowed only to this computer: 127.0.0.0/8, ::1 and localhost. (The URL parser has already
// normalised the host: "127.1" reads 127.0.0.1, "[::1]" keeps its brackets.)
export function isLoopback(hostname) {
  const host = String(hostname || "").toLowerCase();
  return host === "localhost" || host === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

// What is wrong with an endpoint, in words, or null.
export function endpointProblem(endpoint) {
  let url;
  try {
    url = new URL(endpoint);
  } catch (_) {
    return "The endpoint must be a full address such as http://127.0.0.1:8000 or https://tracemill.example.com.";
  }
  if (!["http:", "https:"].includes(url.protocol)) {
    return "The endpoint must start with http:// or https:// (the extension opens the WebSocket itself).";
  }
  if (url.search || url.hash || url.username || url.password) {
    return "The endpoint must be the server's base address, without a query, fragment or user name.";
  }
  if (url.protocol === "http:" && !isLoopback(url.hostname)) {
    return `Plain http:// is allowed only for this computer (127.0.0.1, ::1, localhost): to ${url.hostname} the ` +
      "API key and everything recorded would travel unencrypted. Use https:// for a server elsewhere.";
  }
  return null;
}

// The endpoint, or an Error when it must not be used: every request and socket goes through
// this, so an address stored by an older version is refused too, not only what the form checks.
export function checkedEndpoint(endpoint) {
  const problem = endpointProblem(endpoint);
  if (problem) throw Object.assign(new Error(problem), { name: "EndpointRefused" });
  return endpoint;
}

// The config as stored in chrome.storage.local, which content scripts can read: everything but
// the API key (that lives in the extension's IndexedDB, lib/secret.js).
export function storedConfig(config) {
  const { apiKey, ...rest } = config;
  return { ...rest, apiKeySet: Boolean(apiKey || config.apiKeySet) };
}

// Checks a config as entered in the options page. Returns { config, errors: {field: message} }.
// A stored config has no key but `apiKeySet`; the worker adds the key from IndexedDB.
export function validate(input, isSelector = () => true) {
  const errors = {};
  const config = { ...DEFAULTS, ...input, masking: { ...DEFAULTS.masking, ...(input.masking || {}) } };
  config.endpoint = String(config.endpoint || "").trim().replace(/\/+$/, "");
  const endpointError = endpointProblem(config.endpoint);
  if (endpointError) errors.endpoint = endpointError;
  config.apiKey = String(config.apiKey || "").trim();
  if (!config.apiKey && !config.apiKeySet) {
    errors.apiKey = "An API key is needed: make one with `tracemill keys create --scopes ingest`.";
  } else if (config.apiKey && !/^tm_[A-Za-z0-9_-]{20,}$/.test(config.apiKey)) {
    errors.apiKey = "This does not look like a tracemill API key (they start with tm_, then about 60 letters, digits, - and _).";
  }
  if (!SESSION_TYPES.includes(config.sessionType)) errors.sessionType = "Choose human, automated or hybrid.";
  config.task = String(config.task || "").trim();
  if (config.task.length > 4000) errors.task = "The task text is limited to 4000 characters.";
  const m = config.masking;
  for (const key of ["maskClasses", "blockClasses"]) {
    m[key] = list(m[key]);
    const bad = m[key].filter((c) => !CLASS_NAME.test(c));
    if (bad.length) errors[key] = `Not a class name: ${bad.join(", ")} (letters, digits, - and _ only, no dot).`;
  }
  m.maskSelectors = list(m.maskSelectors);
  const badSelectors = m.maskSelectors.filter((s) => !isSelector(s));
  if (badSelectors.length) errors.maskSelectors = `Not a valid CSS selector: ${badSelectors.join(", ")}`;
  m.maskAllInputs = Boolean(m.maskAllInputs);
  return { config, errors };
}

function list(value) {
  const items = Array.isArray(value) ? value : String(value || "").split(/[\n,]/);
  return items.map((s) => String(s).trim()).filter(Boolean);
}

export function wsUrl(endpoint, sessionId) {
  return checkedEndpoint(endpoint).replace(/^http/, "ws") + `/v1/sessions/${sessionId}/stream`;
}
