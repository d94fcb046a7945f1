"""The extension's API key stays in its service worker and its own pages: a content script,
which runs inside every page the user visits, cannot read it, and it is in neither the outbox
nor the event queue. Checked in real headless Chromium, from the content script's own
JavaScript world, while a session records against the real stack."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.support.browser import chromium
from tests.support.cdp import Browser, wait_until
from tests.support.recorder import Recorder, shop_task
from tests.support.shop_site import serve_shop
from tests.support.stack import make_key

pytestmark = pytest.mark.skipif(chromium() is None, reason="chromium is not installed (.ci/run installs it)")

# What a content script can reach: every storage area the extension API gives it, and the
# IndexedDB databases of the origin it runs in (the page's).
EVERYTHING_READABLE = """(async () => {
  const out = { local: JSON.stringify(await chrome.storage.local.get(null)) };
  for (const area of ["session", "sync"]) {
    try { out[area] = JSON.stringify(await chrome.storage[area].get(null)); }
    catch (e) { out[area] = "refused: " + e.message; }
  }
  out.databases = JSON.stringify(await indexedDB.databases());
  out.outbox = Object.keys(JSON.parse(out.local)).filter((k) => k.startsWith("ob:")).length;
  return out;
})()"""

# Every event and screenshot record the service worker has queued (lib/queue.js).
QUEUED = """new Promise((resolve, reject) => {
  const req = indexedDB.open("tracemill");
  req.onerror = () => reject(req.error);
  req.onsuccess = () => {
    const t = req.result.transaction(["events", "shots"]);
    const events = t.objectStore("events").getAll(), shots = t.objectStore("shots").getAll();
    t.oncomplete = () => resolve(JSON.stringify({ events: events.result,
      shots: shots.result.map(({ bytes, ...meta }) => meta) }));
  };
})"""


class ContentScriptWorld:
    """The tracemill content script's JavaScript world in one tab, over a DevTools connection of
    its own (tests/support/cdp.py answers commands only; this needs Runtime's events)."""

    def __init__(self, browser: Browser, target_id: str):
        lines = (browser.profile / "DevToolsActivePort").read_text().splitlines()
        self.ws = connect(f"ws://127.0.0.1:{lines[0]}{lines[1]}", max_size=2**28)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        self.session = self.call("Target.attachToTarget", {"targetId": target_id, "flatten": True})["sessionId"]
        self.call("Runtime.enable", session=self.session)  # reports the contexts that exist
        origin = f"chrome-extension://{browser.extension_id}"
        worlds = [e["params"]["context"] for e in self.events if e.get("method") == "Runtime.executionContextCreated"]
        self.context = next(c["id"] for c in worlds
                            if c.get("origin") == origin or c.get("name") == "tracemill recorder")

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params or {},
                                 **({"sessionId": session} if session else {})}))
        while True:
            msg = json.loads(self.ws.recv(timeout=30))
            if msg.get("id") == msg_id:
                assert "error" not in msg, msg
                return dict(msg.get("result", {}))
            self.events.append(msg)

    def eval(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "contextId": self.context,
                                                "awaitPromise": True, "returnByValue": True}, self.session)
        assert "exceptionDetails" not in result, result
        return result["result"]["value"]

    def close(self) -> None:
        self.ws.close()


@pytest.fixture()
def recorder(tmp_path: Path) -> Any:
    rec = Recorder.launch(tmp_path / "profile")
    yield rec
    rec.close()


def test_the_api_key_never_reaches_a_content_script_or_the_outbox(stack: Any, recorder: Recorder) -> None:
    key = make_key(stack, ["ingest"])
    secret = key.rsplit("_", 1)[1]
    with serve_shop() as base:
        assert recorder.configure(stack.endpoint, key) == "Saved."
        sid = recorder.popup("start", task="Look at a kettle")["session"]
        shop_task(recorder, base, until="product")
        recorder.wait_delivered()
        # The worker has the key and used it: the events reached the server.
        assert recorder.worker_eval("tracemill.host.config().apiKey") == key
        world = ContentScriptWorld(recorder.browser, recorder.tab.target_id)
        try:
            seen = world.eval(EVERYTHING_READABLE)
            # The check can see what a content script sees: the recording flag and the config.
            assert '"recording"' in seen["local"] and '"endpoint"' in seen["local"], seen
            # Every outbox entry the page writes from now on, as the content script wrote it
            # (the worker removes each one as soon as it has queued the event).
            world.eval("globalThis.outboxSeen = []; chrome.storage.onChanged.addListener((c) => {"
                       " for (const [k, v] of Object.entries(c)) if (k.startsWith('ob:') && v.newValue)"
                       " outboxSeen.push(JSON.stringify(v.newValue)); }); 1")
            recorder.tab.click(".tabs div:nth-child(2)")
            recorder.tab.click("[data-testid=add-to-cart]")
            outbox = wait_until(lambda: len(entries := world.eval("outboxSeen")) >= 2 and entries, 10,
                                "the clicks to pass through the outbox")
            during = world.eval(EVERYTHING_READABLE)
        finally:
            world.close()
        queued = recorder.worker_eval(QUEUED)
        recorded = recorder.stop(sid)
    assert recorded > 0
    for readable in (seen, during):
        for area, text in readable.items():
            assert secret not in str(text) and key not in str(text), area
        assert readable["session"].startswith("refused"), readable["session"]  # trusted contexts only
    assert "tracemill-secrets" not in during["databases"]  # the extension's database is not the page's
    assert any('"click"' in entry for entry in outbox), outbox
    for entry in outbox:
        assert secret not in entry and key not in entry
    assert secret not in queued and key not in queued


def test_a_key_left_in_storage_by_an_older_version_is_moved_out_of_it(stack: Any, recorder: Recorder) -> None:
    key = make_key(stack, ["ingest"])
    page = recorder.browser.extension_page("options/options.html")
    try:
        # What versions before this one stored: the key inside the config, readable by content scripts.
        page.eval("chrome.storage.local.set({config: {endpoint: %s, apiKey: %s, sessionType: 'human'}})"
                  % (json.dumps(stack.endpoint), json.dumps(key)))
        wait_until(lambda: "apiKey" not in page.eval("chrome.storage.local.get('config').then((s) => s.config)"),
                   10, "the worker to move the key out of chrome.storage.local")
        config = page.eval("chrome.storage.local.get('config').then((s) => s.config)")
        assert config["apiKeySet"] is True and key not in json.dumps(config)
        assert recorder.worker_eval("tracemill.host.config().apiKey") == key
        # The options page still shows it (its own page may read the extension's database).
        page.navigate(page.eval("location.href"))
        wait_until(lambda: page.eval("document.getElementById('apiKey').value") == key, 5, "the key in the form")
    finally:
        recorder.browser.close_target(page)
