// The API key, kept where only the extension's own pages and its service worker can read it.
//
// chrome.storage.local is readable (and writable) by content scripts, which run inside every
// page the user visits; they need it for the outbox (content/capture.js), so it cannot be closed
// to them. IndexedDB belongs to an origin: this database is the extension's
// (chrome-extension://<id>), which a content script, running in the page's origin, cannot open.
// Unlike chrome.storage.session it survives a browser restart, so the key is entered once.

const DB_NAME = "tracemill-secrets";
const STORE = "secrets";
const KEY = "apiKey";
let opening = null;

function open() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB_NAME, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => {
        opening = null;
        reject(req.error);
      };
    });
  }
  return opening;
}

async function run(mode, work) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const t = db.transaction(STORE, mode, { durability: "strict" });
    const req = work(t.objectStore(STORE));
    t.oncomplete = () => resolve(req.result);
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error || new Error("transaction aborted"));
  });
}

export async function loadApiKey() {
  return (await run("readonly", (store) => store.get(KEY))) || "";
}

export async function saveApiKey(apiKey) {
  await run("readwrite", (store) => store.put(String(apiKey || ""), KEY));
}
