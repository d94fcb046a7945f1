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

// Checks a config as entered in the options page. Returns { config, errors: {field: message} }.
export function validate(input, isSelector = () => true) {
  const errors = {};
  const config = { ...DEFAULTS, ...input, masking: { ...DEFAULTS.masking, ...(input.masking || {}) } };
  config.endpoint = String(config.endpoint || "").trim().replace(/\/+$/, "");
  let url = null;
  try {
    url = new URL(config.endpoint);
  } catch (_) {
    errors.endpoint = "The endpoint must be a full address such as http://127.0.0.1:8000 or https://tracemill.example.com.";
  }
  if (url && !["http:", "https:"].includes(url.protocol)) {
    errors.endpoint = "The endpoint must start with http:// or https:// (the extension opens the WebSocket itself).";
  } else if (url && (url.search || url.hash || url.username || url.password)) {
    errors.endpoint = "The endpoint must be the server's base address, without a query, fragment or user name.";
  }
  config.apiKey = String(config.apiKey || "").trim();
  if (!config.apiKey) {
    errors.apiKey = "An API key is needed: make one with `tracemill keys create --scopes ingest`.";
  } else if (!/^tm_[A-Za-z0-9_-]{20,}$/.test(config.apiKey)) {
    errors.apiKey = "This does not look like a tracemill API key (they start with tm_ followed by about 43 characters).";
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
  return endpoint.replace(/^http/, "ws") + `/v1/sessions/${sessionId}/stream`;
}
