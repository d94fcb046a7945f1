"""The browsing pages in a real headless Chromium against the real stack (issue 16, items 3–4):
the session list filters, searches, sorts and updates live; a session replays (the frame follows
the scrubber, the highlighted box sits on the acted-on element, keys step through it); a step is
flagged from the keyboard and a dataset built afterwards leaves it out; the trends page draws
the trends API. The pages' screenshots go to results/, the live-update delays (database change
to the page) to results/live_updates.json."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from tests.support.cdp import Browser, Page, wait_until
from tests.support.client import Api
from tests.support.sessions import page_png, poor_session, record, shop_session, wait_terminal
from tests.support.stack import make_key, run_db

RESULTS = Path(__file__).resolve().parents[2] / "results"
BUTTON = {"x": 600, "y": 370, "width": 120, "height": 32}  # every click target of shop_session
GREEN = (0, 160, 0)
HIGHLIGHT = (255, 0, 212)  # session.js BOX_COLOUR
TASKS = ("buy the blue kettle", "find a red teapot", "compare two toasters")

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")


def frame_png(seq: int) -> bytes:
    """A page picture with the clicked button drawn where the events say it is."""
    img = Image.open(io.BytesIO(page_png(seq))).convert("RGB")
    ImageDraw.Draw(img).rectangle([BUTTON["x"], BUTTON["y"], BUTTON["x"] + BUTTON["width"] - 1,
                                   BUTTON["y"] + BUTTON["height"] - 1], fill=GREEN)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


class Org:
    def __init__(self, stack: Any):
        self.org_id = uuid.uuid4()
        run_db(stack, "INSERT INTO organizations (org_id, name) VALUES ($1, $2)", self.org_id, f"pages-{self.org_id}")
        self.api = Api(stack.endpoint, make_key(stack, ["ingest", "read"], org_id=self.org_id))  # the recorder
        self.key = make_key(stack, ["read", "review"], org_id=self.org_id)  # the reviewer the pages use
        self.reviewer = Api(stack.endpoint, self.key)
        self.admin = Api(stack.endpoint, make_key(stack, ["admin"], org_id=self.org_id))
        self.tag = uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def org(stack: Any) -> Org:
    return Org(stack)


@pytest.fixture(scope="module")
def recorded(org: Org) -> dict[str, Any]:
    sids = {}
    for i, task in enumerate(TASKS):
        events, _ = shop_session(60 + 10 * i, 0)
        shots = [(f"f-{seq:04d}", seq, frame_png(seq)) for seq in range(0, len(events), 6)]
        sids[task] = record(org.api, events, shots, task=f"{task} {org.tag}", type="human" if i % 2 else "automated")
    sids["poor"] = record(org.api, poor_session(), [], task=f"scroll around {org.tag}")
    views = {name: wait_terminal(org.api, sid) for name, sid in sids.items()}
    assert all(views[t]["status"] == "ready" for t in TASKS), {k: v["status"] for k, v in views.items()}
    assert views["poor"]["status"] == "rejected"
    return {"sids": sids, "views": views}


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Any:
    b = Browser(tmp_path_factory.mktemp("pages") / "profile")
    yield b
    b.close()


def open_page(browser: Browser, url: str) -> Page:
    page = browser.open(url)
    page.call("Emulation.setDeviceMetricsOverride", {"width": 1440, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
    return page


def loaded_after(page: Page, since: float) -> None:
    wait_until(lambda: int(page.eval("document.body.dataset.loaded || 0")) > since * 1000, 20, "the page to load its data")


def rows(page: Page) -> list[dict[str, str]]:
    return list(page.eval("Array.from(document.querySelectorAll('#sessions tbody tr')).map(r => "
                          "({id: r.dataset.sessionId, status: r.dataset.status, quality: r.dataset.quality}))"))


def submit_filters(page: Page, **values: str) -> None:
    started = time.time()
    assigns = "".join(f"document.getElementById({json.dumps(k)}).value = {json.dumps(v)};" for k, v in values.items())
    page.eval(assigns + "document.getElementById('f-apply').click(); 1")
    loaded_after(page, started)


def screenshot(page: Page, name: str) -> None:
    data = page.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_bytes(base64.b64decode(data))


def key(page: Page, char: str) -> None:
    page.eval("document.activeElement && document.activeElement.blur(); 1")
    named = {"ArrowRight": 39, "ArrowLeft": 37}
    if char in named:
        down = {"type": "rawKeyDown", "key": char, "code": char, "windowsVirtualKeyCode": named[char]}
    else:
        down = {"type": "keyDown", "key": char, "text": char, "unmodifiedText": char,
                "windowsVirtualKeyCode": ord(char.upper())}
    page.call("Input.dispatchKeyEvent", down)
    page.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": char, "windowsVirtualKeyCode": down["windowsVirtualKeyCode"]})


def test_the_list_filters_searches_sorts_and_updates_live(stack: Any, org: Org, recorded: dict[str, Any],
                                                           browser: Browser) -> None:
    sids = recorded["sids"]
    started = time.time()
    page = open_page(browser, f"{stack.endpoint}/sessions#key={org.key}")
    loaded_after(page, started)
    assert {r["id"] for r in rows(page)} == set(sids.values())
    assert page.eval("document.getElementById('total').textContent") == "4"
    assert org.key not in page.eval("location.href + document.documentElement.outerHTML")

    submit_filters(page, **{"f-status": "rejected"})
    assert [r["id"] for r in rows(page)] == [sids["poor"]]
    submit_filters(page, **{"f-status": "", "f-q": "teapot"})
    assert [r["id"] for r in rows(page)] == [sids["find a red teapot"]]
    assert "q=teapot" in page.eval("location.search")
    submit_filters(page, **{"f-q": "", "f-qmin": "0.5"})
    assert {r["id"] for r in rows(page)} == {sids[t] for t in TASKS}
    submit_filters(page, **{"f-qmin": ""})

    started = time.time()
    page.eval("document.getElementById('sort-quality').click(); 1")  # highest first
    loaded_after(page, started)
    qualities = [float(r["quality"]) for r in rows(page)]
    assert qualities == sorted(qualities, reverse=True) and len(qualities) == 4
    started = time.time()
    page.eval("document.getElementById('sort-quality').click(); 1")
    loaded_after(page, started)
    assert [float(r["quality"]) for r in rows(page)] == sorted(qualities)
    started = time.time()
    page.eval("document.getElementById('sort-started_at').click(); 1")
    loaded_after(page, started)

    # Live: sessions created and finalised while the page is open appear and change in place.
    wait_until(lambda: page.eval("document.getElementById('live-state').textContent") == "live", 10, "the live stream")
    new = [record(org.api, poor_session(), [], task=f"live {i} {org.tag}") for i in range(8)]
    finals = {sid: wait_terminal(org.api, sid)["status"] for sid in new}

    def shown() -> bool:
        listed = {r["id"]: r["status"] for r in rows(page)}
        return all(listed.get(sid) == status for sid, status in finals.items())

    wait_until(shown, 10, "the new sessions with their final status on the list")
    delays = page.eval("TM.liveDelays()")
    final_ms = sorted(d["ms"] for d in delays if d["kind"] == "session.finalized" and d["session_id"] in finals)
    created_ms = sorted(d["ms"] for d in delays if d["kind"] == "session.created" and d["session_id"] in finals)
    assert len(final_ms) == len(new) and len(created_ms) == len(new), delays
    figures = {
        "what": "live update delay: database change (trigger's clock_timestamp) to the page's fetch() reader",
        "command": "pytest tests/e2e/test_browse_pages.py -k live",
        "sessions": len(new),
        "finalized_ms": {"p50": statistics.median(final_ms), "p95": _p95(final_ms), "max": max(final_ms)},
        "created_ms": {"p50": statistics.median(created_ms), "p95": _p95(created_ms), "max": max(created_ms)},
    }
    print("live update delay:", json.dumps(figures))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "live_updates.json").write_text(json.dumps(figures, indent=2) + "\n")

    submit_filters(page, **{"f-q": org.tag})
    screenshot(page, "pages_sessions.png")
    browser.close_target(page)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))])


def canvas_state(page: Page) -> dict[str, Any]:
    return dict(page.eval(
        "(() => { const c = document.getElementById('frame'); const ctx = c.getContext('2d');"
        " const box = (c.dataset.box || '').split(',').filter(Boolean).map(Number);"
        " const px = (a, b) => Array.from(ctx.getImageData(a, b, 1, 1).data).slice(0, 3);"
        " let sum = 0; for (let i = 0; i < 64; i++) { sum += ctx.getImageData((i * 97) % c.width, (i * 61) % c.height, 1, 1).data[1]; }"
        " return {frame: c.dataset.frame || null, step: Number(c.dataset.step), width: c.width, box: box, sum: sum,"
        "  border: box.length ? px(box[0], box[1] + (box[3] >> 1)) : null,"
        "  inside: box.length ? px(box[0] + (box[2] >> 1), box[1] + (box[3] >> 1)) : null}; })()"))


def scrub_to(page: Page, index: int, seq: int) -> dict[str, Any]:
    page.eval(f"(() => {{ const s = document.getElementById('scrubber'); s.value = '{index}';"
              " s.dispatchEvent(new Event('input')); return 1; })()")
    return dict(wait_until(lambda: (st := canvas_state(page))["step"] == seq and st, 10, f"the frame of seq {seq}"))


def near(rgb: list[int], want: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, want))


@pytest.fixture(scope="module")
def baseline(org: Org, recorded: dict[str, Any]) -> dict[str, Any]:
    """A dataset of the organisation's ready sessions built before anything is flagged."""
    return build_dataset(org)


@pytest.fixture(scope="module")
def flagged() -> dict[str, Any]:
    return {}  # what the replay test flagged, for the dataset test


def test_a_session_replays_and_a_step_is_flagged_from_the_keyboard(
    stack: Any, org: Org, recorded: dict[str, Any], browser: Browser, baseline: dict[str, Any], flagged: dict[str, Any],
) -> None:
    sid = recorded["sids"]["buy the blue kettle"]
    events = org.reviewer.http.get(f"/v1/sessions/{sid}/events", params={"limit": 500}).json()["events"]
    started = time.time()
    page = open_page(browser, f"{stack.endpoint}/sessions/{sid}#key={org.key}")
    loaded_after(page, started)
    assert page.eval("document.querySelectorAll('#events li').length") == len(events)
    # The card: its title heads the page, its caption below, its contact sheet drawn from the API.
    card = org.reviewer.http.get(f"/v1/sessions/{sid}/replay").json()["card"]
    assert page.eval("document.getElementById('title').textContent") == card["title"]
    assert page.eval("document.getElementById('card-caption').textContent") == card["caption"]
    wait_until(lambda: page.eval("!document.getElementById('card-sheet').hidden"), 10, "the contact sheet")
    sheet = org.reviewer.http.get(f"/v1/sessions/{sid}/contact-sheet")
    assert sheet.headers["content-type"] == "image/webp"
    with Image.open(io.BytesIO(sheet.content)) as img:
        assert page.eval("[document.getElementById('card-sheet-canvas').width,"
                         " document.getElementById('card-sheet-canvas').height]") == [img.width, img.height]

    frames = [s for s in range(0, len(events), 6)]
    clicks = [(i, e) for i, e in enumerate(events) if e["type"] == "click" and (e.get("target") or {}).get("bbox")]
    (i1, first), (i2, later) = clicks[0], next(c for c in clicks if max(f for f in frames if f <= c[1]["seq"]) >
                                               max(f for f in frames if f <= clicks[0][1]["seq"]))
    one = scrub_to(page, i1, first["seq"])
    two = scrub_to(page, i2, later["seq"])
    assert one["frame"] == f"f-{max(f for f in frames if f <= first['seq']):04d}"
    assert two["frame"] == f"f-{max(f for f in frames if f <= later['seq']):04d}" != one["frame"]
    assert one["sum"] != two["sum"], "the picture did not change with the scrubber"
    scale = two["width"] / 1280
    assert two["box"] == [round(BUTTON[k] * scale) for k in ("x", "y", "width", "height")]
    assert near(two["border"], HIGHLIGHT), two  # the box is drawn …
    assert near(two["inside"], GREEN), two      # … around the acted-on element of the picture
    selectors = page.eval("Array.from(document.querySelectorAll('#selectors tbody tr')).map(r => "
                          "[r.cells[0].textContent, r.cells[1].textContent, r.dataset.unique])")
    assert selectors == [[s["kind"], s["value"], str(s["unique"]).lower()] for s in later["target"]["selectors"]]
    assert page.eval("document.querySelector('#events li.current').dataset.seq") == str(later["seq"])

    key(page, "ArrowRight")
    wait_until(lambda: page.eval("document.body.dataset.step") == str(events[i2 + 1]["seq"]), 5, "the next step")
    key(page, "k")
    wait_until(lambda: page.eval("document.body.dataset.step") == str(later["seq"]), 5, "the previous step")

    key(page, "f")  # flag this step: the reason gets the focus, the form sends it
    assert page.eval("document.activeElement.id") == "flag-reason"
    page.eval("document.getElementById('flag-reason').value = 'wrong_action';"
              "document.getElementById('flag-note').value = 'clicked the wrong button'; 1")
    page.click("#flag-submit")
    wait_until(lambda: page.eval(f"!!document.querySelector('#flags li[data-seq=\"{later['seq']}\"]')"), 10, "the flag listed")
    flags = org.reviewer.http.get(f"/v1/sessions/{sid}/flags").json()["items"]
    assert [(f["seq"], f["reason"], f["state"]) for f in flags] == [(later["seq"], "wrong_action", "pending")]
    assert page.eval(f"document.getElementById('ev-{later['seq']}').classList.contains('flagged')")
    assert page.eval("document.querySelectorAll('#reasons li').length") >= 1
    assert page.eval("document.getElementById('nav-pattern').textContent") not in ("", "–")
    screenshot(page, "pages_session_replay.png")
    browser.close_target(page)
    flagged.update(session_id=sid, seq=later["seq"])


def test_a_dataset_built_after_the_flag_leaves_the_step_out(org: Org, recorded: dict[str, Any],
                                                            baseline: dict[str, Any], flagged: dict[str, Any]) -> None:
    assert flagged, "the replay test flagged nothing"
    sid = flagged["session_id"]
    after = build_dataset(org)
    assert steps_of(after, sid) == steps_of(baseline, sid) - 1, (steps_of(baseline, sid), steps_of(after, sid))
    for other in TASKS[1:]:
        assert steps_of(after, recorded["sids"][other]) == steps_of(baseline, recorded["sids"][other])
    assert after["report"]["excluded_by_review"] == {"sessions": 0, "sessions_by_reason": {}, "steps": 1,
                                                     "steps_by_reason": {"wrong_action": 1}}, after["report"]


def build_dataset(org: Org) -> dict[str, Any]:
    answer = org.admin.http.post("/v1/datasets", json={"name": f"pages-{org.tag}",
                                                        "selection": {"task_contains": org.tag}})
    assert answer.status_code == 202, answer.text
    path = f"/v1/datasets/{answer.json()['dataset_id']}"
    view = wait_until(lambda: (v := org.admin.http.get(path).json())["status"] in ("succeeded", "failed") and v,
                      240, "the dataset build", interval=1)
    assert view["status"] == "succeeded", view
    rows: list[dict[str, Any]] = []
    for split in ("train", "validation"):
        got = org.admin.http.get(f"{path}/files/{split}.ranking.jsonl")
        if got.status_code == 200:
            rows += [json.loads(line) for line in got.text.splitlines() if line.strip()]
    report = org.admin.http.get(f"{path}/files/report.json").json()
    return {"view": view, "rows": rows, "report": report}


def steps_of(built: dict[str, Any], sid: str) -> int:
    return sum(1 for r in built["rows"] if r["session_id"] == sid)


def test_the_trends_page_draws_the_trends_api(stack: Any, org: Org, recorded: dict[str, Any], browser: Browser) -> None:
    started = time.time()
    page = open_page(browser, f"{stack.endpoint}/trends#key={org.key}")
    loaded_after(page, started)
    since = page.eval("document.getElementById('t-since').value") + "T00:00:00Z"
    api = org.reviewer.http.get("/v1/analytics/trends", params={"metric": "sessions", "group_by": "day", "since": since}).json()
    bars = page.eval("Array.from(document.querySelectorAll('section.chart[data-metric=sessions][data-group=day] rect.bar'))"
                     ".map(b => [b.dataset.key, Number(b.dataset.value)])")
    assert bars == [[p["key"], p["value"]] for p in api["points"]] and sum(v for _, v in bars) >= 4
    for metric in ("mean_quality", "events", "rejection_rate", "frustration_rate"):
        assert page.eval(f"Number(document.querySelector('section.chart[data-metric={metric}] svg').dataset.points)") >= 1, metric
    screenshot(page, "pages_trends.png")
    browser.close_target(page)


def test_page_files_carry_the_csp_and_no_inline_code(stack: Any) -> None:
    csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'"
    with httpx.Client(base_url=stack.endpoint, timeout=10) as http:
        for path in ("/sessions", f"/sessions/{uuid.uuid4()}", "/trends", "/pages/common.js", "/pages/sessions.js",
                     "/pages/session.js", "/pages/trends.js", "/pages/pages.css"):
            answer = http.get(path)
            assert answer.status_code == 200 and answer.headers["content-security-policy"] == csp, path
            body = answer.text
            assert not [u for u in re.findall(r"https?://[^\s\"']+", body) if "www.w3.org/2000/svg" not in u], path
            if not path.endswith((".js", ".css")):
                assert "<script>" not in body and " style=" not in body and " onclick=" not in body, path
        assert http.get("/pages/secrets.txt").status_code == 404
        assert http.get("/pages/..%2Fdashboard_api.py").status_code == 404
