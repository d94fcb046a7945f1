// The persistent queue: events not yet acked and screenshots not yet uploaded, in IndexedDB,
// so that they survive the service worker being suspended, the network going away and the
// browser restarting. (chrome.storage.local rewrites a whole key per change and cannot hold
// binary data; IndexedDB appends one record per event and stores image bytes as they are.)

const DB_NAME = "tracemill";
const VERSION = 1;
let opening = null;

function open() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB_NAME, VERSION);
      req.onupgradeneeded = () => {
        const db = req.result;
        db.createObjectStore("events", { keyPath: ["sid", "seq"] });
        db.createObjectStore("shots", { keyPath: "id" });
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => {
        opening = null;
        reject(req.error);
      };
    });
  }
  return opening;
}

async function tx(store, mode, work) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const t = db.transaction(store, mode, { durability: "strict" });
    let result;
    Promise.resolve(work(t.objectStore(store))).then((r) => { result = r; });
    t.oncomplete = () => resolve(result);
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error || new Error("transaction aborted"));
  });
}

const asPromise = (req) => new Promise((resolve, reject) => {
  req.onsuccess = () => resolve(req.result);
  req.onerror = () => reject(req.error);
});

const range = (sid, from, to) => IDBKeyRange.bound([sid, from], [sid, to]);
const MAX_SEQ = 2 ** 53;

export function putEvent(sid, event) {
  return tx("events", "readwrite", (s) => { s.put({ sid, seq: event.seq, event }); });
}

export function putEvents(sid, events) {
  return tx("events", "readwrite", (s) => { for (const e of events) s.put({ sid, seq: e.seq, event: e }); });
}

// Up to `limit` events of a session with seq > after, in seq order.
export function eventsAfter(sid, after, limit) {
  return tx("events", "readonly", (s) => asPromise(s.getAll(range(sid, after + 1, MAX_SEQ), limit)))
    .then((rows) => rows.map((r) => r.event));
}

export function dropThrough(sid, seq) {
  if (seq < 0) return Promise.resolve();
  return tx("events", "readwrite", (s) => { s.delete(range(sid, 0, seq)); });
}

export function countEvents(sid) {
  return tx("events", "readonly", (s) => asPromise(s.count(range(sid, 0, MAX_SEQ))));
}

// The highest seq queued for a session, or -1: recovers the counter after a crash.
export function lastSeq(sid) {
  return tx("events", "readonly", (s) => new Promise((resolve, reject) => {
    const req = s.openCursor(range(sid, 0, MAX_SEQ), "prev");
    req.onsuccess = () => resolve(req.result ? req.result.value.seq : -1);
    req.onerror = () => reject(req.error);
  }));
}

export function dropSession(sid) {
  return tx("events", "readwrite", (s) => { s.delete(range(sid, 0, MAX_SEQ)); });
}

export function putShot(shot) {
  return tx("shots", "readwrite", (s) => { s.put(shot); });
}

export function shots(limit = 20) {
  return tx("shots", "readonly", (s) => asPromise(s.getAll(null, limit)));
}

export function countShots() {
  return tx("shots", "readonly", (s) => asPromise(s.count()));
}

export function dropShot(id) {
  return tx("shots", "readwrite", (s) => { s.delete(id); });
}
