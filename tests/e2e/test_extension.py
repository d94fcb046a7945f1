"""The recording extension (extension/) in real headless Chromium against the real stack.

A person's search-to-checkout task on the test shop, recorded through the popup, is checked
through the API and the database: the event types in order, selectors that find exactly the
element they describe on the page as it was, screenshots stored as WebP, and none of the card
number, password, email or phone typed into the checkout anywhere in the database or the object
store. A second run takes the endpoint away mid-session (and stops the service worker and
restarts the browser meanwhile): the extension resumes and nothing recorded is lost or
duplicated. Further tests: HTTP batches when WebSockets are blocked, slow_down kept, the
options page's messages, and the mask and block rules.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.test_privacy_e2e import database_dump, store_dump
from tests.support.browser import chromium
from tests.support.cdp import EXTENSION_DIR, Page, wait_until
from tests.support.client import Api
from tests.support.scripted_endpoint import scripted_endpoint
from tests.support.recorder import CHECKOUT, Recorder, Step, shop_task
from tests.support.sessions import wait_terminal
from tests.support.shop_site import serve_shop
from cluster.doubles.net import free_port
from tests.support.stack import make_key, run_db
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.skipif(chromium() is None, reason="chromium is not installed (.ci/run installs it)")

TASK = "Buy the blue kettle"
RECORD_DEMO_ENV = "TRACEMILL_RECORD_DEMO"


def export_demo(api: Api, sid: str, path: Path) -> None:
    """Write the finalised session as the demo's recording (cluster/demo/data/shop_checkout.json)."""
    from cluster.demo.replay import export_recording

    chromium_version = subprocess.run(["chromium", "--version"], capture_output=True, text=True).stdout.split()[1]
    manifest = json.loads((EXTENSION_DIR / "manifest.json").read_text())
    export_recording(api.base_url, api.key, sid, path,
                     source=f"tracemill-extension {manifest['version']} in headless Chromium {chromium_version}, "
                            "tests/e2e/test_extension.py on the test shop (python -m tests.e2e.record_demo)")


def events_of(api: Api, sid: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    after = -1
    while True:
        page = api.http.get(f"/v1/sessions/{sid}/events", params={"after_seq": after, "limit": 500})
        assert page.status_code == 200, page.text
        body = page.json()
        events += body["events"]
        if body["next_after_seq"] is None:
            return events
        after = body["next_after_seq"]


def milestones(events: list[dict[str, Any]]) -> list[str]:
    """The events a person would name, as `type:detail`, in order."""
    out = []
    for e in events:
        t = e["type"]
        target = e.get("target") or {}
        testid = (target.get("attributes") or {}).get("data-testid") or (target.get("attributes") or {}).get("id")
        if t == "navigation":
            out.append(f"navigation:{urlsplit(e['url']).path}:{e.get('transition')}")
        elif t in ("click", "input", "change", "submit", "keypress"):
            out.append(f"{t}:{e.get('key') or testid or target.get('text') or target.get('tag')}")
        elif t == "modal":
            out.append(f"modal:{e['state']}")
    return out


EXPECTED = [
    "navigation:/:typed", "click:search-input", "input:search-input", "keypress:Enter", "submit:search-form",
    "navigation:/products.html:form_submit", "click:filter-kettles", "navigation:/products.html:link",
    "click:Blue kettle", "navigation:/product.html:link", "click:Reviews", "click:add-to-cart", "modal:opened",
    "click:View cart", "submit:Continue shopping View cart", "modal:closed",
    "navigation:/cart.html:form_submit", "click:checkout-link",
    "navigation:/checkout.html:link", "click:name", "input:name", "click:email", "input:email", "click:phone",
    "input:phone", "click:card-number", "input:card-number", "click:card-expiry", "input:card-expiry",
    "click:card-cvc", "input:card-cvc", "click:create-account", "change:create-account", "click:password",
    "input:password", "click:place-order", "submit:checkout-form", "navigation:/confirmation.html:form_submit",
]


@pytest.fixture(scope="module")
def ingest_key(stack: Any) -> str:
    return make_key(stack, ["ingest"])  # all the extension needs


@pytest.fixture()
def recorder(tmp_path: Path) -> Any:
    rec = Recorder.launch(tmp_path / "profile")
    yield rec
    rec.close()


def record_task(rec: Recorder, base: str, endpoint: str, key: str) -> tuple[str, int]:
    assert rec.configure(endpoint, key) == "Saved."
    state = rec.popup("start", task=TASK)
    assert state["state"] == "Recording", state
    sid = state["session"]
    shop_task(rec, base)
    rec.wait_delivered()
    return sid, rec.stop(sid)


def test_a_recorded_checkout_reaches_the_server_complete_and_clean(
        stack: Any, api: Api, ingest_key: str, recorder: Recorder) -> None:
    with serve_shop() as base:  # open till the end: the kept DOMs load the shop's CSS
        sid, recorded = record_task(recorder, base, stack.endpoint, ingest_key)
        check_recording(stack, api, recorder, sid, recorded)


def check_recording(stack: Any, api: Api, recorder: Recorder, sid: str, recorded: int) -> None:
    view = wait_until(lambda: (v := api.session(sid))["status"] != "recording" and v, 20, "the finish")
    events = events_of(api, sid)

    # Every event the extension numbered is stored, densely, exactly once.
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert len(events) == recorded and view["acked_through"] == len(events) - 1
    assert view["type"] == "human"
    assert run_db(stack, "SELECT task FROM sessions WHERE session_id = $1", uuid.UUID(sid))[0]["task"] == TASK
    named = milestones(events)
    assert named == EXPECTED, "\n".join(named)
    types = {e["type"] for e in events}
    assert {"dom_snapshot", "scroll", "screenshot"} <= types, types
    assert sum(e["type"] == "dom_snapshot" for e in events) >= 6  # one per page, SPA view included

    # Privacy at the edge: values of sensitive fields are masked or absent in what was sent.
    inputs = {(e["target"]["attributes"].get("id") or e["target"]["attributes"].get("data-testid")): e
              for e in events if e["type"] == "input"}
    assert "value" not in inputs["password"] and inputs["password"]["masked"] is True
    for field in ("email", "phone", "card-number", "card-expiry", "card-cvc"):
        # asterisks from the extension, or the server's own placeholder for the field's kind
        assert inputs[field]["masked"] is True and re.fullmatch(r"[* ]+|\[[A-Z_]+\]", inputs[field]["value"]), inputs[field]
        assert inputs[field]["target"]["sensitive"] is True
    assert inputs["name"]["value"] == CHECKOUT["name"] and not inputs["name"].get("masked")
    assert inputs["search-input"]["value"] == "kettle"

    check_selectors(recorder, events)
    check_screenshots(api, sid, events, view)
    # The extension lists the boxes it painted (X-Painted-Boxes): each WebP was measured once, at
    # the ingress, and those covering every box the server knows of were stored as uploaded.
    shots = run_db(stack, "SELECT upload_facts IS NOT NULL AS measured, webp_sha256 = sha256 AS as_uploaded"
                   " FROM screenshots WHERE session_id = $1", uuid.UUID(sid))
    assert shots and all(s["measured"] for s in shots) and any(s["as_uploaded"] for s in shots), shots

    # Finalise, then nothing typed into the sensitive fields is anywhere.
    final = wait_terminal(api, sid, timeout=150)
    assert final["status"] in ("ready", "rejected"), final
    if os.environ.get(RECORD_DEMO_ENV):  # python -m tests.e2e.record_demo
        export_demo(api, sid, Path(os.environ[RECORD_DEMO_ENV]))
    places = {"database": database_dump(stack), "object store": store_dump(stack.settings.object_store.local_dir)}
    for where, text in places.items():
        for kind in ("card", "password", "email", "phone"):
            value = CHECKOUT[kind]
            forms = {value, value.replace(" ", ""), json.dumps(value)[1:-1]}
            assert not [f for f in forms if f in text], f"the {kind} typed into the checkout is in the {where}"


# ------------------------------------------------------------------ selectors


_RESOLVE = r"""
(sel) => {
  const norm = (s) => String(s || "").replace(/\s+/g, " ").trim();
  const shown = (el) => el.checkVisibility();
  const ownLabel = (l) => { const c = l.cloneNode(true); c.querySelectorAll("input,select,textarea").forEach((x) => x.remove()); return norm(c.textContent); };
  const all = [...document.querySelectorAll("body *")];
  switch (sel.kind) {
    case "testid": return all.filter((e) => e.getAttribute("data-testid") === sel.value);
    case "css": return [...document.querySelectorAll(sel.value)];
    case "xpath": { const r = document.evaluate(sel.value, document, null, XPathResult.ORDERED_NODE_SNAPSHOT_TYPE, null);
                    return Array.from({length: r.snapshotLength}, (_, i) => r.snapshotItem(i)); }
    case "placeholder": return all.filter((e) => norm(e.getAttribute("placeholder")) === sel.value && shown(e));
    case "label": return [...new Set([...document.querySelectorAll("label")].filter((l) => ownLabel(l) === sel.value)
                           .map((l) => l.control).filter((c) => c && shown(c)))];
    case "text": return all.filter((e) => shown(e) && norm(e.innerText) === sel.value &&
                           ![...e.children].some((c) => shown(c) && norm(c.innerText) === sel.value));
  }
  return null;
}
"""


def load_snapshot(page: Page, step: Step) -> None:
    """The page as it was at `step`, scripts off, at its own URL's origin (its CSS applies)."""
    page.call("Emulation.setScriptExecutionDisabled", {"value": True})
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(step.url))
    page.navigate(origin + "/__snapshot__")  # a 404 page of the same origin
    frame = page.call("Page.getFrameTree")["frameTree"]["frame"]["id"]
    page.call("Page.setDocumentContent", {"frameId": frame, "html": step.html})


def count_matches(page: Page, selector: dict[str, Any], xpath: str) -> tuple[int, bool]:
    """(how many elements the selector finds, whether the only one is the xpath's element)."""
    if selector["kind"] == "role":
        m = re.fullmatch(r'([a-z]+)\[name="(.*)"\]', selector["value"])
        assert m, selector
        doc = page.call("Runtime.evaluate", {"expression": "document"})["result"]["objectId"]
        nodes = [n for n in page.call("Accessibility.queryAXTree", {
            "objectId": doc, "role": m.group(1), "accessibleName": json.loads(f'"{m.group(2)}"')})["nodes"]
            if not n.get("ignored")]
        target = page.call("Runtime.evaluate", {"expression": f"document.evaluate({json.dumps(xpath)}, document, null,"
                                                " XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue"})
        backend = page.call("DOM.describeNode", {"objectId": target["result"]["objectId"]})["node"]["backendNodeId"]
        return len(nodes), len(nodes) == 1 and nodes[0].get("backendDOMNodeId") == backend
    found = page.eval(f"(() => {{ const found = ({_RESOLVE})({json.dumps(selector)});"
                      f" const want = document.evaluate({json.dumps(xpath)}, document, null,"
                      " XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;"
                      " return [found.length, found.length === 1 && found[0] === want]; })()")
    return int(found[0]), bool(found[1])


def snapshot_for(steps: list[Step], event: dict[str, Any]) -> Step:
    """The DOM the event was recorded on: for actions the one kept just before the action (the
    newest at or before the event); for what a page shows by itself (snapshots, modals) the
    first one kept after it, before the next action changed anything."""
    same = [s for s in steps if s.url == event["url"]]
    assert same, f"no DOM kept for {event['url']}"
    ts = event["ts_ms"]
    if event["type"] in ("dom_snapshot", "modal"):
        later = [s for s in same if s.at_ms >= ts]
        return later[0] if later else same[-1]
    earlier = [s for s in same if s.at_ms <= ts]
    assert earlier, f"no DOM kept before seq {event['seq']}"
    return earlier[-1]


def check_selectors(rec: Recorder, events: list[dict[str, Any]]) -> None:
    page = rec.browser.open("about:blank")
    page.call("DOM.enable")
    page.call("Accessibility.enable")
    checked = 0
    problems = []
    loaded: Step | None = None
    for event in events:
        event["ts_ms"] = _ms(event["ts"])
        elements = [event["target"]] if event.get("target") else event.get("elements") or []
        elements = [e for e in elements if e.get("bbox", {}).get("width", 0) > 0]  # a closed dialog is not shown
        if not elements:
            continue
        step = snapshot_for(rec.steps, event)
        if step is not loaded:
            load_snapshot(page, step)
            loaded = step
        for element in elements:
            sels = element["selectors"]
            xpath = next(s["value"] for s in sels if s["kind"] == "xpath")
            assert any(s["unique"] for s in sels)
            for sel in sels:
                n, same = count_matches(page, sel, xpath)
                checked += 1
                if sel["unique"] and not (n == 1 and same) or not sel["unique"] and n == 1:
                    problems.append((event["seq"], event["type"], sel, n, same))
    rec.browser.close_target(page)
    assert not problems, "\n".join(map(str, problems[:20]))
    assert checked >= 200, checked


def _ms(ts: Any) -> int:
    if isinstance(ts, int):
        return ts
    from datetime import datetime

    return int(datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp() * 1000)


# ------------------------------------------------------------------ screenshots


def check_screenshots(api: Api, sid: str, events: list[dict[str, Any]], view: dict[str, Any]) -> None:
    shots = [e for e in events if e["type"] == "screenshot"]
    assert {e["trigger"] for e in shots} >= {"navigation", "click", "modal"}, [e["trigger"] for e in shots]

    def all_compressed() -> bool:
        for e in shots:
            r = api.http.get(f"/v1/sessions/{sid}/screenshots/{e['screenshot_id']}")
            if r.status_code != 200 or r.headers["content-type"] != "image/webp":
                return False
            if not (r.content[:4] == b"RIFF" and r.content[8:12] == b"WEBP"):
                return False
        return True

    wait_until(all_compressed, 90, "every screenshot stored as WebP", interval=0.5)
    assert api.session(sid)["screenshot_count"] == len(shots)


# ------------------------------------------------------------------ the endpoint goes away


def test_the_extension_resumes_after_the_endpoint_and_the_browser_went_away(
        stack: Any, api: Api, ingest_key: str, tmp_path: Path) -> None:
    # The shared stack serves every test, so the endpoint is taken away by cutting a TCP proxy
    # between the browser and Serve: the extension sees refused connections and a dropped
    # WebSocket, exactly as if the server had stopped, while Serve itself keeps running.
    port = urlsplit(stack.endpoint).port
    proxy = TcpProxy("127.0.0.1", port)
    profile = tmp_path / "profile"
    rec = Recorder.launch(profile)
    try:
        with serve_shop() as base:
            # A short backoff cap keeps the test short; the default (30 s) is what people get.
            assert rec.configure(proxy.url, ingest_key, backoffMaxMs=3000) == "Saved."
            sid = rec.popup("start", task=TASK)["session"]
            shop_task(rec, base, until="add-to-cart")
            before = rec.wait_delivered()

            proxy.cut()
            # Chrome stops idle service workers at will: stop it now; the next event starts it
            # again, and it must pick up its counters and queue from storage.
            rec.tab.call("ServiceWorker.enable")
            rec.tab.call("ServiceWorker.stopAllWorkers")
            wait_until(lambda: not [t for t in rec.browser.targets() if t["type"] == "service_worker"], 10,
                       "the service worker to stop")
            shop_task(rec, base, after="add-to-cart", until="view-cart")
            down = wait_until(lambda: (s := rec.status())["queued"] > 0 and s.get("problem") and s, 10,
                              "the extension to notice the endpoint is gone")
            assert "cannot be reached" in down["problem"], down["problem"]
            popup = rec.popup()
            assert "cannot be reached" in popup["problem"] and int(popup["queued"]) > 0, popup  # what a person sees
            assert api.session(sid)["acked_through"] == before["recorded"] - 1  # nothing got through

            # The browser restarts while the endpoint is still down: the queue is on disk.
            steps = rec.steps
            rec.close()
            rec = Recorder.launch(profile)
            rec.steps = steps
            rec.step("reopen", lambda: rec.tab.navigate(base + "/cart.html"))
            rec.settle()
            shop_task(rec, base, after="view-cart", until="card")
            waiting = rec.status()
            assert waiting["recording"] and waiting["queued"] > int(down["queued"]), waiting

            proxy.restore()  # back while the person is still typing
            shop_task(rec, base, after="card")
            rec.wait_delivered(timeout=40)
            recorded = rec.stop(sid)
            view = wait_until(lambda: (v := api.session(sid))["status"] != "recording" and v, 30, "the finish")
    finally:
        rec.close()
        proxy.close()

    events = events_of(api, sid)
    assert [e["seq"] for e in events] == list(range(recorded))
    assert view["event_count"] == len(events) and view["acked_through"] == len(events) - 1
    expected = list(EXPECTED)
    expected.insert(expected.index("click:checkout-link"), "navigation:/cart.html:typed")
    assert milestones(events) == expected, "\n".join(milestones(events))  # each act once: none lost, none twice
    shots = [e for e in events if e["type"] == "screenshot"]
    wait_until(lambda: api.session(sid)["screenshot_count"] == len(shots), 60, "every screenshot uploaded")


# ------------------------------------------------------------------ options, fallback, masking


def test_the_options_page_refuses_bad_input_with_clear_messages(recorder: Recorder) -> None:
    page = recorder.browser.extension_page("options/options.html")

    def save(endpoint: str, key: str, selectors: str = "") -> dict[str, str]:
        page.eval(f"document.getElementById('endpoint').value = {json.dumps(endpoint)};"
                  f"document.getElementById('apiKey').value = {json.dumps(key)};"
                  f"document.getElementById('maskSelectors').value = {json.dumps(selectors)};"
                  "document.getElementById('result').textContent = '';"
                  "document.getElementById('save').click(); 1")
        wait_until(lambda: page.eval("document.getElementById('result').textContent"), 5, "an answer")
        return dict(page.eval("Object.fromEntries(['endpoint-error','apiKey-error','maskSelectors-error','result']"
                              ".map((id) => [id, document.getElementById(id).textContent]))"))

    good_key = "tm_" + "A" * 43
    said = save("127.0.0.1:8000", good_key)
    assert "full address" in said["endpoint-error"] or "http://" in said["endpoint-error"], said
    assert said["result"].startswith("Not saved")
    assert "http:// or https://" in save("ftp://example.com", good_key)["endpoint-error"]
    assert "without a query" in save("http://example.com/?x=1", good_key)["endpoint-error"]
    # Plain http:// only to this computer: elsewhere the key and the recording would cross the
    # network unencrypted.
    refused = save("http://example.com", good_key)["endpoint-error"]
    assert "Plain http:// is allowed only for this computer" in refused and "https://" in refused, refused
    assert "Plain http://" in save("http://10.1.2.3:8000", good_key)["endpoint-error"]
    assert "Plain http://" in save("http://127.0.0.1.example.com", good_key)["endpoint-error"]
    assert "tm_" in save("http://127.0.0.1:8000", "not-a-key")["apiKey-error"]
    assert "tracemill keys create" in save("http://127.0.0.1:8000", "")["apiKey-error"]
    assert "Not a valid CSS selector: div[" in save("http://127.0.0.1:8000", good_key, "div[")["maskSelectors-error"]
    assert page.eval("chrome.storage.local.get('config').then((s) => s.config || null)") is None, "nothing saved yet"

    nobody = f"http://127.0.0.1:{free_port()}"
    said = save(nobody + "/", good_key, ".secret\n#pin")
    assert said == {"endpoint-error": "", "apiKey-error": "", "maskSelectors-error": "", "result": "Saved."}, said
    config = page.eval("chrome.storage.local.get('config').then((s) => s.config)")
    assert config["endpoint"] == nobody and config["masking"]["maskSelectors"] == [".secret", "#pin"]
    # The key is not in chrome.storage.local (content scripts can read that), only that one is set.
    assert "apiKey" not in config and config["apiKeySet"] is True and good_key not in json.dumps(config)
    for loopback in ("http://localhost:8000", "http://[::1]:8000", "http://127.0.0.2:8000", "https://example.com"):
        assert save(loopback, good_key)["result"] == "Saved.", loopback
    save(nobody, good_key)

    # Nothing answers there: the test button says so in words.
    page.eval("document.getElementById('result').textContent = ''; document.getElementById('test').click(); 1")
    answer = wait_until(lambda: page.eval("document.getElementById('result').textContent"), 10, "the test")
    assert answer.startswith(f"Nothing answers at {nobody}."), answer


def test_events_go_over_http_when_websockets_are_blocked(stack: Any, api: Api, ingest_key: str,
                                                          recorder: Recorder) -> None:
    proxy = TcpProxy("127.0.0.1", urlsplit(stack.endpoint).port or 80, block_websockets=True)
    try:
        with serve_shop() as base:
            assert recorder.configure(proxy.url, ingest_key) == "Saved."
            sid = recorder.popup("start", task=TASK)["session"]
            shop_task(recorder, base, until="product")
            delivered = recorder.wait_delivered(timeout=40)
            assert "HTTP" in delivered["connection"], delivered
            recorded = recorder.stop(sid)
            wait_until(lambda: api.session(sid)["status"] != "recording", 20, "the finish")
    finally:
        proxy.close()
    assert proxy.refused_upgrades >= 3
    events = events_of(api, sid)
    assert [e["seq"] for e in events] == list(range(recorded))
    assert milestones(events) == EXPECTED[:EXPECTED.index("click:Reviews")]


PRIVATE_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Account</title></head><body>
<main>
  <h1>Account</h1>
  <form id="f">
    <label for="user">Display name</label><input id="user" name="display">
    <label for="otp">Code</label><input id="otp" name="code" autocomplete="one-time-code">
    <label for="street">Street</label><input id="street" name="s1" autocomplete="street-address">
    <label for="cvv">Security code</label><input id="cvv" name="cvv">
    <label for="notes">Notes</label><textarea id="notes" class="private-notes"></textarea>
    <label for="comment">Comment</label><input id="comment" name="comment">
  </form>
  <div class="rr-block" id="vault"><button id="vault-open">Open vault Zeta-Quill</button><p>Vault Zeta-Quill</p></div>
  <p class="rr-mask" id="balance">Balance Marigold-Nine</p>
  <div class="house-block"><a id="house" href="#h">House Ochre-Lynx</a></div>
</main></body></html>"""

TYPED = {"user": "Pat Example", "otp": "731904", "street": "12 Quarry Lane", "cvv": "4821",
         "notes": "remember Tangerine-Owl", "comment": "my card 5555 5555 5555 4444 thanks"}
HIDDEN_TEXT = ("Zeta-Quill", "Marigold-Nine", "Ochre-Lynx", "731904", "12 Quarry Lane", "4821", "Tangerine-Owl",
               "5555 5555 5555 4444", "5555555555554444")


@pytest.fixture()
def private_site() -> Any:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the base class's name
            body = PRIVATE_PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_mask_and_block_rules_apply_before_anything_leaves_the_page(
        stack: Any, api: Api, ingest_key: str, recorder: Recorder, private_site: str) -> None:
    assert recorder.configure(stack.endpoint, ingest_key) == "Saved."
    page = recorder.browser.extension_page("options/options.html")  # and the page's own rules
    wait_until(lambda: page.eval("document.getElementById('endpoint').value"), 5, "the saved options")
    page.eval("document.getElementById('blockClasses').value = 'house-block';"
              "document.getElementById('maskSelectors').value = '.private-notes';"
              "document.getElementById('save').click(); 1")
    wait_until(lambda: page.eval("document.getElementById('result').textContent") == "Saved.", 5, "saved")
    recorder.browser.close_target(page)
    sid = recorder.popup("start", task="update my account")["session"]
    tab = recorder.tab
    tab.navigate(private_site + "/account")
    recorder.settle()
    for field, text in TYPED.items():
        tab.type(f"#{field}", text)
    tab.click("#vault-open")
    tab.click("#balance")
    tab.click("#house")
    recorder.settle(1.0)
    recorder.wait_delivered()
    recorder.popup("stop")
    wait_until(lambda: api.session(sid)["status"] != "recording", 20, "the finish")

    events = events_of(api, sid)
    text = json.dumps(events)
    assert not [t for t in HIDDEN_TEXT if t in text]
    rows = run_db(stack, "SELECT coalesce(string_agg(t::text, chr(10)), '') AS dump FROM interactions t"
                         " WHERE session_id = $1", uuid.UUID(sid))[0]["dump"]
    assert len(rows) > 1000 and not [t for t in HIDDEN_TEXT if t in rows]
    inputs = {e["target"]["attributes"]["id"]: e for e in events if e["type"] == "input"}
    assert inputs["user"]["value"] == "Pat Example" and not inputs["user"].get("masked")
    for field in ("otp", "street", "cvv", "notes", "comment"):
        assert inputs[field]["masked"] is True and inputs[field]["target"]["sensitive"] is True, inputs[field]
    clicks = {e["target"]["attributes"].get("id"): e["target"] for e in events if e["type"] == "click"}
    for blocked in ("vault-open", "house"):
        assert clicks[blocked]["sensitive"] is True and "text" not in clicks[blocked], clicks[blocked]
        assert {s["kind"] for s in clicks[blocked]["selectors"]} <= {"css", "xpath", "testid"}, clicks[blocked]
    assert clicks["balance"]["masked"] is True and set(clicks["balance"]["text"]) <= {"*", " "}
    snapshot = next(e for e in events if e["type"] == "dom_snapshot")
    ids = {el["attributes"].get("id") for el in snapshot["elements"]}
    assert "user" in ids and not ids & {"vault-open", "house"}, ids


def test_slow_down_is_honoured_and_nothing_is_lost(recorder: Recorder) -> None:
    key = "tm_" + "S" * 43
    with scripted_endpoint(key, slow_down_frames=2, retry_after_ms=1500) as endpoint, serve_shop() as base:
        assert recorder.configure(endpoint.url, key) == "Saved."
        sid = recorder.popup("start", task=TASK)["session"]
        shop_task(recorder, base, until="product")
        recorder.wait_delivered(timeout=30)
        recorded = recorder.stop(sid)
    shed = [i for i, f in enumerate(endpoint.frames) if f.answer == "slow_down"]
    assert len(shed) == 2, endpoint.frames
    for i in shed:  # the next frame waited out the pause the server asked for
        assert endpoint.frames[i + 1].at - endpoint.frames[i].at >= 1.5 - 0.05, endpoint.frames[i:i + 2]
        assert endpoint.frames[i].seqs[0] in endpoint.frames[i + 1].seqs, "the shed events were sent again"
    assert endpoint.seqs == set(range(recorded)) and endpoint.finished["last_seq"] == recorded - 1
    assert endpoint.shots, "screenshots were uploaded"
